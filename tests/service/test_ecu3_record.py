"""The ECU-3 typed record (APS15, command 0002), from the firmware layout.

No capture confirms this record; the vectors are synthetic: one written by hand
from the layout in docs/decoder.md, the others built by the encoder.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_ecu3_typed_record
from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter
from ecu_proxy.wire import a_padded_int

ECU_ID = "203000001234"
STATUS = "0" * 11
GROUP_TAIL = "AAAA0" + "AAAA0" + "AAAAA0"  # reactive, active power, energy counter
YC1000_BLOCK = (
    "501000012345" + "04" + "AA352" + "AA500" + "A27"
    + "1" + "A15" + "231" + GROUP_TAIL + "AA5125" + "A6150" + STATUS
    + "2" + "A16" + "232" + GROUP_TAIL + "AA5300" + "A6300" + STATUS
    + "3" + "A14" + "230" + GROUP_TAIL + "AA4900" + "A5900" + STATUS
    + "4" + "A15" + "AA5000" + "A6200"
    + "END"
)  # fmt: skip
ECU_BLOCK = (
    ECU_ID + "AAAAA24550" + "AAAAA20500" + "AAAAA12345" + "20240601120000" + "001"
    + "0" + "00000END"
)  # fmt: skip
HAND_MADE = f"APS15A{18 + len(ECU_BLOCK) + len(YC1000_BLOCK):04d}0002AAA1"
HAND_MADE += ECU_BLOCK + YC1000_BLOCK + "\n"


def test_hand_made_yc1000_record() -> None:
    assert len(YC1000_BLOCK) == 180
    frame = decode_frame(HAND_MADE.encode())
    assert frame.kind is FrameKind.DATA, frame.error
    assert frame.version == "15"
    assert frame.ecu_id == ECU_ID
    assert frame.ecu_model == "ECU-3"
    assert frame.power_w == 245.5  # W x100 on the wire
    assert frame.round_energy_kwh == 0.0205
    assert frame.lifetime_energy_kwh == 1234.5
    assert frame.timestamp == datetime(2024, 6, 1, 12, 0)
    assert frame.warnings == ()
    [inverter] = frame.inverters
    assert inverter.raw is None
    assert (inverter.id, inverter.type_code, inverter.family) == (
        "501000012345",
        "04",
        "YC1000",
    )
    assert inverter.frequency_hz == 50.0
    assert inverter.temperature_c == 27
    assert inverter.phase_voltages_v == (231.0, 232.0, 230.0)
    assert inverter.channels == (
        Channel(1, 35.2, 1.5, 61.5, 5.125),
        Channel(2, 35.2, 1.6, 63.0, 5.3),
        Channel(3, 35.2, 1.4, 59.0, 4.9),
        Channel(4, 35.2, 1.5, 62.0, 5.0),
    )
    assert inverter.power_w == 245.5


def test_damaged_block_is_kept_raw_with_a_warning() -> None:
    broken = HAND_MADE.replace("A6300", "A63X0")
    frame = decode_frame(broken.encode())
    assert frame.kind is FrameKind.DATA
    [inverter] = frame.inverters
    assert inverter.raw == YC1000_BLOCK.replace("A6300", "A63X0")
    assert any("bad power" in w for w in frame.warnings)


def test_unknown_type_in_the_record_is_kept_raw() -> None:
    block = "806000011223" + "08" + "0" * 111 + "END"
    body = ECU_BLOCK + block
    text = f"APS15A{18 + len(body):04d}0002AAA1{body}"
    frame = decode_frame(text.encode())
    assert frame.kind is FrameKind.DATA
    [inverter] = frame.inverters
    assert inverter.raw == block


def test_truncated_record_is_invalid() -> None:
    frame = decode_frame(HAND_MADE.encode()[:150])
    assert frame.kind is FrameKind.INVALID


def yc500(inv_id: str) -> Inverter:
    return Inverter(
        id=inv_id,
        type_code="03",
        family="YC500",
        ac_voltage_v=229,
        frequency_hz=50.1,
        temperature_c=-5,
        power_w=70.0,
        round_energy_wh=5.8,
        channels=(Channel(1, 31.5, 1.1, 35.0, 2.9), Channel(2, 31.7, 1.1, 35.0, 2.9)),
    )


def yc250(inv_id: str) -> Inverter:
    return Inverter(
        id=inv_id,
        type_code="05",
        family="YC250",
        ac_voltage_v=230,
        frequency_hz=49.9,
        temperature_c=41,
        power_w=0.0,
        round_energy_wh=0.0,
        channels=(Channel(1, 0.0, 0.0, 0.0, 0.0),),
    )


def test_encoder_round_trip_with_every_type() -> None:
    hand = decode_frame(HAND_MADE.encode())
    record = DecodedFrame(
        kind=FrameKind.DATA,
        version="15",
        length=0,
        ecu_id=ECU_ID,
        timestamp=datetime(2024, 6, 1, 12, 0),
        power_w=315.5,
        round_energy_kwh=0.0205,
        lifetime_energy_kwh=1234.5,
        inverters=(*hand.inverters, yc500("404000000001"), yc250("402000000002")),
    )
    raw = encode_ecu3_typed_record(record)
    assert raw.startswith(b"APS15")
    assert raw[10:18] == b"0002AAA1"
    assert raw.decode()[86 : 86 + 180] == YC1000_BLOCK
    frame = decode_frame(raw)
    assert frame.kind is FrameKind.DATA, frame.error
    assert frame.warnings == ()
    assert frame.power_w == 315.5
    assert [i.type_code for i in frame.inverters] == ["04", "03", "05"]
    assert frame.inverters[0] == hand.inverters[0]
    assert frame.inverters[1].channels == yc500("x").channels
    assert frame.inverters[1].temperature_c == -5
    assert frame.inverters[2].channels == yc250("x").channels


@pytest.mark.parametrize(
    ("field", "value"),
    [("AAAA0", 0), ("AA352", 352), ("00352", 352), ("", None), ("A3A2", None)],
)
def test_a_padded_numbers(field: str, value: int | None) -> None:
    assert a_padded_int(field) == value


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(HAND_MADE) - 1), st.sampled_from("0A9BX\n"))
def test_mutated_record_never_raises(pos: int, char: str) -> None:
    mutated = HAND_MADE[:pos] + char + HAND_MADE[pos + 1 :]
    frame = decode_frame(mutated.encode())
    assert frame.kind in (FrameKind.DATA, FrameKind.INVALID, FrameKind.UNKNOWN)
