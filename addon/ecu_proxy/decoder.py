"""Decode one frame of the ECU <-> EMA protocol into a ``DecodedFrame``.

The facts are in docs/protocol.md §3-§9; decisions where the spec is open are in
docs/decoder.md. ``decode_frame`` never raises: anything it cannot make sense of comes
back as kind ``invalid`` with an ``error`` saying why, and nothing is dropped (inverter
blocks it cannot read are kept as text in ``Inverter.raw``).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

from .control import decode_control
from .framing import aps_length
from .models import Channel, DecodedFrame, FrameKind, Inverter

if TYPE_CHECKING:
    from collections.abc import Callable

    from .models import Direction

ECU_BLOCK_LEN = 86
APS15_BLOCK_LEN = 50
RECONCILE_QUERY_LEN = 22
TIMESTAMP_LEN = 14

# EMA record type code -> (family, block length including END). docs/protocol.md §4.3.
BLOCK_TYPES: dict[str, tuple[str, int]] = {
    "03": ("YC500", 106),
    "04": ("YC1000", 147),
    "05": ("YC250", 75),
    "07": ("YC600", 88),
    "08": ("QS1", 128),
}

# ECU id prefix -> model, longest prefix first. docs/protocol.md §9.1.
_ECU_MODELS = (
    ("2160", "ECU-R"),
    ("2162", "ECU-R Pro"),
    ("2163", "ECU-B"),
    ("215", "ECU-C"),
    ("203", "ECU-3"),
)

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


def ecu_model(ecu_id: str) -> str:
    """Return the ECU model for an ECU id from its prefix, or ``"unknown"``."""
    for prefix, model in _ECU_MODELS:
        if ecu_id.startswith(prefix):
            return model
    return "unknown"


def inverter_family(type_code: str) -> str:
    """Return the inverter family for an EMA record type code, or ``"unknown"``."""
    known = BLOCK_TYPES.get(type_code)
    return known[0] if known else "unknown"


def format_wire_timestamp(ts: datetime) -> str:
    """Return ``ts`` in the wire form ``YYYYMMDDhhmmss`` (wall clock, no zone)."""
    return (
        f"{ts.year:04d}{ts.month:02d}{ts.day:02d}"
        f"{ts.hour:02d}{ts.minute:02d}{ts.second:02d}"
    )


def is_ecu_id(text: str) -> bool:
    """Return whether ``text`` is a 12-digit ECU id."""
    return len(text) == 12 and text.isascii() and text.isdigit()


def parse_wire_timestamp(text: str) -> datetime | None:
    """Return the naive datetime of a ``YYYYMMDDhhmmss`` string, or None if invalid."""
    if len(text) != TIMESTAMP_LEN or not text.isdigit():
        return None
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
        )
    except ValueError:
        return None


def parse_signed_temperature(field: str) -> int | None:
    """Decode the sign-coded temperature of type 03/05 blocks (docs/protocol.md §4.8).

    ``B`` + 2 digits = -10 and below, ``AB`` + digit = -9..-1, ``AA`` + digit = 0..9,
    ``A`` + 2 digits = 10..99, 3 digits = 100 and above. Returns None if malformed.
    """
    if len(field) != 3:
        return None
    if field.isdigit():
        return int(field)
    head, tail = field[:2], field[2]
    if head == "AB" and tail.isdigit():
        return -int(tail)
    if head == "AA" and tail.isdigit():
        return int(tail)
    rest = field[1:]
    if rest.isdigit():
        if field[0] == "B":
            return -int(rest)
        if field[0] == "A":
            return int(rest)
    return None


def decode_frame(frame: bytes, direction: Direction | None = None) -> DecodedFrame:
    """Decode one frame (as cut by ``Framer``); never raises.

    One trailing LF is ignored, so a file holding one frame can be passed as it is.
    ``direction`` is accepted for callers that know it; the wire formats of both
    directions are told apart by their content, so decoding does not depend on it.
    """
    del direction  # see docstring
    try:
        return _decode(bytes(frame))
    except Exception as err:  # noqa: BLE001 - the contract is "never raises"
        try:
            size = len(frame)
        except Exception:  # noqa: BLE001 - not even a length: report it as empty
            size = 0
        return _invalid(size, None, f"decoder error: {type(err).__name__}: {err}")


# -- frame kinds ---------------------------------------------------------------------


def _invalid(length: int, version: str | None, error: str) -> DecodedFrame:
    return DecodedFrame(
        kind=FrameKind.INVALID, version=version, length=length, error=error
    )


def _decode(data: bytes) -> DecodedFrame:
    if data.endswith(b"\n"):
        data = data[:-1]
    size = len(data)
    if not size:
        return _invalid(0, None, "empty frame")
    first = data[0]
    is_aps = data.startswith(b"APS")
    if not (is_aps or 0x30 <= first <= 0x39 or first == 0x7B):
        return _invalid(
            size,
            None,
            f"not a frame: {size} bytes that do not start with 'APS', a digit or "
            f"'{{' (begins {data[:16]!r})",
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as err:
        version = data[3:5].decode("latin-1") if is_aps else None
        return _invalid(
            size,
            version if version and version.isdigit() else None,
            f"bad byte 0x{data[err.start]:02x} at offset {err.start}: "
            "the protocol is ASCII",
        )
    if is_aps:
        return _decode_aps(text)
    if first == 0x7B:
        if text.endswith("}"):
            return DecodedFrame(kind=FrameKind.UNKNOWN, version=None, length=size)
        return _invalid(size, None, "truncated: JSON line without its closing '}'")
    return _decode_ema_reply(text)


def _decode_aps(text: str) -> DecodedFrame:
    size = len(text)
    if size < 10:
        return _invalid(
            size, None, f"truncated: {size} characters, an APS header needs 10"
        )
    version = text[3:5]
    if not version.isdigit():
        return _invalid(size, None, f"bad version {version!r} after 'APS'")
    length = aps_length(text[5:10].encode("ascii"))
    if length is None:
        return _invalid(size, version, f"bad length field {text[5:10]!r}")
    if size < length:
        return _invalid(
            size, version, f"truncated: header says {length} characters, got {size}"
        )
    if size > length:
        return _invalid(
            size,
            version,
            f"length mismatch: header says {length} characters, frame has {size}",
        )
    if version == "18":
        return _decode_data(text, version, _walk_v18)
    if version == "13":
        return _decode_v13(text)
    if version == "15" and text[10:14] == "0001":
        return _decode_data(text, version, _walk_v15)
    if version == "15" and text[10:14] == "0002":
        return _decode_ecu3_typed(text)
    return DecodedFrame(kind=FrameKind.UNKNOWN, version=version, length=size)


def _decode_v13(text: str) -> DecodedFrame:
    size = len(text)
    if size == RECONCILE_QUERY_LEN and text[10:22].isdigit():
        return DecodedFrame(
            kind=FrameKind.RECONCILE_QUERY,
            version="13",
            length=size,
            ecu_id=text[10:22],
        )
    command = text[10:14]
    if size >= 30 and command.lstrip("A").isdigit():
        ecu_id = text[18:30]
        details = decode_control(text)
        if isinstance(details, str):
            return _invalid(size, "13", f"{command}: {details}")
        return DecodedFrame(
            kind=FrameKind.CONTROL,
            version="13",
            length=size,
            command=command,
            ecu_id=ecu_id if ecu_id.isdigit() else None,
            control=details,
        )
    return DecodedFrame(kind=FrameKind.UNKNOWN, version="13", length=size)


def _decode_ema_reply(text: str) -> DecodedFrame:
    size = len(text)
    if size < 3:
        return _invalid(
            size, None, f"truncated: EMA reply of {size} characters, needs at least 3"
        )
    count = text[1:3]
    if not count.isdigit():
        return _invalid(size, None, f"bad timestamp count {count!r} in EMA reply")
    need = 3 + TIMESTAMP_LEN * int(count)
    if size < need:
        return _invalid(
            size,
            None,
            f"truncated: EMA reply announces {int(count)} timestamps "
            f"({need} characters), got {size}",
        )
    if size > need:
        return _invalid(
            size,
            None,
            f"length mismatch: EMA reply announces {int(count)} timestamps "
            f"({need} characters), frame has {size}",
        )
    body = text[3:]
    if body and not body.isdigit():
        return _invalid(size, None, "bad digits in the EMA reply's timestamps")
    return DecodedFrame(
        kind=FrameKind.EMA_REPLY,
        version=None,
        length=size,
        status=text[0],
        timestamps=tuple(
            body[i : i + TIMESTAMP_LEN] for i in range(0, len(body), TIMESTAMP_LEN)
        ),
    )


# -- data records --------------------------------------------------------------------


def _decode_data(
    text: str,
    version: str,
    walk: Callable[[str, list[str]], list[Inverter]],
) -> DecodedFrame:
    """Decode the ECU block shared by versions 18 and 15, then its inverter blocks."""
    size = len(text)
    if size < ECU_BLOCK_LEN:
        return _invalid(
            size,
            version,
            f"truncated: {size} characters, a data record's ECU block needs "
            f"{ECU_BLOCK_LEN}",
        )
    if not text[18:77].isdigit():
        for start, end, name in _ECU_FIELDS:
            field = text[start:end]
            if not field.isdigit():
                return _invalid(
                    size, version, f"bad digits in the {name} field: {field!r}"
                )
    if text[83:86] != "END":
        return _invalid(
            size, version, f"no END after the ECU block (offset 83: {text[83:86]!r})"
        )
    timestamp = parse_wire_timestamp(text[60:74])
    if timestamp is None:
        return _invalid(size, version, f"bad timestamp {text[60:74]!r}")
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


def _raw_inverter(block: str) -> Inverter:
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


def _block_until_end(text: str, pos: int) -> str:
    """Return the block at ``pos`` up to and including the next END (or the rest)."""
    end = text.find("END", pos)
    return text[pos:] if end < 0 else text[pos : end + 3]


def _totals(channels: list[Channel]) -> tuple[float, float]:
    return (
        round(sum(ch.power_w for ch in channels), 2),
        round(sum(ch.round_energy_wh for ch in channels), 3),
    )


def _walk_v18(
    text: str,
    warnings: list[str],
    types: dict[str, tuple[str, int]] = BLOCK_TYPES,
    parsers: dict[str, Callable[[str, str, str], Inverter | str]] | None = None,
) -> list[Inverter]:
    """Walk the inverter blocks of a record by their type code.

    ``types`` and ``parsers`` default to the version-18 layouts; the ECU-3 typed
    record (APS15, command 0002) passes its own.
    """
    parsers = _BLOCK_PARSERS if parsers is None else parsers
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
                    inverters.append(_raw_inverter(block))
                pos = end
                continue
            block = _block_until_end(text, pos)
            warnings.append(
                f"inverter {block[:12]} (type {code}): block is {len(block)} "
                f"characters, {family} blocks are {length}; block kept raw"
            )
        else:
            block = _block_until_end(text, pos)
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
        inverters.append(_raw_inverter(block))
        pos += len(block)
    return inverters


def _channel_group(block: str, offset: int, number: int) -> Channel:
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
        channels.append(_channel_group(block, offset, number))
        offset += 20
    power, energy = _totals(channels)
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
    power, energy = _totals(channels)
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


def _parse_yc500_yc250(block: str, code: str, family: str) -> Inverter | str:
    """Types 03 (channels A, B) and 05 (channel A), sign-coded temperature."""
    if not (block[:22].isdigit() and block[25:41].isdigit()):
        return "non-digit characters"
    channels: list[Channel] = []
    offset = 41
    for number, letter in ((1, "A"), (2, "B"))[: 2 if code == "03" else 1]:
        if block[offset] != letter or not block[offset + 1 : offset + 31].isdigit():
            return f"malformed channel {letter} group"
        channels.append(_channel_group(block, offset, number))
        offset += 31
    temperature = parse_signed_temperature(block[22:25])
    if temperature is None:
        return f"malformed sign-coded temperature {block[22:25]!r}"
    power, energy = _totals(channels)
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


_BLOCK_PARSERS: dict[str, Callable[[str, str, str], Inverter | str]] = {
    "03": _parse_yc500_yc250,
    "04": _parse_yc1000,
    "05": _parse_yc500_yc250,
    "07": _parse_yc600_qs1,
    "08": _parse_yc600_qs1,
}

# APS15 (ECU-3) per-input block, docs/protocol.md §4.10: channel "0" = single-input,
# "A"/"B" = the two inputs of a YC500.
_APS15_CHANNELS = {"0": 1, "A": 1, "B": 2}


def _walk_v15(text: str, warnings: list[str]) -> list[Inverter]:
    """Walk the per-channel blocks of an APS15 record and group them by inverter."""
    groups: dict[str, list[tuple[str, Channel]]] = {}
    inverters: list[Inverter | str] = []  # str = id of a group, in order of appearance
    pos = ECU_BLOCK_LEN
    size = len(text)
    while pos < size:
        end = pos + APS15_BLOCK_LEN
        block = text[pos:end]
        letter = block[12:13]
        if (
            end <= size
            and block.endswith("END")
            and letter in _APS15_CHANNELS
            and block[:12].isdigit()
            and block[13:47].isdigit()
        ):
            inverter_id = block[:12]
            if inverter_id not in groups:
                groups[inverter_id] = []
                inverters.append(inverter_id)
            groups[inverter_id].append(
                (
                    block,
                    Channel(
                        _APS15_CHANNELS[letter],
                        int(block[13:18]) / 10,
                        int(block[18:21]) / 10,
                        int(block[21:26]) / 100,
                        int(block[37:47]) / 1000,
                    ),
                )
            )
            pos = end
            continue
        block = _block_until_end(text, pos)
        warnings.append(
            f"block {block[:13]!r}: not a {APS15_BLOCK_LEN}-character APS15 "
            "channel block; kept raw"
        )
        inverters.append(_raw_inverter(block))
        pos += len(block)
    return [
        _aps15_inverter(groups[item]) if isinstance(item, str) else item
        for item in inverters
    ]


def _aps15_inverter(blocks: list[tuple[str, Channel]]) -> Inverter:
    first = blocks[0][0]
    letters = "".join(block[12] for block, _ in blocks)
    channels = [channel for _, channel in blocks]
    power, energy = _totals(channels)
    return Inverter(
        id=first[:12],
        type_code=letters,
        family="YC250" if letters == "0" else "YC500",
        ac_voltage_v=int(first[34:37]),
        frequency_hz=int(first[26:31]) / 10,
        temperature_c=int(first[31:34]) - 100,
        power_w=power,
        round_energy_wh=energy,
        channels=tuple(channels),
    )


# -- ECU-3 typed record (APS15, command 0002) ---------------------------------------
#
# The Linux ECU-3 build for YC1000 sends the version-18 layout under an APS15
# header with command 0002 (docs/protocol.md §4.10, docs/decoder.md; no capture
# confirms it). Numbers are padded with "A" instead of "0", the ECU power is W x100,
# and every channel group carries an 11-character status field: type 04 blocks are
# 180 characters, types 03 and 05 keep their 106 and 75.

ECU3_BLOCK_TYPES: dict[str, tuple[str, int]] = {
    "03": ("YC500", 106),
    "04": ("YC1000", 180),
    "05": ("YC250", 75),
}
_ECU3_GROUP = 45  # type 04 phase group: marker + 33 characters + status (11)


def a_padded_int(field: str) -> int | None:
    """Return the number in a field padded with leading ``A`` (or ``0``)."""
    digits = field.lstrip("A")
    if not digits:
        return 0 if field else None
    return int(digits) if digits.isdigit() and digits.isascii() else None


def _unpad(block: str, spans: list[tuple[int, int]]) -> str:
    """Turn the leading ``A`` padding of the given fields into zeros."""
    chars = list(block)
    for start, end in spans:
        field = block[start:end]
        digits = field.lstrip("A")
        chars[start:end] = list(digits.rjust(len(field), "0"))
    return "".join(chars)


def _decode_ecu3_typed(text: str) -> DecodedFrame:
    """Decode an APS15 record with command 0002 through the version-18 path."""
    size = len(text)
    if size < ECU_BLOCK_LEN:
        return _decode_data(text, "15", _walk_ecu3)  # reports the truncation
    power = a_padded_int(text[30:40])
    if power is None:
        return _invalid(size, "15", f"bad digits in the power field: {text[30:40]!r}")
    # The ECU block's shared decoder wants digits and integer watts.
    normalized = _unpad(text[:ECU_BLOCK_LEN], [(40, 50), (50, 60)])
    normalized = f"{normalized[:30]}{power // 100:010d}{normalized[40:]}"
    frame = _decode_data(normalized + text[ECU_BLOCK_LEN:], "15", _walk_ecu3)
    if frame.kind is not FrameKind.DATA:
        return frame
    return dataclasses.replace(frame, power_w=power / 100)


def _walk_ecu3(text: str, warnings: list[str]) -> list[Inverter]:
    return _walk_v18(text, warnings, ECU3_BLOCK_TYPES, _ECU3_PARSERS)


def _parse_ecu3_yc500_yc250(block: str, code: str, family: str) -> Inverter | str:
    """Types 03/05: the version-18 layout with A-padded numbers."""
    spans = [(14, 17), (17, 22), (25, 30), (30, 35), (35, 41)]
    for offset in (41, 72)[: 2 if code == "03" else 1]:
        spans += [(offset + 1, offset + 6), (offset + 6, offset + 9)]
        spans += [(offset + 9, offset + 15), (offset + 15, offset + 20)]
    return _parse_yc500_yc250(_unpad(block, spans), code, family)


def _parse_ecu3_yc1000(block: str, code: str, family: str) -> Inverter | str:
    """Type 04 with a status field per phase group and sign-coded temperature."""

    def number(start: int, end: int, what: str) -> int:
        value = a_padded_int(block[start:end])
        if value is None:
            raise ValueError(f"bad {what} {block[start:end]!r}")
        return value

    try:
        dc_voltage = number(14, 19, "DC voltage") / 10
        frequency = number(19, 24, "frequency") / 10
        channels: list[Channel] = []
        phases: list[float] = []
        offset = 27
        for marker in "1234":
            if block[offset] != marker:
                return f"channel marker {block[offset]!r} where {marker} belongs"
            current = number(offset + 1, offset + 4, "DC current") / 10
            if marker != "4":
                phases.append(float(number(offset + 4, offset + 7, "phase voltage")))
                energy_at = offset + 23
                offset += _ECU3_GROUP
            else:
                energy_at = offset + 4
            channels.append(
                Channel(
                    int(marker),
                    dc_voltage,
                    current,
                    number(energy_at + 6, energy_at + 11, "power") / 100,
                    number(energy_at, energy_at + 6, "energy") / 1000,
                )
            )
    except ValueError as err:
        return str(err)
    temperature = parse_signed_temperature(block[24:27])
    if temperature is None:
        return f"malformed sign-coded temperature {block[24:27]!r}"
    power, energy = _totals(channels)
    return Inverter(
        id=block[:12],
        type_code=code,
        family=family,
        ac_voltage_v=round(sum(phases) / 3, 1),
        frequency_hz=frequency,
        temperature_c=temperature,
        power_w=power,
        round_energy_wh=energy,
        channels=tuple(channels),
        phase_voltages_v=tuple(phases),
    )


_ECU3_PARSERS: dict[str, Callable[[str, str, str], Inverter | str]] = {
    "03": _parse_ecu3_yc500_yc250,
    "04": _parse_ecu3_yc1000,
    "05": _parse_ecu3_yc500_yc250,
}
