"""Decode the two APS15 data records of the ECU-3 (docs/protocol.md §4.10).

Command 0001 lists one 50-character block per inverter input, grouped here by
inverter. Command 0002 (the Linux ECU-3 build for YC1000) is the version-18 layout
with numbers padded with "A" instead of "0"; see docs/decoder.md.
"""

from __future__ import annotations

import dataclasses

from .data_record import decode_data
from .inverter_blocks import (
    BlockParser,
    block_until_end,
    parse_yc500_yc250,
    raw_inverter,
    totals,
    walk_blocks,
)
from .models import Channel, DecodedFrame, FrameKind, Inverter
from .wire import (
    ECU_BLOCK_LEN,
    a_padded_int,
    invalid,
    parse_signed_temperature,
)

APS15_BLOCK_LEN = 50

# APS15 (ECU-3) per-input block, docs/protocol.md §4.10: channel "0" = single-input,
# "A"/"B" = the two inputs of a YC500.
_APS15_CHANNELS = {"0": 1, "A": 1, "B": 2}


def walk_v15(text: str, warnings: list[str]) -> list[Inverter]:
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
        block = block_until_end(text, pos)
        warnings.append(
            f"block {block[:13]!r}: not a {APS15_BLOCK_LEN}-character APS15 "
            "channel block; kept raw"
        )
        inverters.append(raw_inverter(block))
        pos += len(block)
    return [
        _aps15_inverter(groups[item]) if isinstance(item, str) else item
        for item in inverters
    ]


def _aps15_inverter(blocks: list[tuple[str, Channel]]) -> Inverter:
    first = blocks[0][0]
    letters = "".join(block[12] for block, _ in blocks)
    channels = [channel for _, channel in blocks]
    power, energy = totals(channels)
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


def _unpad(block: str, spans: list[tuple[int, int]]) -> str:
    """Turn the leading ``A`` padding of the given fields into zeros."""
    chars = list(block)
    for start, end in spans:
        field = block[start:end]
        digits = field.lstrip("A")
        chars[start:end] = list(digits.rjust(len(field), "0"))
    return "".join(chars)


def decode_ecu3_typed(text: str) -> DecodedFrame:
    """Decode an APS15 record with command 0002 through the version-18 path."""
    size = len(text)
    if size < ECU_BLOCK_LEN:
        return decode_data(text, "15", _walk_ecu3)  # reports the truncation
    power = a_padded_int(text[30:40])
    if power is None:
        return invalid(size, "15", f"bad digits in the power field: {text[30:40]!r}")
    # The ECU block's shared decoder wants digits and integer watts.
    normalized = _unpad(text[:ECU_BLOCK_LEN], [(40, 50), (50, 60)])
    normalized = f"{normalized[:30]}{power // 100:010d}{normalized[40:]}"
    frame = decode_data(normalized + text[ECU_BLOCK_LEN:], "15", _walk_ecu3)
    if frame.kind is not FrameKind.DATA:
        return frame
    return dataclasses.replace(frame, power_w=power / 100)


def _walk_ecu3(text: str, warnings: list[str]) -> list[Inverter]:
    return walk_blocks(text, warnings, ECU3_BLOCK_TYPES, _ECU3_PARSERS)


def _parse_ecu3_yc500_yc250(block: str, code: str, family: str) -> Inverter | str:
    """Types 03/05: the version-18 layout with A-padded numbers."""
    spans = [(14, 17), (17, 22), (25, 30), (30, 35), (35, 41)]
    for offset in (41, 72)[: 2 if code == "03" else 1]:
        spans += [(offset + 1, offset + 6), (offset + 6, offset + 9)]
        spans += [(offset + 9, offset + 15), (offset + 15, offset + 20)]
    return parse_yc500_yc250(_unpad(block, spans), code, family)


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
    power, energy = totals(channels)
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


_ECU3_PARSERS: dict[str, BlockParser] = {
    "03": _parse_ecu3_yc500_yc250,
    "04": _parse_ecu3_yc1000,
    "05": _parse_ecu3_yc500_yc250,
}
