"""Read the inverter blocks of a data record, one parser per type code.

Each block is the inverter's id, its type code, its AC values and one group per
DC channel, ending in END (docs/protocol.md §4.3-§4.8). A block that cannot be read
is kept as text in ``Inverter.raw`` with a warning, so nothing is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import Channel, Inverter
from .wire import BLOCK_TYPES, ECU_BLOCK_LEN, inverter_family, parse_signed_temperature

if TYPE_CHECKING:
    from collections.abc import Callable

type BlockParser = Callable[[str, str, str], Inverter | str]


def raw_inverter(block: str) -> Inverter:
    """Return an inverter whose block could not be read, kept as text."""
    code = block[12:14]
    return Inverter(
        id=block[:12],
        type_code=code,
        family=inverter_family(code),
        ac_voltage_v=None,
        frequency_hz=None,
        temperature_c=None,
        power_w=None,
        round_energy_wh=None,
        channels=(),
        raw=block,
    )


def block_until_end(text: str, pos: int) -> str:
    """Return the block at ``pos`` up to and including the next END (or the rest)."""
    end = text.find("END", pos)
    return text[pos:] if end < 0 else text[pos : end + 3]


def totals(channels: list[Channel]) -> tuple[float, float]:
    """Return the power (W) and round energy (Wh) of an inverter's channels."""
    return (
        round(sum(ch.power_w for ch in channels), 2),
        round(sum(ch.round_energy_wh for ch in channels), 3),
    )


def walk_blocks(
    text: str,
    warnings: list[str],
    types: dict[str, tuple[str, int]] = BLOCK_TYPES,
    parsers: dict[str, BlockParser] | None = None,
) -> list[Inverter]:
    """Walk the inverter blocks of a record by their type code.

    ``types`` and ``parsers`` default to the version-18 layouts; the ECU-3 typed
    record (APS15, command 0002) passes its own.
    """
    parsers = BLOCK_PARSERS if parsers is None else parsers
    inverters: list[Inverter] = []
    pos = ECU_BLOCK_LEN
    size = len(text)
    while pos < size:
        code = text[pos + 12 : pos + 14]
        known = types.get(code)
        if known is not None:
            family, length = known
            end = pos + length
            if end <= size and text[end - 3 : end] == "END":
                block = text[pos:end]
                parsed = parsers[code](block, code, family)
                if isinstance(parsed, Inverter):
                    inverters.append(parsed)
                else:
                    warnings.append(
                        f"inverter {block[:12]} (type {code}): {parsed}; block kept raw"
                    )
                    inverters.append(raw_inverter(block))
                pos = end
                continue
            block = block_until_end(text, pos)
            warnings.append(
                f"inverter {block[:12]} (type {code}): block is {len(block)} "
                f"characters, {family} blocks are {length}; block kept raw"
            )
        else:
            block = block_until_end(text, pos)
            if block.endswith("END"):
                warnings.append(
                    f"inverter {block[:12]}: unknown type code {code!r}; "
                    f"block of {len(block)} characters kept raw"
                )
            else:
                warnings.append(
                    f"{len(block)} characters without END after the last inverter "
                    "block; kept raw"
                )
        inverters.append(raw_inverter(block))
        pos += len(block)
    return inverters


def channel_group(block: str, offset: int, number: int) -> Channel:
    """Decode marker + DC V (5) + DC A (3) + energy (6) + power (5) at ``offset``."""
    return Channel(
        number,
        int(block[offset + 1 : offset + 6]) / 10,  # DC V x10
        int(block[offset + 6 : offset + 9]) / 10,  # DC A x10
        int(block[offset + 15 : offset + 20]) / 100,  # W x100
        int(block[offset + 9 : offset + 15]) / 1000,  # kWh x1e6 -> Wh
    )


def _parse_yc600_qs1(block: str, code: str, family: str) -> Inverter | str:
    """Types 07 (2 channels) and 08 (4 channels): docs/protocol.md §4.5, §4.6."""
    if not block[:-3].isdigit():
        return "non-digit characters"
    channels: list[Channel] = []
    offset = 45
    for number in range(1, 3 if code == "07" else 5):
        if block[offset] != str(number):
            return f"channel marker {block[offset]!r} where {number} belongs"
        channels.append(channel_group(block, offset, number))
        offset += 20
    power, energy = totals(channels)
    return Inverter(
        id=block[:12],
        type_code=code,
        family=family,
        ac_voltage_v=int(block[14:17]),
        frequency_hz=int(block[17:22]) / 10,
        temperature_c=int(block[22:25]) - 100,
        power_w=power,
        round_energy_wh=energy,
        channels=tuple(channels),
    )


def _parse_yc1000(block: str, code: str, family: str) -> Inverter | str:
    """Type 04: three-phase, 4 channels, one DC voltage; docs/protocol.md §4.7."""
    if not block[:-3].isdigit():
        return "non-digit characters"
    dc_voltage = int(block[14:19]) / 10
    channels: list[Channel] = []
    phases: list[int] = []
    offset = 27
    for number in (1, 2, 3, 4):
        if block[offset] != str(number):
            return f"channel marker {block[offset]!r} where {number} belongs"
        current = int(block[offset + 1 : offset + 4]) / 10
        if number < 4:
            phases.append(int(block[offset + 4 : offset + 7]))
            energy_at = offset + 23
            offset += 34
        else:
            energy_at = offset + 4
        channels.append(
            Channel(
                number,
                dc_voltage,
                current,
                int(block[energy_at + 6 : energy_at + 11]) / 100,
                int(block[energy_at : energy_at + 6]) / 1000,
            )
        )
    power, energy = totals(channels)
    return Inverter(
        id=block[:12],
        type_code=code,
        family=family,
        ac_voltage_v=round(sum(phases) / 3, 1),
        frequency_hz=int(block[19:24]) / 10,
        temperature_c=int(block[24:27]) - 100,
        power_w=power,
        round_energy_wh=energy,
        channels=tuple(channels),
        phase_voltages_v=tuple(float(v) for v in phases),
    )


def parse_yc500_yc250(block: str, code: str, family: str) -> Inverter | str:
    """Types 03 (channels A, B) and 05 (channel A), sign-coded temperature."""
    if not (block[:22].isdigit() and block[25:41].isdigit()):
        return "non-digit characters"
    channels: list[Channel] = []
    offset = 41
    for number, letter in ((1, "A"), (2, "B"))[: 2 if code == "03" else 1]:
        if block[offset] != letter or not block[offset + 1 : offset + 31].isdigit():
            return f"malformed channel {letter} group"
        channels.append(channel_group(block, offset, number))
        offset += 31
    temperature = parse_signed_temperature(block[22:25])
    if temperature is None:
        return f"malformed sign-coded temperature {block[22:25]!r}"
    power, energy = totals(channels)
    return Inverter(
        id=block[:12],
        type_code=code,
        family=family,
        ac_voltage_v=int(block[14:17]),
        frequency_hz=int(block[17:22]) / 10,
        temperature_c=temperature,
        power_w=power,
        round_energy_wh=energy,
        channels=tuple(channels),
    )


BLOCK_PARSERS: dict[str, BlockParser] = {
    "03": parse_yc500_yc250,
    "04": _parse_yc1000,
    "05": parse_yc500_yc250,
    "07": _parse_yc600_qs1,
    "08": _parse_yc600_qs1,
}
