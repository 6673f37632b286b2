"""Hostile LAN devices: connection floods, trickles and garbage floods, small numbers.

The relay runs on 127.0.0.1 and the stand-in EMA on 127.0.0.2; hostile clients
connect from other loopback addresses (127.0.0.x), the ECU from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from stand_ins import (
    ACK,
    CAPTURE,
    ECU_HOST,
    EMA_HOST,
    VECTORS,
    EmaConnection,
    FakeEcu,
    FakeLedger,
    StandInEma,
    WatchedRelay,
    acknowledge_frames,
    free_port_pair,
)

from ecu_proxy.admission import Limits
from ecu_proxy.cloudless import CloudlessResponder, encode_ema_reply
from ecu_proxy.fdlimit import raise_open_files_limit
from ecu_proxy.models import Direction, FrameKind
from ecu_proxy.options import Mode, Options
from ecu_proxy.service import Service
from ecu_proxy.upstream import UpstreamResolver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ECU_ID = "216000064136"
QUERY = (VECTORS / "synthetic" / "ECU-R_resend-query_1.txt").read_bytes()


class Setup:
    """A relay with a FakeLedger and explicit admission limits."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port_pair()
        self.ledger = FakeLedger(auto_confirm=True)
        self.ema = StandInEma(self.port, handler=acknowledge_frames)
        self.relay: WatchedRelay | None = None
        self.clients: list[FakeEcu] = []

    async def start(self, **limits: Any) -> WatchedRelay:
        await self.ema.start()
        options = Options(
            listen=ECU_HOST,
            ports=(self.port,),
            ema_host=EMA_HOST,
            data_dir=self.tmp_path,
            connect_timeout=5.0,
            idle_timeout=30.0,
        ).validate()
        upstream = UpstreamResolver(EMA_HOST, (), self.tmp_path, allow_local=True)
        settings: dict[str, Any] = {"idle_timeout": 30.0, **limits}
        self.relay = WatchedRelay(
            options,
            self.ledger,
            upstream=upstream,
            cloudless=None,
            ledger=self.ledger,
            limits=Limits(**settings),
        )
        await self.relay.start()
        return self.relay

    async def connect(self, source: str = ECU_HOST) -> FakeEcu:
        assert self.relay is not None
        client = await FakeEcu.connect(self.relay.bound_ports[self.port], source=source)
        self.clients.append(client)
        return client

    async def accepted(self, count: int) -> None:
        """Wait until the relay has taken ``count`` connections in total."""
        assert self.relay is not None
        relay = self.relay
        await relay.wait_until(lambda: relay.counters.connections >= count, 10)

    async def upload(self, source: str = ECU_HOST) -> None:
        """Upload the captured record and check EMA's reply arrives."""
        ecu = await self.connect(source)
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK
        await ecu.close()

    async def close(self) -> None:
        for client in self.clients:
            client.reset()
        if self.relay is not None:
            await self.relay.stop()
        await self.ema.stop()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    s = Setup(tmp_path)
    yield s
    await s.close()


