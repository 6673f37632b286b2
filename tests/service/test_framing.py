"""Framer: cutting one direction of a TCP stream into frames."""

from __future__ import annotations

import pytest
from records import CAPTURE, CAPTURE_FRAME, SYNTHETIC

from ecu_proxy.decoder import decode_frame
from ecu_proxy.framing import Framer, aps_length
from ecu_proxy.models import FrameKind

LONG = (SYNTHETIC / "ECU-R_YC600_1.txt").read_bytes()  # A1142
HUGE = (SYNTHETIC / "ECU-C_QS1_1.txt").read_bytes()  # 10326
ZERO_PADDED = (SYNTHETIC / "ECU-R_YC600-QS1_2.txt").read_bytes()  # 00302
POLL = (SYNTHETIC / "ECU-R_control-A101_1.txt").read_bytes()
QUERY = (SYNTHETIC / "ECU-R_resend-query_1.txt").read_bytes()
REPLY = (SYNTHETIC / "EMA-reply_data-ack_1.txt").read_bytes()  # no LF


def feed_in(data: bytes, size: int, framer: Framer | None = None) -> list[bytes]:
    framer = framer or Framer()
    out: list[bytes] = []
    for i in range(0, len(data), size):
        out += framer.feed(data[i : i + size])
    return out + framer.flush()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"AA302", 302),
        (b"00302", 302),
        (b"A1142", 1142),
        (b"10326", 10326),
        (b"AAA22", 22),
        (b"A0302", 302),
        (b"AAAAA", None),
        (b"3A02A", None),
        (b"AA3 2", None),
        (b"AA+32", None),
        (b"AA32", None),
    ],
)
def test_length_field(field: bytes, value: int | None) -> None:
    assert aps_length(field) == value


def test_one_frame_with_lf() -> None:
    framer = Framer()
    assert framer.feed(CAPTURE) == [CAPTURE_FRAME]
    assert framer.buffered == 0
    assert framer.flush() == []


def test_one_frame_without_lf_then_lf_in_next_read() -> None:
    framer = Framer()
    assert framer.feed(CAPTURE_FRAME) == [CAPTURE_FRAME]
    assert framer.feed(b"\n") == []  # the frame's own LF, one read later
    assert framer.feed(CAPTURE_FRAME + b"\n") == [CAPTURE_FRAME]
    assert framer.flush() == []


def test_only_one_lf_is_skipped() -> None:
    framer = Framer()
    assert framer.feed(CAPTURE_FRAME) == [CAPTURE_FRAME]
    # A second LF is not part of any frame: it is reported, not dropped.
    assert framer.feed(b"\n\n" + CAPTURE) == [b"\n", CAPTURE_FRAME]


@pytest.mark.parametrize("data", [CAPTURE, ZERO_PADDED, LONG, HUGE, POLL, QUERY])
@pytest.mark.parametrize("size", [1, 7, 1000, 1024, 3800, 100_000])
def test_frames_over_many_reads(data: bytes, size: int) -> None:
    assert feed_in(data, size) == [data.rstrip(b"\n")]


def test_lengths_over_1000_and_10000() -> None:
    frames = feed_in(LONG + HUGE, 1000)
    assert [len(f) for f in frames] == [1142, 10326]
    assert [decode_frame(f).inverter_count for f in frames] == [12, 80]


def test_several_frames_in_one_read() -> None:
    stream = CAPTURE + ZERO_PADDED.rstrip(b"\n") + POLL + QUERY + REPLY + CAPTURE
    frames = Framer().feed(stream)
    assert frames == [
        CAPTURE_FRAME,
        ZERO_PADDED.rstrip(b"\n"),
        POLL.rstrip(b"\n"),
        QUERY.rstrip(b"\n"),
        REPLY,
        CAPTURE_FRAME,
    ]


@pytest.mark.parametrize(
    "reply",
    [b"100", b"100\n", REPLY, REPLY + b"\n", b"102" + b"20240206111714" * 2],
)
def test_ema_replies_are_cut_by_their_count(reply: bytes) -> None:
    framer = Framer()
    frames = framer.feed(reply + CAPTURE)
    assert frames == [reply.rstrip(b"\n"), CAPTURE_FRAME]
    frame = decode_frame(frames[0])
    assert frame.kind is FrameKind.EMA_REPLY


def test_ema_reply_split_waits_for_its_timestamps() -> None:
    framer = Framer()
    assert framer.feed(REPLY[:2]) == []
    assert framer.feed(REPLY[2:10]) == []
    assert framer.buffered == 10
    assert framer.feed(REPLY[10:]) == [REPLY]


def test_json_lines_are_frames() -> None:
    line = b'{"EID":"216000064136",}'
    framer = Framer()
    assert framer.feed(line[:5]) == []
    assert framer.feed(line[5:] + b"\n" + CAPTURE) == [line, CAPTURE_FRAME]
    assert decode_frame(line).kind is FrameKind.UNKNOWN


def test_garbage_before_and_between_frames_is_one_chunk() -> None:
    stream = b"hello\r\n" + CAPTURE + b"\x00\xffnoise" + CAPTURE
    expected = [b"hello\r\n", CAPTURE_FRAME, b"\x00\xffnoise", CAPTURE_FRAME]
    assert Framer().feed(stream) == expected
    assert feed_in(stream, 1) == expected
    assert feed_in(stream, 3) == expected


