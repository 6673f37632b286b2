"""decode_frame, the helpers around it, and the encoder built on the same layouts."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest
from documents import frame_json
from records import (
    CAPTURE,
    CAPTURE_FRAME,
    ECU_ID,
    SYNTHETIC,
    channel,
    inverter,
    raw_inverter,
    record,
    splice,
)

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import (
    encode_control_poll,
    encode_data_record,
    encode_inverter_block,
    encode_reconcile_query,
    format_signed_temperature,
)
from ecu_proxy.models import DecodedFrame, Direction, FrameKind
from ecu_proxy.wire import (
    ecu_model,
    format_wire_timestamp,
    inverter_family,
    parse_signed_temperature,
    parse_wire_timestamp,
)


def decode_data(data: bytes) -> DecodedFrame:
    frame = decode_frame(data)
    assert frame.kind is FrameKind.DATA, frame.error
    return frame


# -- the real capture ------------------------------------------------------------


def test_capture_decodes_to_the_published_values() -> None:
    frame = decode_data(CAPTURE)
    assert frame.version == "18"
    assert frame.length == 302
    assert frame.ecu_id == ECU_ID
    assert frame.ecu_model == "ECU-R"
    assert frame.timestamp == datetime(2024, 2, 6, 11, 22, 14)
    assert frame.power_w == 190
    assert frame.round_energy_kwh == 0.0
    assert frame.lifetime_energy_kwh == 2127.9
    assert frame.inverter_count == 2
    assert frame.more_records is False
    assert frame.warnings == ()
    yc600, qs1 = frame.inverters
    assert (yc600.type_code, yc600.family, qs1.type_code, qs1.family) == (
        "07",
        "YC600",
        "08",
        "QS1",
    )
    # The DC currents are the 3 digits after the voltage (docs/protocol.md §4.4).
    assert [c.dc_current_a for c in yc600.channels] == [0.5, 0.5]
    assert [c.dc_current_a for c in qs1.channels] == [1.0, 1.2, 1.4, 1.4]
    assert [c.dc_voltage_v for c in qs1.channels] == [31.1, 34.2, 33.4, 32.9]
    assert (yc600.power_w, qs1.power_w) == (35.0, 155.0)
    assert (yc600.round_energy_wh, qs1.round_energy_wh) == (2.828, 12.385)
    assert (yc600.temperature_c, qs1.temperature_c) == (13, 15)
    assert yc600.raw is None
    assert qs1.raw is None


def test_trailing_lf_is_optional() -> None:
    assert decode_frame(CAPTURE) == decode_frame(CAPTURE_FRAME)


def test_direction_does_not_change_the_decode() -> None:
    assert decode_frame(CAPTURE, Direction.ECU_TO_EMA) == decode_frame(CAPTURE)
    reply = b"100"
    assert decode_frame(reply, Direction.EMA_TO_ECU) == decode_frame(reply)


def test_json_is_clean() -> None:
    text = json.dumps(frame_json(decode_frame(CAPTURE)))
    assert "0000000" not in text  # no 1.4090000000001-style floats
    assert '"round_energy_wh": 2.828' in text


def test_more_records_flag() -> None:
    frame = decode_data(encode_data_record(record(inverter("07"), more_records=True)))
    assert frame.more_records is True


# -- models and small helpers ------------------------------------------------------


@pytest.mark.parametrize(
    ("ecu_id", "model"),
    [
        ("216000064136", "ECU-R"),
        ("216200000001", "ECU-R Pro"),
        ("216300036646", "ECU-B"),
        ("215000003925", "ECU-C"),
        ("215000000001", "ECU-C"),
        ("203000000001", "ECU-3"),
        ("216100000001", "unknown"),
        ("999999999999", "unknown"),
        ("", "unknown"),
    ],
)
def test_ecu_model(ecu_id: str, model: str) -> None:
    assert ecu_model(ecu_id) == model


@pytest.mark.parametrize(
    ("code", "family"),
    [
        ("03", "YC500"),
        ("04", "YC1000"),
        ("05", "YC250"),
        ("07", "YC600"),
        ("08", "QS1"),
        ("09", "unknown"),
        ("01", "unknown"),
    ],
)
def test_inverter_family(code: str, family: str) -> None:
    assert inverter_family(code) == family


def test_wire_timestamps() -> None:
    moment = datetime(2024, 2, 6, 1, 2, 3)
    assert format_wire_timestamp(moment) == "20240206010203"
    assert parse_wire_timestamp("20240206010203") == moment
    assert format_wire_timestamp(datetime(999, 1, 1)) == "09990101000000"
    for bad in ("20241306010203", "2024020601020", "2024020601020x", "20240230000000"):
        assert parse_wire_timestamp(bad) is None


@pytest.mark.parametrize(
    ("celsius", "wire"),
    [
        (-45, "B45"),
        (-10, "B10"),
        (-9, "AB9"),
        (-1, "AB1"),
        (0, "AA0"),
        (9, "AA9"),
        (10, "A10"),
        (42, "A42"),
        (99, "A99"),
        (100, "100"),
        (123, "123"),
    ],
)
def test_sign_coded_temperature(celsius: int, wire: str) -> None:
    assert format_signed_temperature(celsius) == wire
    assert parse_signed_temperature(wire) == celsius


@pytest.mark.parametrize("wire", ["", "A", "ABC", "BB1", "A-1", "C12", "AB", " 12"])
def test_malformed_sign_coded_temperature(wire: str) -> None:
    assert parse_signed_temperature(wire) is None


# -- inverter block types ------------------------------------------------------------


@pytest.mark.parametrize("celsius", [-25, -3, 0, 7, 35, 120])
@pytest.mark.parametrize("code", ["03", "05"])
def test_yc500_yc250_blocks_with_sign_coded_temperatures(
    code: str, celsius: int
) -> None:
    inv = inverter(code, "403000000001", temperature_c=celsius)
    frame = decode_data(encode_data_record(record(inv)))
    (got,) = frame.inverters
    assert got.temperature_c == celsius
    assert got.family == ("YC500" if code == "03" else "YC250")
    assert len(got.channels) == (2 if code == "03" else 1)
    assert got.channels == inv.channels
    assert got.raw is None  # decoded: raw marks only blocks that could not be
    assert frame.warnings == ()


def test_yc500_block_with_broken_temperature_is_kept_raw() -> None:
    block = encode_inverter_block(inverter("03", "403000000001", temperature_c=-5))
    broken = block.replace("AB5", "AXB", 1)
    frame = decode_data(splice(encode_data_record(record(inverter("07"))), broken))
    assert frame.inverters[1].raw == broken
    assert frame.inverters[1].channels == ()
    assert any("temperature" in w for w in frame.warnings)


def test_yc1000_phase_voltages() -> None:
    channels = tuple(
        channel(n, volts=35.2, amps=a, watts=w, wh=e)
        for n, a, w, e in (
            (1, 2.1, 70.5, 5.9),
            (2, 2.2, 74.0, 6.1),
            (3, 1.9, 66.0, 5.5),
            (4, 2.0, 69.99, 5.8),
        )
    )
    inv = inverter("04", "501000000001", channels=channels, phases=(229, 231, 233))
    frame = decode_data(encode_data_record(record(inv)))
    (got,) = frame.inverters
    assert got.phase_voltages_v == (229.0, 231.0, 233.0)
    assert got.ac_voltage_v == 231.0
    assert got.channels == channels
    assert got.power_w == 280.49
    assert got.round_energy_wh == 23.3
    assert frame_json(frame)["inverters"][0]["phase_voltages_v"] == [
        229.0,
        231.0,
        233.0,
    ]
    assert frame.warnings == ()


def test_unknown_type_code_is_kept_raw_and_walk_goes_on() -> None:
    unknown = raw_inverter("09", "1234567890" * 7)
    frame = decode_data(
        encode_data_record(
            record(inverter("07"), unknown, inverter("08", "806000011223"))
        )
    )
    first, middle, last = frame.inverters
    assert middle == unknown
    assert (first.type_code, last.type_code) == ("07", "08")
    assert len(last.channels) == 4
    assert len(frame.warnings) == 1
    assert "unknown type code '09'" in frame.warnings[0]
    assert "999000000001" in frame.warnings[0]


def test_known_code_with_wrong_length_is_kept_raw() -> None:
    odd = "703000021300" + "07" + "0" * 80 + "END"  # a "07" that is not 88 long
    data = encode_data_record(record(inverter_count=2))
    frame = decode_data(splice(data, odd + encode_inverter_block(inverter("07"))))
    assert frame.inverters[0].raw == odd
    assert frame.inverters[0].family == "YC600"
    assert frame.inverters[0].channels == ()
    assert frame.inverters[1].channels
    assert any("blocks are 88" in w for w in frame.warnings)


def test_bad_channel_marker_is_kept_raw() -> None:
    text = CAPTURE_FRAME.decode()
    broken = text[: 86 + 45] + "9" + text[86 + 46 :]
    frame = decode_data(broken.encode())
    assert frame.inverters[0].raw == broken[86:174]
    assert any("channel marker" in w for w in frame.warnings)


def test_tail_without_end_is_kept_raw() -> None:
    frame = decode_data(splice(CAPTURE, "12345"))
    assert frame.inverters[-1].raw == "12345"
    assert any("without END" in w for w in frame.warnings)


# -- cross-checks ------------------------------------------------------------------


def test_power_mismatch_warns_about_the_x100_variant() -> None:
    frame = decode_data(encode_data_record(record(inverter("07"), power_w=3400)))
    (warning,) = frame.warnings
    assert "3400 W" in warning
    assert "34 W" in warning
    assert "x100" in warning


@pytest.mark.parametrize(
    ("power", "warns"), [(44, False), (45, True), (24, False), (23, True)]
)
def test_power_tolerance_is_10_w_or_10_percent(power: int, warns: bool) -> None:
    frame = decode_data(encode_data_record(record(inverter("07"), power_w=power)))
    assert bool(frame.warnings) is warns  # channels sum to 34 W


def test_power_tolerance_scales_for_big_systems() -> None:
    big = [inverter("08", f"8060000112{n:02d}") for n in range(80)]  # 5440 W
    assert not decode_data(encode_data_record(record(*big, power_w=5900))).warnings
    assert decode_data(encode_data_record(record(*big, power_w=6000))).warnings


def test_inverter_count_mismatch_warns() -> None:
    frame = decode_data(encode_data_record(record(inverter("07"), inverter_count=3)))
    (warning,) = frame.warnings
    assert "inverter_count says 3" in warning
    assert frame.inverter_count == 3
    assert len(frame.inverters) == 1


def test_no_power_check_when_a_block_is_unknown() -> None:
    frame = decode_data(
        encode_data_record(
            record(inverter("07"), raw_inverter("11", "5" * 60), power_w=500)
        )
    )
    assert len(frame.warnings) == 1  # only the unknown type code


# -- other frame kinds -----------------------------------------------------------------


def test_control_polls_in_both_paddings() -> None:
    for padding in ("0", "A"):
        frame = decode_frame(encode_control_poll(ECU_ID, padding=padding))
        assert frame.kind is FrameKind.CONTROL
        assert (frame.version, frame.length, frame.command, frame.ecu_id) == (
            "13",
            51,
            "A101",
            ECU_ID,
        )


def test_control_without_ecu_id() -> None:
    frame = decode_frame(b"APS13AAA33A100AAA0x16000064136END")
    assert frame.kind is FrameKind.CONTROL
    assert frame.ecu_id is None


def test_reconcile_query() -> None:
    frame = decode_frame(encode_reconcile_query(ECU_ID))
    assert frame.kind is FrameKind.RECONCILE_QUERY
    assert frame.ecu_id == ECU_ID
    assert frame_json(frame) == {
        "kind": "reconcile_query",
        "version": "13",
        "length": 22,
        "ecu_id": ECU_ID,
    }


@pytest.mark.parametrize(
    ("data", "status", "timestamps"),
    [
        (b"100", "1", ()),
        (b"10120240206111714", "1", ("20240206111714",)),
        (
            b"102" + b"20240206111714" + b"20240206112214",
            "1",
            ("20240206111714", "20240206112214"),
        ),
        (b"000", "0", ()),
    ],
)
def test_ema_replies(data: bytes, status: str, timestamps: tuple[str, ...]) -> None:
    frame = decode_frame(data)
    assert frame.kind is FrameKind.EMA_REPLY
    assert (frame.status, frame.timestamps, frame.version) == (status, timestamps, None)


@pytest.mark.parametrize(
    "data",
    [
        b"APS16AAA20001000121600000END",  # optimizer record, not parsed
        b"APS15AA30A123AAA1216000064136",  # abnormal status, not parsed
        b"APS19AAA10",
        b"APS13AAA14AAAA",
        b'{"EID":"216000064136",}',
    ],
)
def test_recognised_but_not_parsed_is_unknown(data: bytes) -> None:
    data = data if not data.startswith(b"APS") else _fix_length(data)
    frame = decode_frame(data)
    assert frame.kind is FrameKind.UNKNOWN
    assert frame.length == len(data)


def _fix_length(data: bytes) -> bytes:
    return data[:5] + f"{len(data):A>5}".encode() + data[10:]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "empty frame"),
        (b"\n", "empty frame"),
        (b"hello", "not a frame"),
        (b"\x00\x01", "not a frame"),
        (b"APS18", "truncated"),
        (b"APS1", "truncated"),
        (b"APSxxAA302", "bad version"),
        (b"APS18AAAAA", "bad length field"),
        (CAPTURE[:150], "truncated: header says 302 characters, got 150"),
        (
            CAPTURE_FRAME + b"XY",
            "length mismatch: header says 302 characters, frame has 304",
        ),
        (
            CAPTURE_FRAME.replace(b"00000001900", b"0000000x900", 1),
            "bad digits in the power field",
        ),
        (
            CAPTURE_FRAME.replace(b"2024020611", b"2024130611", 1),
            "bad timestamp '20241306112214'",
        ),
        (
            CAPTURE_FRAME.replace(b"0000END408", b"0000XYZ408", 1),
            "no END after the ECU block",
        ),
        (_fix_length(CAPTURE_FRAME[:80]), "truncated: 80 characters"),
        (CAPTURE_FRAME.replace(b"END", b"\xe9ND", 1), "bad byte 0xe9 at offset 83"),
        (b"1", "truncated"),
        (b"102" + b"2" * 14, "truncated: EMA reply announces 2 timestamps"),
        (b"101" + b"2" * 15, "length mismatch"),
        (b"1x1" + b"2" * 14, "bad timestamp count"),
        (b"101" + b"2" * 13 + b"x", "bad digits"),
        (b'{"EID":"2160', "truncated: JSON line"),
    ],
)
def test_invalid_frames_say_why(data: bytes, error: str) -> None:
    frame = decode_frame(data)
    assert frame.kind is FrameKind.INVALID
    assert frame.error is not None
    assert error in frame.error
    assert frame_json(frame)["error"] == frame.error


def test_invalid_keeps_the_version_when_known() -> None:
    assert decode_frame(CAPTURE[:150]).version == "18"
    assert decode_frame(b"hello").version is None


def test_decode_never_raises_on_odd_input() -> None:
    for junk in (
        bytearray(CAPTURE),
        memoryview(CAPTURE),
        b"APS18AA302" + b"\xff" * 292,
    ):
        assert decode_frame(junk).kind in (FrameKind.DATA, FrameKind.INVALID)  # type: ignore[arg-type]
    frame = decode_frame(None)  # type: ignore[arg-type]
    assert frame.kind is FrameKind.INVALID
    assert frame.error is not None
    assert frame.error.startswith("decoder error")


# -- APS15 (ECU-3) ---------------------------------------------------------------------


def test_aps15_groups_channel_blocks_by_inverter() -> None:
    data = (SYNTHETIC / "ECU-3_YC500_1.txt").read_bytes()
    frame = decode_data(data)
    assert (frame.version, frame.ecu_model, frame.power_w) == ("15", "ECU-3", 230)
    (inv,) = frame.inverters
    assert (inv.id, inv.type_code, inv.family) == ("100000000001", "AB", "YC500")
    assert [c.channel for c in inv.channels] == [1, 2]
    assert inv.power_w == 230.0
    assert inv.round_energy_wh == 19.167
    assert inv.raw is None


def test_aps15_single_channel_and_bad_block() -> None:
    data = (SYNTHETIC / "ECU-3_YC500_1.txt").read_bytes().rstrip(b"\n").decode()
    head, first, second = data[:86], data[86:136], data[136:186]
    single = "100000000002" + "0" + first[13:]
    text = head + second + single + "junkEND"
    text = text[:5] + f"{len(text):05d}" + text[10:]
    frame = decode_data(text.encode())
    one, two, junk = frame.inverters
    assert (one.id, one.type_code, one.family) == ("100000000001", "B", "YC500")
    assert (two.id, two.type_code, two.family) == ("100000000002", "0", "YC250")
    assert junk.raw == "junkEND"
    assert any("not a 50-character APS15" in w for w in frame.warnings)


# -- encoder ---------------------------------------------------------------------------


def test_encoder_reproduces_the_capture_apart_from_unreported_fields() -> None:
    encoded = encode_data_record(decode_data(CAPTURE))
    assert len(encoded) == len(CAPTURE)
    # Only the AC active power fields (not decoded) differ.
    diffs = [i for i, (a, b) in enumerate(zip(encoded, CAPTURE, strict=True)) if a != b]
    assert diffs
    assert all(86 + 30 <= i < 86 + 35 or 174 + 30 <= i < 174 + 35 for i in diffs)


def test_encoder_header_spellings() -> None:
    rec = decode_data(CAPTURE)
    zero = encode_data_record(rec, padding="0", command="0000", sequence="0001")
    assert zero.startswith(b"APS18003020000000121600006413")
    assert decode_frame(zero) == rec
    no_lf = encode_data_record(rec, trailing_lf=False)
    assert not no_lf.endswith(b"\n")
    assert decode_frame(no_lf) == rec


def test_encoder_control_and_query_match_the_vectors() -> None:
    assert (
        encode_control_poll(ECU_ID)
        == (SYNTHETIC / "ECU-R_control-A101_1.txt").read_bytes()
    )
    assert (
        encode_control_poll(ECU_ID, padding="A")
        == (SYNTHETIC / "ECU-R_control-A101_2.txt").read_bytes()
    )
    assert (
        encode_reconcile_query(ECU_ID)
        == (SYNTHETIC / "ECU-R_resend-query_1.txt").read_bytes()
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dataclasses.replace(record(inverter("07")), ecu_id="123"), "12 digits"),
        (dataclasses.replace(record(inverter("07")), power_w=-1), "does not fit"),
        (dataclasses.replace(record(inverter("07")), timestamp=None), "timestamp"),
        (record(inverter("07", channels=(channel(1),))), "needs 2 channels"),
        (
            record(inverter("07", channels=(channel(1, volts=10000.0), channel(2)))),
            "DC voltage",
        ),
        (record(inverter("03", temperature_c=-100)), "sign-coded"),
        (record(dataclasses.replace(raw_inverter("09", "1"), raw=None)), "raw block"),
        (
            record(dataclasses.replace(raw_inverter("09", "1"), raw="12ENDEND")),
            "raw block",
        ),
        (record(dataclasses.replace(inverter("07"), id="40800011117X")), "12 digits"),
        (DecodedFrame(kind=FrameKind.CONTROL, version="13", length=51), "data records"),
    ],
)
def test_encoder_refuses_what_an_ecu_could_not_send(
    bad: DecodedFrame, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_data_record(bad)


def test_encoder_refuses_bad_header_options() -> None:
    rec = record(inverter("07"))
    with pytest.raises(ValueError, match="padding"):
        encode_data_record(rec, padding="x")
    with pytest.raises(ValueError, match="4 characters"):
        encode_data_record(rec, command="A1")
    with pytest.raises(ValueError, match="5-digit length"):
        encode_data_record(record(*[inverter("08")] * 800))
