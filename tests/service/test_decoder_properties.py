"""Properties of the framer, the decoder and the encoder (hypothesis)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from documents import frame_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from records import CAPTURE, SYNTHETIC, WHEN

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import (
    encode_control_poll,
    encode_data_record,
    encode_reconcile_query,
)
from ecu_proxy.framing import Framer
from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter
from ecu_proxy.wire import BLOCK_TYPES, ecu_model

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Pieces a real stream is made of, plus damage, to build streams that exercise
# every path of the framer (not only random noise, which is all garbage).
PIECES = [
    CAPTURE,
    CAPTURE[:-1],
    CAPTURE[:120],
    (SYNTHETIC / "ECU-R_YC600_1.txt").read_bytes(),
    (SYNTHETIC / "ECU-3_YC500_1.txt").read_bytes(),
    (SYNTHETIC / "EMA-reply_data-ack_1.txt").read_bytes(),
    encode_control_poll("216000064136"),
    encode_reconcile_query("216000064136"),
    b"100",
    b'{"EID":"216000064136",}\n',
    b"\n",
    b"APS",
    b"APS18AAAAA",
    b"APS18A9999",
    b"junk\x00\xff",
]

streams = st.lists(
    st.one_of(st.sampled_from(PIECES), st.binary(max_size=40)), max_size=12
).map(b"".join)


def frames_of(data: bytes, cuts: list[int], max_frame: int) -> list[bytes]:
    framer = Framer(max_frame=max_frame)
    out: list[bytes] = []
    previous = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out += framer.feed(data[previous:cut])
        previous = cut
    return out + framer.flush()


@FAST
@given(
    data=streams,
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
    max_frame=st.sampled_from([200_000, 1000, 64, 12]),
)
def test_splitting_the_stream_does_not_change_the_frames(
    data: bytes, cuts: list[int], max_frame: int
) -> None:
    cuts = [c for c in cuts if c <= len(data)]
    whole = frames_of(data, [], max_frame)
    assert frames_of(data, cuts, max_frame) == whole
    # Nothing is lost: frames plus the LFs the framer consumed give back the input.
    assert len(b"".join(whole)) <= len(data)
    assert len(data) - len(b"".join(whole)) <= len(whole)


@FAST
@given(data=streams, max_frame=st.sampled_from([200_000, 50]))
def test_byte_by_byte_equals_whole(data: bytes, max_frame: int) -> None:
    assert frames_of(data, list(range(len(data))), max_frame) == frames_of(
        data, [], max_frame
    )


@FAST
@given(data=st.binary(max_size=400))
def test_decode_never_raises(data: bytes) -> None:
    frame = decode_frame(data)
    assert isinstance(frame, DecodedFrame)
    if frame.kind is FrameKind.INVALID:
        assert frame.error


@FAST
@given(data=streams)
def test_every_frame_of_any_stream_decodes(data: bytes) -> None:
    framer = Framer(max_frame=2000)
    for frame in [*framer.feed(data), *framer.flush()]:
        decoded = decode_frame(frame)
        frame_json(decoded)
        if decoded.kind is FrameKind.INVALID:
            assert decoded.error


@FAST
@given(
    prefix=st.integers(min_value=0, max_value=301),
    junk=st.binary(min_size=1, max_size=8),
)
def test_damaged_capture_never_raises(prefix: int, junk: bytes) -> None:
    data = CAPTURE[:prefix] + junk + CAPTURE[prefix + len(junk) :]
    frame_json(decode_frame(data))


# -- encode -> decode round trip -------------------------------------------------------

ids = st.from_regex(r"\A[0-9]{12}\Z", fullmatch=True)


def tenths(limit: int) -> st.SearchStrategy[float]:
    return st.integers(0, limit).map(lambda n: n / 10)


@st.composite
def channels(
    draw: st.DrawFn, count: int, volts: float | None = None
) -> tuple[Channel, ...]:
    out = []
    for number in range(1, count + 1):
        out.append(
            Channel(
                number,
                volts if volts is not None else draw(tenths(99_999)),
                draw(tenths(999)),
                draw(st.integers(0, 99_999)) / 100,
                draw(st.integers(0, 999_999)) / 1000,
            )
        )
    return tuple(out)


@st.composite
def known_inverters(draw: st.DrawFn, type_code: str) -> Inverter:
    family = BLOCK_TYPES[type_code][0]
    phases: tuple[float, ...] | None = None
    if type_code == "04":
        chans = draw(channels(4, volts=draw(tenths(99_999))))
        phases = tuple(float(draw(st.integers(0, 999))) for _ in range(3))
        ac_voltage = round(sum(phases) / 3, 1)
    else:
        chans = draw(channels({"03": 2, "05": 1, "07": 2, "08": 4}[type_code]))
        ac_voltage = draw(st.integers(0, 999))
    if type_code in ("03", "05"):
        temperature = draw(st.integers(-99, 999))
    else:
        temperature = draw(st.integers(-100, 899))
    return Inverter(
        id=draw(ids),
        type_code=type_code,
        family=family,
        ac_voltage_v=ac_voltage,
        frequency_hz=draw(tenths(99_999)),
        temperature_c=temperature,
        power_w=round(sum(c.power_w for c in chans), 2),
        round_energy_wh=round(sum(c.round_energy_wh for c in chans), 3),
        channels=chans,
        phase_voltages_v=phases,
    )


@st.composite
def unknown_inverters(draw: st.DrawFn) -> Inverter:
    code = draw(
        st.text("0123456789AB", min_size=2, max_size=2).filter(
            lambda c: c not in BLOCK_TYPES
        )
    )
    inverter_id = draw(ids)
    body = draw(st.text("0123456789", max_size=150))
    return Inverter(
        id=inverter_id,
        type_code=code,
        family="unknown",
        ac_voltage_v=None,
        frequency_hz=None,
        temperature_c=None,
        power_w=None,
        round_energy_wh=None,
        channels=(),
        raw=f"{inverter_id}{code}{body}END",
    )


inverters = st.one_of(
    *(known_inverters(code) for code in sorted(BLOCK_TYPES)), unknown_inverters()
)


@st.composite
def records(draw: st.DrawFn) -> DecodedFrame:
    invs = tuple(draw(st.lists(inverters, max_size=6)))
    power = round(sum(c.power_w for i in invs for c in i.channels))
    return DecodedFrame(
        kind=FrameKind.DATA,
        version="18",
        length=0,
        ecu_id=draw(ids),
        timestamp=draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31))
        ).replace(microsecond=0),
        power_w=power,
        round_energy_kwh=draw(st.integers(0, 9_999_999_999)) / 1e6,
        lifetime_energy_kwh=draw(st.integers(0, 9_999_999_999)) / 10,
        inverter_count=len(invs),
        more_records=draw(st.booleans()),
        inverters=invs,
    )


# Layouts known only from firmware keep their text in `raw` as well.
@settings(max_examples=200, deadline=None)
@given(
    rec=records(),
    padding=st.sampled_from(["A", "0"]),
    lf=st.booleans(),
)
def test_encode_decode_round_trip(rec: DecodedFrame, padding: str, lf: bool) -> None:
    data = encode_data_record(rec, padding=padding, trailing_lf=lf)
    got = decode_frame(data)
    assert got.kind is FrameKind.DATA, got.error
    text = data.decode("ascii")
    for inverter in got.inverters:
        if inverter.type_code in BLOCK_TYPES:
            assert inverter.raw is None  # decoded blocks are not kept raw
    expected = dataclasses.replace(
        rec,
        length=len(text.rstrip("\n")),
        ecu_model=ecu_model(rec.ecu_id or ""),
        warnings=(),
    )
    assert dataclasses.replace(got, warnings=()) == expected
    unknown = sum(1 for i in rec.inverters if i.type_code not in BLOCK_TYPES)
    assert len(got.warnings) == unknown
    assert all("unknown type code" in w for w in got.warnings)
    # The framer cuts the encoded record back out of a stream, whatever the reads.
    assert (
        frames_of(data + data, [len(data) // 2, len(data) + 3], 200_000)
        == [data.rstrip(b"\n")] * 2
    )


def test_round_trip_of_the_capture_timestamp() -> None:
    assert decode_frame(CAPTURE).timestamp == WHEN