def sink(total: int) -> tuple[asyncio.Future[bytes], Any]:
    """Return a future of the first ``total`` bytes EMA receives, and the handler."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(conn: EmaConnection) -> None:
        got.set_result(await conn.read_exactly(total, within=60))

    return got, handler


async def refused(client: FakeEcu) -> bool:
    """Return True when the relay closes the connection without a byte."""
    try:
        return await client.read_to_eof() == b""
    except ConnectionResetError:
        return True


async def test_one_address_cannot_take_more_than_its_share(setup: Setup) -> None:
    relay = await setup.start(max_connections=10, per_address=3, reserved=0)
    hostile = [await setup.connect("127.0.0.5") for _ in range(3)]
    await setup.accepted(3)
    extra = await setup.connect("127.0.0.5")
    assert await refused(extra)
    await setup.upload(ECU_HOST)  # another address still gets in
    assert relay.counters.rejected_connections == 1
    assert all(not c.reader.at_eof() for c in hostile)


async def test_slots_are_kept_for_an_address_that_sent_a_record(
    setup: Setup,
) -> None:
    relay = await setup.start(max_connections=4, per_address=4, reserved=2, grace=60)
    await setup.upload(ECU_HOST)  # the ECU is now known
    assert relay.admission.is_trusted(ECU_HOST)
    for n in range(2):
        await setup.connect(f"127.0.0.{10 + n}")
    await setup.accepted(3)
    newcomer = await setup.connect("127.0.0.20")
    assert await refused(newcomer)  # the shared slots are full
    await setup.upload(ECU_HOST)
    await setup.upload(ECU_HOST)
    assert relay.counters.rejected_connections == 1


async def test_stalled_connection_gives_its_slot_to_a_newcomer(setup: Setup) -> None:
    relay = await setup.start(max_connections=2, per_address=2, reserved=0, grace=0)
    first = await setup.connect("127.0.0.30")
    await setup.connect("127.0.0.31")
    await setup.accepted(2)
    # A new ECU (not yet known) takes the oldest slot that never completed a frame.
    await setup.upload(ECU_HOST)
    assert await refused(first)
    assert relay.admission.evicted == 1


async def test_trickling_bytes_do_not_keep_a_connection_open(setup: Setup) -> None:
    relay = await setup.start(frame_timeout=0.3, idle_timeout=30.0)
    trickler = await setup.connect("127.0.0.40")
    partial = CAPTURE[:200]

    async def trickle() -> None:
        # One byte at a time, far more often than the frame timeout.
        with contextlib.suppress(ConnectionError):
            for byte in partial:
                trickler.writer.write(bytes([byte]))
                await trickler.writer.drain()
                await asyncio.sleep(0.02)

    task = asyncio.create_task(trickle())
    try:
        # Without the frame timeout this would stay open for idle_timeout (30 s).
        assert await refused(trickler)
    finally:
        task.cancel()
    await relay.wait_until(lambda: relay.counters.active_connections == 0, 10)


async def test_aps_flood_is_coalesced_and_relayed_unchanged(setup: Setup) -> None:
    flood = b"APS" * 700_000  # 2.1 MB
    got, handler = sink(len(flood) + len(CAPTURE))
    setup.ema = StandInEma(setup.port, handler=handler)
    relay = await setup.start()
    ecu = await setup.connect("127.0.0.50")
    await ecu.send(flood, CAPTURE)
    assert await asyncio.wait_for(got, 60) == flood + CAPTURE
    await setup.ledger.wait_for(
        lambda: any(e.frame.kind is FrameKind.DATA for e in setup.ledger.frames)
    )
    from_ecu = [e for e in setup.ledger.frames if e.direction is Direction.ECU_TO_EMA]
    # 2.1 MB of garbage in a few chunks of at most 200,000 bytes, not 700,000.
    assert len(from_ecu) <= 12
    assert b"".join(e.raw for e in from_ecu[:-1]) == flood
    assert relay.counters.frames_decoded == 1


@pytest.mark.parametrize("unit", [b"100", b"{\n"])
async def test_tiny_frame_flood_costs_a_bounded_number_of_decodes(
    setup: Setup, unit: bytes
) -> None:
    flood = unit * 200_000
    got, handler = sink(len(flood))
    setup.ema = StandInEma(setup.port, handler=handler)
    relay = await setup.start(frame_burst=50, frame_rate=1, shared_burst=50)
    ecu = await setup.connect("127.0.0.60")
    await ecu.send(flood)
    assert await asyncio.wait_for(got, 60) == flood  # every byte relayed
    await relay.wait_until(lambda: relay.frames_skipped_bytes > 0, 10)
    # 200,000 tiny frames arrived; the budget (plus a few big garbage chunks after
    # it refilled) is all that was decoded.
    assert relay.counters.frames_relayed < 200


async def test_rejections_are_logged_once_with_a_count(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await setup.start(max_connections=10, per_address=1, reserved=0)
    await setup.connect("127.0.0.70")
    await setup.accepted(1)
    caplog.set_level(logging.WARNING, logger="ecu_proxy.relay")
    extras = [await setup.connect("127.0.0.70") for _ in range(30)]
    for extra in extras:
        assert await refused(extra)
    assert relay.counters.rejected_connections == 30
    lines = [r for r in caplog.records if "Rejecting" in r.getMessage()]
    assert len(lines) == 1


async def test_ema_reply_waits_until_the_record_is_durable(setup: Setup) -> None:
    relay = await setup.start()
    setup.ledger.auto_confirm = False
    ecu = await setup.connect()
    await ecu.send(CAPTURE)
    await setup.ledger.wait_for(lambda: setup.ledger.waits > 0)
    # EMA has answered; the relay holds the answer while the disk has not confirmed.
    assert any(s.ack_gate.holding for s in relay._sessions)
    setup.ledger.confirm()
    assert await ecu.read_exactly(len(ACK)) == ACK
    assert relay.late_acks == 0


async def test_ema_reply_goes_on_after_the_bound_when_the_disk_fails(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await setup.start()
    relay.hold_bound = 0.2
    setup.ledger.auto_confirm = False  # the disk never confirms
    for _ in range(3):
        ecu = await setup.connect()
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK  # the cloud path holds
        await ecu.close()
    assert relay.late_acks == 3
    late = [r for r in caplog.records if "did not confirm" in r.getMessage()]
    assert len(late) == 1


async def test_held_reply_keeps_order_with_ema_closing(setup: Setup) -> None:
    async def reply_and_close(conn: EmaConnection) -> None:
        await conn.read_frame()
        conn.writer.write(ACK)
        await conn.writer.drain()
        conn.writer.close()

    setup.ema = StandInEma(setup.port, handler=reply_and_close)
    await setup.start()
    setup.ledger.auto_confirm = False
    ecu = await setup.connect()
    await ecu.send(CAPTURE)
    await setup.ledger.wait_for(lambda: setup.ledger.waits > 0)
    setup.ledger.confirm()
    # The reply first, then the close EMA sent after it.
    assert await ecu.read_to_eof() == ACK


def refuse_writes(path: Path, data: bytes, mode: int = 0o600) -> None:
    raise OSError(errno.EROFS, "Read-only file system")


async def test_read_only_data_folder_keeps_relaying_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("ecu_proxy.storage.write_atomic", refuse_writes)
    monkeypatch.setattr("ecu_proxy.identity.write_atomic", refuse_writes)
    port = free_port_pair()
    ema = StandInEma(port)
    await ema.start()
    options = Options(
        listen=ECU_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path,
        connect_timeout=5.0,
    )
    service = Service(options, allow_local_upstream=True)
    await service.start()
    try:
        service.relay.hold_bound = 0.2
        ecu = await FakeEcu.connect(service.relay_ports[port])
        await ecu.send(CAPTURE)
        assert await ecu.read_exactly(len(ACK)) == ACK  # relaying goes on
        await ecu.close()
        assert ECU_ID in service.hub.snapshot()["ecus"]  # and live data
        url = f"http://127.0.0.1:{service.api_port}/api/health"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            health = await response.json()
        assert health["status"] == "degraded"
        assert "Read-only file system" in health["disk_problem"]
    finally:
        await service.stop()
        await ema.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("Stopped; state saved" in m for m in messages)
    assert any("could NOT be saved" in m for m in messages)
    problems = [m for m in messages if "cannot save state" in m]
    assert len(problems) == 1  # said once, although every save failed


def test_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        now = raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (now, hard)
        assert hard in (now, resource.RLIM_INFINITY)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("disk_ok", [True, False])
async def test_cloudless_says_stored_only_once_the_disk_holds_it(
    tmp_path: Path, disk_ok: bool
) -> None:
    port = free_port_pair()
    ledger = FakeLedger(auto_confirm=disk_ok)
    options = Options(
        listen=ECU_HOST, ports=(port,), mode=Mode.CLOUDLESS, data_dir=tmp_path
    ).validate()
    relay = WatchedRelay(
        options,
        ledger,
        upstream=None,
        cloudless=CloudlessResponder(ledger),
        ledger=ledger,
    )
    relay.hold_bound = 0.2
    await relay.start()
    try:
        ecu = await FakeEcu.connect(relay.bound_ports[port])
        await ecu.send(CAPTURE)
        if disk_ok:
            assert await ecu.read_exactly(len(ACK)) == ACK
        else:
            # Not confirmed: "accepted, nothing stored", so the ECU keeps the record.
            assert await ecu.read_exactly(3) == b"100"
        await ecu.send(QUERY)
        listed = encode_ema_reply(["20240206112214"] if disk_ok else [])
        assert await ecu.read_exactly(len(listed)) == listed
        await ecu.close()
    finally:
        await relay.stop()
    assert relay.late_acks == (0 if disk_ok else 2)
