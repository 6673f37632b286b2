"""The relay against a stand-in EMA on 127.0.0.2 and fake ECUs, over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from stand_ins import (
    ACK,
    CAPTURE,
    ECU_HOST,
    EMA_HOST,
    VECTORS,
    EmaConnection,
    EmaHandler,
    FakeEcu,
    RecordingListener,
    StandInDns,
    StandInEma,
    WatchedRelay,
    acknowledge_frames,
    aps_frame,
    big_frame,
    free_port_pair,
    split_at_random,
)

from ecu_proxy import decoder as decoder_module
from ecu_proxy.models import Direction, FrameKind, UpstreamResult
from ecu_proxy.options import Options
from ecu_proxy.upstream import UpstreamResolver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ECU_ID = "216000064136"
POLL = (VECTORS / "synthetic" / "ECU-R_control-A101_1.txt").read_bytes()
# Published frames carry the frame without its trailing LF (the framer's contract);
# the wire keeps it.
RECORD = CAPTURE.removesuffix(b"\n")


@dataclass
class Harness:
    """A relay on ECU_HOST:port forwarding to a stand-in EMA on EMA_HOST:port."""

    tmp_path: Path
    port: int = field(default_factory=free_port_pair)
    listener: RecordingListener = field(default_factory=RecordingListener)
    relay: WatchedRelay | None = None
    ema: StandInEma | None = None

    async def start(
        self, handler: EmaHandler | None = acknowledge_frames, **changes: Any
    ) -> WatchedRelay:
        """Start the stand-in EMA (unless handler is None) and the relay."""
        if handler is not None:
            self.ema = StandInEma(self.port, handler=handler)
            await self.ema.start()
        settings: dict[str, Any] = {
            "listen": ECU_HOST,
            "ports": (self.port,),
            "ema_host": EMA_HOST,
            "data_dir": self.tmp_path,
            "connect_timeout": 5.0,
            "idle_timeout": 30.0,
        }
        settings.update(changes)
        options = Options(**settings).validate()
        upstream = UpstreamResolver(EMA_HOST, (), self.tmp_path, allow_local=True)
        self.relay = WatchedRelay(
            options, self.listener, upstream=upstream, cloudless=None
        )
        await self.relay.start()
        return self.relay

    async def start_ema(self, handler: EmaHandler = acknowledge_frames) -> StandInEma:
        """Start (or replace) the stand-in EMA."""
        self.ema = StandInEma(self.port, handler=handler)
        await self.ema.start()
        return self.ema

    async def ecu(self) -> FakeEcu:
        """Connect a fake ECU to the relay."""
        assert self.relay is not None
        return await FakeEcu.connect(self.relay.bound_ports[self.port])

    async def idle(self) -> None:
        """Wait until the relay has no open connection."""
        assert self.relay is not None
        relay = self.relay
        await relay.wait_until(lambda: relay.counters.active_connections == 0, 10)

    async def ema_finished(self) -> EmaConnection:
        """Return the next EMA-side connection once its handler has finished."""
        assert self.ema is not None
        conn = await self.ema.next_connection()
        await asyncio.wait_for(conn.closed.wait(), 30)
        return conn

    async def close(self) -> None:
        """Stop everything."""
        if self.relay is not None:
            await self.relay.stop()
        if self.ema is not None:
            await self.ema.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    await h.close()


async def test_relays_a_record_and_its_reply_byte_for_byte(harness: Harness) -> None:
    relay = await harness.start()
    ecu = await harness.ecu()
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await ecu.send(CAPTURE)
    assert await ecu.read_exactly(len(ACK)) == ACK
    round_trip_ms = (loop.time() - sent) * 1000
    await ecu.close()
    await harness.idle()

    assert harness.ema is not None
    conn = await harness.ema.next_connection()
    assert bytes(conn.received) == CAPTURE
    events = await harness.listener.wait_frames(2)
    assert [(e.direction, e.frame.kind) for e in events] == [
        (Direction.ECU_TO_EMA, FrameKind.DATA),
        (Direction.EMA_TO_ECU, FrameKind.EMA_REPLY),
    ]
    assert events[0].raw == RECORD
    assert events[0].frame.ecu_id == ECU_ID
    assert events[0].port == harness.port
    assert events[0].peer == ECU_HOST
    assert events[1].raw == ACK
    reports = await harness.listener.wait_reports(1)
    assert reports[0].result is UpstreamResult.OK
    assert reports[0].ecu_id == ECU_ID
    assert reports[0].rtt_ms is not None
    assert 0 < reports[0].rtt_ms <= round_trip_ms  # EMA's part of our round trip
    counters = relay.counters
    assert counters.bytes_from_ecu == len(CAPTURE)
    assert counters.bytes_from_ema == len(ACK)
    assert counters.connections == 1
    assert counters.frames_decoded == 2
    assert counters.listeners == {harness.port: "listening"}


@pytest.mark.parametrize("size", [20, 303, 1_000, 70_001, 2 * 1024 * 1024])
async def test_byte_exact_both_ways_with_random_splits(
    harness: Harness, size: int
) -> None:
    rng = random.Random(size)
    request = big_frame(size, rng)
    reply = big_frame(max(20, size // 2), rng)
    reply_pieces = split_at_random(reply, rng, rng.randint(1, 40))
    got: list[bytes] = []

    async def echo_big(conn: EmaConnection) -> None:
        got.append(await conn.read_exactly(len(request)))
        for piece in reply_pieces:
            await conn.send(piece)
        await conn.read_to_eof()

    await harness.start(echo_big)
    ecu = await harness.ecu()
    await ecu.send(*split_at_random(request, rng, rng.randint(1, 40)))
    received = await ecu.read_exactly(len(reply))
    await ecu.close()
    await harness.idle()
    assert got == [request]
    assert received == reply


async def test_several_frames_on_one_connection(harness: Harness) -> None:
    await harness.start()
    ecu = await harness.ecu()
    for _ in range(3):
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK
    # Two records in one write: both forwarded, both answered.
    await ecu.send(CAPTURE + CAPTURE)
    assert await ecu.read_exactly(2 * len(ACK)) == ACK + ACK
    await ecu.close()
    await harness.idle()

    assert harness.ema is not None
    conn = await harness.ema.next_connection()
    assert bytes(conn.received) == CAPTURE * 5
    assert harness.ema.accepted == 1
    uploads = [
        e for e in harness.listener.frames if e.direction is Direction.ECU_TO_EMA
    ]
    assert [e.raw for e in uploads] == [RECORD] * 5
    # One round trip is timed per wait for EMA: the two records written together
    # share one wait, so five records give four reports.
    reports = harness.listener.reports
    assert [r.result for r in reports] == [UpstreamResult.OK] * 4


async def test_control_request_command_result_on_one_socket(
    harness: Harness,
) -> None:
    command = f"APS1300051A101AAA0{ECU_ID}A10220240206112214END".encode()
    result = f"APS1300052A100AAA0{ECU_ID}A102202402061122141END\n".encode()
    seen: list[bytes] = []

    async def control(conn: EmaConnection) -> None:
        seen.append(await conn.read_frame())
        await conn.send(command)
        seen.append(await conn.read_frame())
        seen.append(await conn.read_to_eof())

    await harness.start(control)
    ecu = await harness.ecu()
    await ecu.send(POLL)
    assert await ecu.read_exactly(len(command)) == command
    await ecu.send(result)
    await ecu.close()
    await harness.idle()
    await harness.ema_finished()

    assert seen == [POLL, result, b""]
    events = harness.listener.frames
    assert [(e.direction, e.raw) for e in events] == [
        (Direction.ECU_TO_EMA, POLL.removesuffix(b"\n")),
        (Direction.EMA_TO_ECU, command),
        (Direction.ECU_TO_EMA, result.removesuffix(b"\n")),
    ]
    assert len({e.connection_id for e in events}) == 1
    # One timed upload (the poll); the result needs no answer and is not a timeout.
    assert [r.result for r in harness.listener.reports] == [UpstreamResult.OK]


async def test_ema_refusing_keeps_data_local_and_sends_no_reply(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ecu_proxy.relay")
    await harness.start(handler=None)  # nothing listens on EMA_HOST:port
    for attempt in range(3):
        ecu = await harness.ecu()
        await ecu.send(CAPTURE)
        assert await ecu.read_to_eof() == b"", f"attempt {attempt} got a reply"
        await ecu.close()
    await harness.idle()

    uploads = [e for e in harness.listener.frames if e.frame.kind is FrameKind.DATA]
    assert [e.raw for e in uploads] == [RECORD] * 3
    assert [r.result for r in harness.listener.reports] == [
        UpstreamResult.UNREACHABLE
    ] * 3
    assert all(r.ecu_id == ECU_ID for r in harness.listener.reports)
    outage = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "unreachable" in r.getMessage()
    ]
    assert len(outage) == 1

    # EMA comes back: relaying resumes and the recovery is logged once.
    await harness.start_ema()
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    assert await ecu.read_exactly(len(ACK)) == ACK
    await ecu.close()
    await harness.idle()
    recovered = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(recovered) == 1
    assert recovered[0].levelno == logging.INFO
    assert harness.listener.reports[-1].result is UpstreamResult.OK


async def test_slow_ema_reports_timeout_then_delivers_the_late_reply(
    harness: Harness,
) -> None:
    release = asyncio.Event()

    async def slow(conn: EmaConnection) -> None:
        await conn.read_frame()
        await release.wait()
        await conn.send(ACK)
        await conn.read_to_eof(within=30)

    await harness.start(slow, connect_timeout=0.2)
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    reports = await harness.listener.wait_reports(1)
    assert reports[0].result is UpstreamResult.TIMEOUT
    release.set()
    assert await ecu.read_exactly(len(ACK)) == ACK
    reports = await harness.listener.wait_reports(2)
    assert reports[1].result is UpstreamResult.OK
    assert reports[1].rtt_ms is not None
    assert reports[1].rtt_ms >= 200
    await ecu.close()
    await harness.idle()


async def test_ema_reset_mid_reply_closes_the_ecu_side(harness: Harness) -> None:
    partial_seen = asyncio.Event()

    async def reset_mid_reply(conn: EmaConnection) -> None:
        await conn.read_frame()
        await conn.send(ACK[:5])
        await partial_seen.wait()
        conn.reset()

    await harness.start(reset_mid_reply)
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    assert await ecu.read_exactly(5) == ACK[:5]
    partial_seen.set()
    assert await ecu.read_to_eof() == b""
    await ecu.close()
    await harness.idle()
    assert harness.relay is not None
    assert harness.relay.counters.bytes_from_ema == 5


async def test_ecu_half_close_is_passed_on_and_reply_still_flows(
    harness: Harness,
) -> None:
    after_eof: list[bytes] = []

    async def reply_after_eof(conn: EmaConnection) -> None:
        await conn.read_frame()
        after_eof.append(await conn.read_to_eof())  # the ECU's half-close arrives
        await conn.send(ACK)
        await conn.close()

    await harness.start(reply_after_eof)
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    ecu.write_eof()
    assert await ecu.read_to_eof() == ACK
    await ecu.close()
    await harness.idle()
    assert after_eof == [b""]
    assert [r.result for r in harness.listener.reports] == [UpstreamResult.OK]


async def test_ema_half_close_keeps_ecu_to_ema_open(harness: Harness) -> None:
    later: list[bytes] = []

    async def half_close(conn: EmaConnection) -> None:
        await conn.read_frame()
        await conn.send(ACK)
        conn.writer.write_eof()
        later.append(await conn.read_to_eof())

    await harness.start(half_close)
    ecu = await harness.ecu()
    await ecu.send(POLL)
    assert await ecu.read_to_eof() == ACK  # reply, then EMA's EOF
    await ecu.send(CAPTURE)  # the other direction still works
    await ecu.close()
    await harness.idle()
    await harness.ema_finished()
    assert later == [CAPTURE]


async def test_ecu_disconnecting_mid_frame(harness: Harness) -> None:
    async def read_all(conn: EmaConnection) -> None:
        await conn.read_to_eof()

    await harness.start(read_all)
    ecu = await harness.ecu()
    await ecu.send(CAPTURE[:100])
    await ecu.close()
    await harness.idle()

    conn = await harness.ema_finished()
    assert bytes(conn.received) == CAPTURE[:100]
    assert conn.eof
    events = harness.listener.frames
    assert [(e.raw, e.frame.kind) for e in events] == [
        (CAPTURE[:100], FrameKind.INVALID)
    ]
    assert harness.listener.reports == []


async def test_idle_connection_is_closed_after_idle_timeout(
    harness: Harness,
) -> None:
    relay = await harness.start(idle_timeout=0.3)
    ecu = await harness.ecu()
    assert await ecu.read_to_eof() == b""  # the relay closed it, nothing was sent
    await ecu.close()
    await harness.idle()
    assert harness.ema is not None
    conn = await harness.ema.next_connection()
    await asyncio.wait_for(conn.closed.wait(), 10)
    assert relay.counters.connections == 1
    assert relay.counters.bytes_from_ecu == 0


async def test_connections_over_the_cap_are_closed_at_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await harness.start(max_connections=2)
    first = await harness.ecu()
    second = await harness.ecu()
    await relay.wait_until(lambda: relay.counters.active_connections == 2, 10)
    third = await harness.ecu()
    assert await third.read_to_eof() == b""
    assert relay.counters.rejected_connections == 1
    assert any("max_connections" in r.getMessage() for r in caplog.records)
    # The accepted ones still work.
    for ecu in (first, second):
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK
        await ecu.close()
    await third.close()
    await harness.idle()
    assert relay.counters.connections == 2


async def test_memory_stays_bounded_when_ema_stops_reading(
    harness: Harness,
) -> None:
    total = 50 * 1024 * 1024
    chunk = bytes(range(256)) * 4096  # 1 MiB
    release = asyncio.Event()
    digest: list[str] = []

    async def stalled(conn: EmaConnection) -> None:
        await release.wait()
        seen = hashlib.sha256()
        remaining = total
        while remaining:
            data = await conn.reader.read(min(remaining, 1 << 20))
            assert data
            seen.update(data)
            remaining -= len(data)
        digest.append(seen.hexdigest())
        await conn.read_to_eof(within=30)

    relay = await harness.start(stalled)
    ecu = await harness.ecu()

    async def push() -> None:
        for _ in range(total // len(chunk)):
            await ecu.send(chunk)

    pushing = asyncio.create_task(push())
    await relay.wait_until(lambda: relay.paused_connections > 0, 30)
    assert not pushing.done()  # the ECU is held back, not buffered by us
    assert relay.buffered_bytes <= 512 * 1024
    release.set()
    await asyncio.wait_for(pushing, 60)
    await ecu.close()
    await harness.idle()
    await harness.ema_finished()
    assert digest == [hashlib.sha256(chunk * (total // len(chunk))).hexdigest()]
    assert relay.peak_write_buffer <= 512 * 1024
    assert relay.counters.bytes_from_ecu == total


async def test_unlisted_ecu_is_relayed_but_not_published(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ecu_proxy.relay")
    await harness.start(allowed_ecu_ids=("999999999999",))
    for _ in range(2):
        ecu = await harness.ecu()
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK
        await ecu.close()
    await harness.idle()
    assert harness.ema is not None
    assert bytes((await harness.ema.next_connection()).received) == CAPTURE
    assert harness.listener.frames == []
    assert harness.listener.reports == []
    notes = [r for r in caplog.records if "allowed_ecu_ids" in r.getMessage()]
    assert len(notes) == 1
    assert ECU_ID in notes[0].getMessage()


async def test_decoder_and_listener_failures_do_not_touch_forwarding(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_decoder(frame: bytes) -> Any:
        raise RuntimeError("decoder bug")

    def broken_listener(event: object) -> None:
        raise RuntimeError("listener bug")

    # decode_frame's own guard is the only one: a bug inside it is an invalid frame.
    monkeypatch.setattr(decoder_module, "_decode", broken_decoder)
    monkeypatch.setattr(harness.listener, "frame_received", broken_listener)
    relay = await harness.start()
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    assert await ecu.read_exactly(len(ACK)) == ACK
    await ecu.close()
    await harness.idle()
    assert relay.counters.frames_invalid == 2


async def test_a_port_that_cannot_be_bound_is_reported_others_listen(
    harness: Harness,
) -> None:
    with socket.socket() as busy:
        busy.bind((ECU_HOST, 0))
        busy.listen()
        busy_port = int(busy.getsockname()[1])
        relay = await harness.start(extra_ports=(busy_port,))
        assert relay.counters.listeners[harness.port] == "listening"
        assert relay.counters.listeners[busy_port].startswith("error")
        assert set(relay.bound_ports) == {harness.port}
        ecu = await harness.ecu()
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK
        await ecu.close()


async def test_stop_closes_open_connections(harness: Harness) -> None:
    relay = await harness.start()
    ecu = await harness.ecu()
    await relay.wait_until(lambda: relay.counters.active_connections == 1, 10)
    await relay.stop()
    assert relay.counters.active_connections == 0
    assert await ecu.read_to_eof() == b""
    assert relay.bound_ports == {}
    await ecu.close()


async def test_resolver_refusal_counts_as_unreachable(
    harness: Harness,
) -> None:
    relay = await harness.start()
    # Swap in a resolver that refuses EMA_HOST as an address of this host.
    relay._upstream = UpstreamResolver(EMA_HOST, (), harness.tmp_path)
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    assert await ecu.read_to_eof() == b""
    await ecu.close()
    await harness.idle()
    assert harness.ema is not None
    assert harness.ema.accepted == 0
    reports = harness.listener.reports
    assert [r.result for r in reports] == [UpstreamResult.UNREACHABLE]
    assert reports[0].detail is not None
    assert "loop" in reports[0].detail
    assert [e.raw for e in harness.listener.frames] == [RECORD]


async def test_unexpected_resolver_error_does_not_leave_the_ecu_hanging(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await harness.start()

    async def broken() -> str:
        raise RuntimeError("resolver bug")

    assert relay._upstream is not None
    monkeypatch.setattr(relay._upstream, "address", broken)
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    assert await ecu.read_to_eof() == b""  # closed, without waiting for idle_timeout
    await ecu.close()
    await harness.idle()
    reports = harness.listener.reports
    assert [r.result for r in reports] == [UpstreamResult.UNREACHABLE]
    assert "resolver bug" in (reports[0].detail or "")
    assert [e.raw for e in harness.listener.frames] == [RECORD]


async def test_ema_reply_digits_are_not_taken_for_an_ecu_id(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # An A123-style answer: flag, count and timestamps where an ECU id would be.
    reply = aps_frame("A123AAA0" + "10120240206112214", version="13")

    async def answer(conn: EmaConnection) -> None:
        await conn.read_frame()
        await conn.send(reply)
        await conn.read_to_eof()

    caplog.set_level(logging.INFO, logger="ecu_proxy.relay")
    await harness.start(handler=answer, allowed_ecu_ids=(ECU_ID,))
    ecu = await harness.ecu()
    await ecu.send(CAPTURE)
    assert await ecu.read_exactly(len(reply)) == reply
    await ecu.close()
    await harness.idle()
    directions = [e.direction for e in harness.listener.frames]
    assert directions == [Direction.ECU_TO_EMA, Direction.EMA_TO_ECU]
    assert "allowed_ecu_ids" not in caplog.text


async def test_slow_dns_is_bounded_by_the_connect_timeout(harness: Harness) -> None:
    dns_server = StandInDns()
    dns_server.mode = "silent"
    await dns_server.start()
    try:
        relay = await harness.start(connect_timeout=0.3)
        relay._upstream = UpstreamResolver(
            "ema.example",
            (ECU_HOST,),
            harness.tmp_path,
            dns_port=dns_server.port,
            dns_timeout=30.0,
        )
        ecu = await harness.ecu()
        await ecu.send(CAPTURE)
        assert await ecu.read_to_eof() == b""
        await ecu.close()
        await harness.idle()
    finally:
        dns_server.stop()
    assert [r.result for r in harness.listener.reports] == [UpstreamResult.UNREACHABLE]
    assert dns_server.queries == ["ema.example"]
