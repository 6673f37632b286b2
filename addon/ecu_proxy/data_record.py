"""Decode a data record: the ECU block, then its inverter blocks.

Versions 18 and 15 share the 86-character ECU block (docs/protocol.md §4.2): ECU id,
power, energies, timestamp and inverter count. How the inverter blocks that follow
are read differs per layout, so the caller passes the walk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import DecodedFrame, FrameKind
from .wire import ECU_BLOCK_LEN, ecu_model, invalid, parse_wire_timestamp

if TYPE_CHECKING:
    from collections.abc import Callable

    from .models import Inverter

# ECU block fields that must be digits, for error messages. docs/protocol.md §4.2.
_ECU_FIELDS = (
    (18, 30, "ECU id"),
    (30, 40, "power"),
    (40, 50, "round energy"),
    (50, 60, "lifetime energy"),
    (60, 74, "timestamp"),
    (74, 77, "inverter count"),
)

# ECU power vs. sum of channel powers: tolerated difference.
POWER_TOLERANCE_W = 10.0
POWER_TOLERANCE_SHARE = 0.10


def decode_data(
    text: str,
    version: str,
    walk: Callable[[str, list[str]], list[Inverter]],
) -> DecodedFrame:
    """Decode the ECU block shared by versions 18 and 15, then its inverter blocks."""
    size = len(text)
    if size < ECU_BLOCK_LEN:
        return invalid(
            size,
            version,
            f"truncated: {size} characters, a data record's ECU block needs "
            f"{ECU_BLOCK_LEN}",
        )
    if not text[18:77].isdigit():
        for start, end, name in _ECU_FIELDS:
            field = text[start:end]
            if not field.isdigit():
                return invalid(
                    size, version, f"bad digits in the {name} field: {field!r}"
                )
    if text[83:86] != "END":
        return invalid(
            size, version, f"no END after the ECU block (offset 83: {text[83:86]!r})"
        )
    timestamp = parse_wire_timestamp(text[60:74])
    if timestamp is None:
        return invalid(size, version, f"bad timestamp {text[60:74]!r}")
    power = int(text[30:40])
    inverter_count = int(text[74:77])
    warnings: list[str] = []
    inverters = walk(text, warnings)
    if inverter_count != len(inverters):
        warnings.append(
            f"inverter_count says {inverter_count} but the record holds "
            f"{len(inverters)} inverter(s)"
        )
    _check_power(power, inverters, warnings)
    ecu_id = text[18:30]
    return DecodedFrame(
        kind=FrameKind.DATA,
        version=version,
        length=size,
        ecu_id=ecu_id,
        ecu_model=ecu_model(ecu_id),
        timestamp=timestamp,
        power_w=power,
        round_energy_kwh=int(text[40:50]) / 1e6,
        lifetime_energy_kwh=int(text[50:60]) / 10,
        inverter_count=inverter_count,
        more_records=text[78] == "1",
        inverters=tuple(inverters),
        warnings=tuple(warnings),
    )


def _check_power(power: int, inverters: list[Inverter], warnings: list[str]) -> None:
    """Warn when the ECU power disagrees with the sum of all channel powers."""
    if not inverters or any(not inv.channels for inv in inverters):
        return  # nothing to compare, or blocks kept raw whose power is unknown
    total = round(sum(ch.power_w for inv in inverters for ch in inv.channels), 2)
    if abs(power - total) <= max(POWER_TOLERANCE_W, POWER_TOLERANCE_SHARE * total):
        return
    ratio = f" ({power / total:.1f} times as much)" if total else ""
    warnings.append(
        f"ECU power {power} W does not match the sum of channel powers {total:g} W"
        f"{ratio}; some ECU firmware writes this field as W x100"
    )
