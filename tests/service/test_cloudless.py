"""Cloudless mode: the replies we build, and the relay answering ECUs itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from stand_ins import (
    CAPTURE,
    ECU_HOST,
    VECTORS,
    FakeEcu,
    RecordingListener,
    StandInEma,
    WatchedRelay,
    free_port_pair,
)

from ecu_proxy.cloudless import (
    CloudlessResponder,
    encode_ema_reply,
    encode_no_more_commands,
)
from ecu_proxy.decoder import decode_frame
from ecu_proxy.framing import aps_length
from ecu_proxy.models import Direction, FrameKind, UpstreamResult
from ecu_proxy.options import Mode, Options
from ecu_proxy.wire import format_wire_timestamp

if TYPE_CHECKING:
    from pathlib import Path

ECU_ID = "216000064136"
SYNTHETIC = VECTORS / "synthetic"
POLL = (SYNTHETIC / "ECU-R_control-A101_1.txt").read_bytes()
POLL_A_PADDED = (SYNTHETIC / "ECU-R_control-A101_2.txt").read_bytes()
QUERY = (SYNTHETIC / "ECU-R_resend-query_1.txt").read_bytes()
STORED = ["20240206112214", "20240206111714", "20240206111214"]


class FakeIndex:
    """A RecordIndex answering from a dict; remembers what it was asked."""

    def __init__(self, stored: dict[str, list[str]]) -> None:
        self.stored = stored
        self.asked: list[tuple[str, int]] = []

    def stored_timestamps(self, ecu_id: str, limit: int = 99) -> list[str]:
        self.asked.append((ecu_id, limit))
        return list(self.stored.get(ecu_id, []))

    def is_stored(self, ecu_id: str, timestamp: str) -> bool:
        return timestamp in self.stored.get(ecu_id, [])


def test_ema_reply_encoding() -> None:
    assert encode_ema_reply([]) == b"100"
    assert encode_ema_reply(STORED[:1]) == b"10120240206112214"
    assert encode_ema_reply(STORED, status="0") == b"003" + "".join(STORED).encode()
    reply = encode_ema_reply(STORED)
    decoded = decode_frame(reply, Direction.EMA_TO_ECU)
    assert decoded.kind is FrameKind.EMA_REPLY
    assert decoded.status == "1"
    assert list(decoded.timestamps) == STORED


@pytest.mark.parametrize(
    ("timestamps", "status", "message"),
    [
        (["2024020611221"], "1", "YYYYMMDDhhmmss"),
        (["2024020611221x"], "1", "YYYYMMDDhhmmss"),
        (["20240206112214"] * 100, "1", "at most 99"),
        ([], "10", "one ASCII character"),
    ],
)
def test_ema_reply_rejects_what_the_ecu_could_not_parse(
    timestamps: list[str], status: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_ema_reply(timestamps, status)


def test_no_more_commands_frame_follows_the_control_format() -> None:
    frame = encode_no_more_commands(ECU_ID)
    # EMA's own form (the published frame, with this ECU's id).
    assert frame == b"APS13AAA52A100AAA0216000064136A101000000000000000END"
    assert aps_length(frame[5:10]) == len(frame)  # what the ECU checks
    assert frame[18:30] == ECU_ID.encode()
    decoded = decode_frame(frame, Direction.EMA_TO_ECU)
    assert decoded.kind is FrameKind.CONTROL
    assert decoded.command == "A100"
    assert decoded.ecu_id == ECU_ID
    with pytest.raises(ValueError, match="12 digits"):
        encode_no_more_commands("21600006413")


def test_data_record_is_acknowledged_with_its_own_timestamp() -> None:
    responder = CloudlessResponder(FakeIndex({ECU_ID: STORED}))
    reply = responder.reply_for(decode_frame(CAPTURE))
    assert reply == b"10120240206112214"


def test_record_not_stored_is_accepted_but_not_confirmed() -> None:
    # Refused or filtered: the ECU must keep it, so no timestamp is confirmed.
    responder = CloudlessResponder(FakeIndex({ECU_ID: STORED[1:]}))
    assert responder.reply_for(decode_frame(CAPTURE)) == b"100"
    assert CloudlessResponder(FakeIndex({})).reply_for(decode_frame(CAPTURE)) == b"100"


@pytest.mark.parametrize("poll", [POLL, POLL_A_PADDED])
def test_command_poll_gets_no_more_commands(poll: bytes) -> None:
    responder = CloudlessResponder(FakeIndex({}))
    assert responder.reply_for(decode_frame(poll)) == encode_no_more_commands(ECU_ID)


def test_reconciliation_query_lists_the_stored_timestamps() -> None:
    index = FakeIndex({ECU_ID: STORED})
    responder = CloudlessResponder(index)
    assert responder.reply_for(decode_frame(QUERY)) == encode_ema_reply(STORED)
    assert index.asked == [(ECU_ID, 99)]
    index.stored.clear()
    assert responder.reply_for(decode_frame(QUERY)) == b"100"


def test_reconciliation_reply_never_exceeds_99_and_skips_bad_stamps() -> None:
    start = datetime(2024, 2, 6, 10, 0)
    many = [format_wire_timestamp(start - timedelta(minutes=5 * n)) for n in range(150)]
    index = FakeIndex({ECU_ID: ["garbage", "20240231120000", *many]})
    reply = CloudlessResponder(index).reply_for(decode_frame(QUERY))
    assert reply == encode_ema_reply(many[:99])


def test_other_frames_get_no_reply() -> None:
    responder = CloudlessResponder(FakeIndex({ECU_ID: STORED}))
    status_query = f"APS13AAA51A123AAA0{ECU_ID}{'0' * 18}END\n".encode()
    for frame in (
        status_query,
        b"10120240206112214",
        b"garbage that is not a frame",
        encode_no_more_commands(ECU_ID),
    ):
        assert responder.reply_for(decode_frame(frame)) is None, frame


async def test_relay_in_cloudless_mode_answers_without_any_upstream(
    tmp_path: Path,
) -> None:
    port = free_port_pair()
    ema = StandInEma(port)  # must never be contacted
    await ema.start()
    listener = RecordingListener()
    options = Options(
        listen=ECU_HOST,
        ports=(port,),
        mode=Mode.CLOUDLESS,
        data_dir=tmp_path,
        idle_timeout=30.0,
    ).validate()
    relay = WatchedRelay(
        options,
        listener,
        upstream=None,
        cloudless=CloudlessResponder(FakeIndex({ECU_ID: STORED})),
    )
    await relay.start()
    try:
        ecu = await FakeEcu.connect(relay.bound_ports[port])
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(17) == b"10120240206112214"
        await ecu.send(QUERY)
        expected = encode_ema_reply(STORED)
        assert await ecu.read_exactly(len(expected)) == expected
        await ecu.close()

        control = await FakeEcu.connect(relay.bound_ports[port])
        await control.send(POLL)
        expected = encode_no_more_commands(ECU_ID)
        assert await control.read_exactly(len(expected)) == expected
        control.write_eof()
        assert await control.read_to_eof() == b""
        await control.close()
        await relay.wait_until(lambda: relay.counters.active_connections == 0, 10)
    finally:
        await relay.stop()
        await ema.stop()

    assert ema.accepted == 0
    assert [r.result for r in listener.reports] == [UpstreamResult.CLOUDLESS] * 3
    assert all(r.ecu_id == ECU_ID for r in listener.reports)
    kinds = [(e.direction, e.frame.kind) for e in listener.frames]
    assert kinds == [
        (Direction.ECU_TO_EMA, FrameKind.DATA),
        (Direction.EMA_TO_ECU, FrameKind.EMA_REPLY),
        (Direction.ECU_TO_EMA, FrameKind.RECONCILE_QUERY),
        (Direction.EMA_TO_ECU, FrameKind.EMA_REPLY),
        (Direction.ECU_TO_EMA, FrameKind.CONTROL),
        (Direction.EMA_TO_ECU, FrameKind.CONTROL),
    ]