def test_garbage_is_held_until_the_next_aps_or_flush() -> None:
    framer = Framer()
    assert framer.feed(b"xyz") == []
    assert framer.feed(b"AP") == []
    assert framer.buffered == 5
    assert framer.feed(b"Q") == []  # "APQ" is not a frame start
    assert framer.feed(CAPTURE) == [b"xyzAPQ", CAPTURE_FRAME]
    assert framer.feed(b"tail") == []
    assert framer.flush() == [b"tail"]
    frame = decode_frame(b"tail")
    assert frame.kind is FrameKind.INVALID
    assert frame.error is not None
    assert "not a frame" in frame.error


def test_garbage_longer_than_max_frame_is_cut_in_max_frame_pieces() -> None:
    framer = Framer(max_frame=1000)
    garbage = b"x" * 2500
    assert framer.feed(garbage) == [b"x" * 1000, b"x" * 1000]
    assert framer.buffered == 500
    assert framer.feed(CAPTURE) == [b"x" * 500, CAPTURE_FRAME]


@pytest.mark.parametrize("size", [1, 999, 1000, 1001, 100_000])
def test_frame_right_at_the_garbage_cap_is_found(size: int) -> None:
    stream = b"x" * 2000 + CAPTURE + b"y" * 1000 + CAPTURE
    expected = [b"x" * 1000, b"x" * 1000, CAPTURE_FRAME, b"y" * 1000, CAPTURE_FRAME]
    assert feed_in(stream, size, Framer(max_frame=1000)) == expected


@pytest.mark.parametrize(
    "header",
    [
        b"APS18AAAAA",  # no digits
        b"APS18AA3X2",  # not a number
        b"APS18AAAA5",  # shorter than the header itself
        b"APSxxAA302",  # version not digits
    ],
)
def test_bad_header_is_a_bad_chunk_then_resync(header: bytes) -> None:
    bad = header + b"AAAAAAA1216000064136"
    frames = feed_in(bad + CAPTURE, 4)
    assert frames == [bad, CAPTURE_FRAME]
    assert decode_frame(bad).kind is FrameKind.INVALID


def test_length_above_the_cap_is_a_bad_chunk_then_resync() -> None:
    framer = Framer(max_frame=1000)
    frames = framer.feed(HUGE + CAPTURE)  # header says 10326 > 1000
    assert frames[-1] == CAPTURE_FRAME
    assert b"".join(frames[:-1]) == HUGE  # nothing lost, cut in pieces <= cap
    assert all(len(f) <= 1000 for f in frames[:-1])
    first = decode_frame(frames[0])
    assert first.kind is FrameKind.INVALID
    assert first.error is not None
    assert "truncated" in first.error


def test_truncated_frame_comes_out_at_flush() -> None:
    framer = Framer()
    assert framer.feed(CAPTURE[:150]) == []
    assert framer.buffered == 150
    (rest,) = framer.flush()
    assert rest == CAPTURE[:150]
    assert framer.buffered == 0
    frame = decode_frame(rest)
    assert frame.kind is FrameKind.INVALID
    assert frame.error == "truncated: header says 302 characters, got 150"
    assert framer.flush() == []


def test_wrong_length_field_does_not_lose_bytes() -> None:
    # Header claims 301: the last character ("D") and the LF become their own chunk.
    short = CAPTURE_FRAME.replace(b"AA302", b"AA301", 1)
    frames = feed_in(short + b"\n" + CAPTURE, 50)
    assert b"".join(frames) == short + b"\n" + CAPTURE_FRAME
    assert frames[-1] == CAPTURE_FRAME
    assert frames[1] == b"D\n"
    assert decode_frame(frames[1]).kind is FrameKind.INVALID
    # The cut record still decodes; its damaged last block is kept raw.
    first = decode_frame(frames[0])
    assert first.kind is FrameKind.DATA
    assert first.inverters[-1].raw == CAPTURE_FRAME[174:301].decode()
    assert any("kept raw" in w for w in first.warnings)


def test_empty_feed_and_empty_flush() -> None:
    framer = Framer()
    assert framer.feed(b"") == []
    assert framer.flush() == []
    assert framer.buffered == 0


@pytest.mark.parametrize("size", [1, 2, 3, 7, 4096])
def test_runs_of_invalid_aps_become_one_garbage_chunk(size: int) -> None:
    junk = b"APS" * 300 + b"APS18" + b"APSxx" * 50 + b"APS18AAAAA"
    frames = feed_in(b"xx" + junk + CAPTURE, size)
    # Not one chunk per "APS": one run up to the next valid header.
    assert frames == [b"xx" + junk, CAPTURE_FRAME]


def test_aps_flood_is_cut_only_at_the_cap() -> None:
    flood = b"APS" * 10_000
    frames = feed_in(flood, 4096, Framer(max_frame=1000))
    assert b"".join(frames) == flood
    assert all(len(f) == 1000 for f in frames[:-1])


@pytest.mark.parametrize("unit", [b"100", b"{\n", b"APS1800010"])
def test_limit_throttles_tiny_frames_and_counts_what_is_skipped(unit: bytes) -> None:
    framer = Framer()
    flood = unit * 1000
    frames = framer.feed(flood, limit=5)
    assert len(frames) == 5
    consumed = sum(len(f) for f in frames)
    assert 0 < framer.skipped <= len(flood) - consumed
    assert framer.buffered == 0
    # While throttled nothing is cut or kept.
    assert framer.feed(flood, limit=0) == []
    assert framer.buffered == 0
    skipped = framer.skipped
    assert skipped > len(flood)
    # With budget again it resynchronises at the next valid APS header.
    assert framer.feed(b"junk" + CAPTURE, limit=5) == [b"junk", CAPTURE_FRAME]


def test_without_a_limit_nothing_is_skipped() -> None:
    framer = Framer()
    assert len(framer.feed(b"100" * 1000)) == 1000
    assert framer.skipped == 0
