"""Stand-ins for the far ends of the relay, for loopback tests and benchmarks.

* ``StandInEma``: a TCP server playing EMA. Each accepted connection is an
  ``EmaConnection``; by default it answers every complete frame with the 17-byte
  acknowledgement ``ACK``. Pass ``handler`` to script a connection yourself (slow
  replies, resets, half-close, not reading at all, the 8997 command sequence).
* ``FakeEcu``: a TCP client playing the ECU.
* ``RecordingListener``: a ``RelayListener`` that records frames and upstream reports
  and lets a test wait for them.
* ``FakeLedger``: a ``RecordingListener`` that also stores data records and makes them
  durable only when the test says so (``confirm``), or never (``disk_ok = False``).
* ``StandInDns``: a UDP DNS server answering A queries from a table.
* ``free_port_pair``: a port P free on both 127.0.0.1 (relay) and 127.0.0.2 (EMA), so
  the relay can forward to "the same port on the EMA host".

Every wait takes a ``within`` timeout in seconds and raises ``TimeoutError`` when it
passes: tests wait on events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from ecu_proxy.models import Direction, FrameEvent, FrameKind, UpstreamReport
from ecu_proxy.relay import Relay
from ecu_proxy.wire import format_wire_timestamp

if TYPE_CHECKING:
    import random

    from ecu_proxy.session import Session
    from ecu_proxy.sides import Side


ECU_HOST = "127.0.0.1"
EMA_HOST = "127.0.0.2"
VECTORS = Path(__file__).resolve().parent.parent / "fixtures" / "vectors"
CAPTURE = (VECTORS / "ECU-R_YC600-QS1_1.txt").read_bytes()
# The acknowledgement of the captured record: status 1, one timestamp (17 bytes).
ACK = b"10120240206112214"
WAIT = 10.0


def free_port() -> int:
    """Return a loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair(attempts: int = 50) -> int:
    """Return a TCP port that is free on both ECU_HOST and EMA_HOST."""
    for _ in range(attempts):
        with socket.socket() as ema_sock:
            ema_sock.bind((EMA_HOST, 0))
            port = int(ema_sock.getsockname()[1])
            with socket.socket() as ecu_sock:
                try:
                    ecu_sock.bind((ECU_HOST, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free on both loopback addresses")


def split_at_random(data: bytes, rng: random.Random, pieces: int) -> list[bytes]:
    """Cut ``data`` into up to ``pieces`` non-empty parts at random offsets."""
    if pieces <= 1 or len(data) <= 1:
        return [data]
    cuts = sorted(rng.sample(range(1, len(data)), min(pieces - 1, len(data) - 1)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def aps_frame(body: str, version: str = "18") -> bytes:
    """Build an ``APS`` frame around ``body`` with a correct length field and LF."""
    length = 10 + len(body) + 3
    return f"APS{version}{length:05d}{body}END\n".encode("ascii")


def big_frame(size: int, rng: random.Random) -> bytes:
    """Return an APS18 frame of exactly ``size`` bytes, LF included."""
    filler = "".join(rng.choices("0123456789", k=size - 14))
    return aps_frame(filler)


def frame_end(buf: bytes | bytearray) -> int | None:
    """Return where the first frame in ``buf`` ends (LF included), None if incomplete.

    A minimal framer for the stand-ins only: ``APS`` frames by their length field
    (``A`` counts as ``0``), anything else up to an LF or the end of a 1NN reply.
    """
    if len(buf) < 10:
        return None
    if bytes(buf[:3]) == b"APS":
        digits = bytes(buf[5:10]).lstrip(b"A") or b"0"
        length = int(digits) if digits.isdigit() else len(buf)
        if len(buf) < length:
            return None
        if len(buf) > length and buf[length] == 0x0A:
            return length + 1
        return length
    newline = bytes(buf).find(b"\n")
    return None if newline < 0 else newline + 1


class EmaConnection:
    """One connection accepted by the stand-in EMA."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.frames: list[bytes] = []
        self.eof = False
        self.closed = asyncio.Event()
        self._pending = bytearray()

    async def read_frame(self, within: float = WAIT) -> bytes:
        """Return the next complete frame the relay forwarded."""
        async with asyncio.timeout(within):
            while True:
                while self._pending[:1] == b"\n":
                    del self._pending[:1]
                end = frame_end(self._pending)
                if end is not None and (
                    end < len(self._pending) or self._pending[end - 1 : end] == b"\n"
                ):
                    frame = bytes(self._pending[:end])
                    del self._pending[:end]
                    self.frames.append(frame)
                    return frame
                chunk = await self.reader.read(65536)
                if not chunk:
                    self.eof = True
                    raise EOFError("relay closed before a full frame arrived")
                self.received += chunk
                self._pending += chunk

    async def read_exactly(self, count: int, within: float = WAIT) -> bytes:
        """Read ``count`` raw bytes (not framed)."""
        async with asyncio.timeout(within):
            data = bytes(self._pending[:count])
            del self._pending[:count]
            if len(data) < count:
                rest = await self.reader.readexactly(count - len(data))
                self.received += rest
                data += rest
            return data

    async def read_to_eof(self, within: float = WAIT) -> bytes:
        """Read everything until the relay half-closes or closes."""
        async with asyncio.timeout(within):
            rest = await self.reader.read()
        self.eof = True
        self.received += rest
        data = bytes(self._pending) + rest
        self._pending.clear()
        return data

    async def send(self, data: bytes) -> None:
        """Write bytes towards the ECU."""
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Abort the connection (the relay sees a reset)."""
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


EmaHandler = Callable[[EmaConnection], Awaitable[None]]


async def acknowledge_frames(conn: EmaConnection) -> None:
    """Answer every frame with ACK until the relay closes (the default)."""
    while True:
        try:
            await conn.read_frame(within=3600)
        except EOFError:
            return
        await conn.send(ACK)


class StandInEma:
    """A TCP server standing in for EMA on one port."""

    def __init__(
        self,
        port: int,
        *,
        host: str = EMA_HOST,
        handler: EmaHandler = acknowledge_frames,
    ) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.connections: asyncio.Queue[EmaConnection] = asyncio.Queue()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            self._server.close_clients()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def next_connection(self, within: float = WAIT) -> EmaConnection:
        """Return the next connection the relay opened."""
        async with asyncio.timeout(within):
            return await self.connections.get()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        conn = EmaConnection(reader, writer)
        self.connections.put_nowait(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(conn)
        except (ConnectionError, EOFError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            conn.closed.set()


class FakeEcu:
    """A TCP client standing in for the ECU."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        port: int,
        host: str = ECU_HOST,
        within: float = WAIT,
        source: str | None = None,
    ) -> FakeEcu:
        """Open a connection to the relay (from loopback address ``source``)."""
        local = (source, 0) if source is not None else None
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, *pieces: bytes) -> None:
        """Write the pieces one by one, draining after each."""
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()

    async def read_exactly(self, count: int, within: float = WAIT) -> bytes:
        """Read exactly ``count`` bytes from the relay."""
        async with asyncio.timeout(within):
            return await self.reader.readexactly(count)

    async def read_to_eof(self, within: float = WAIT) -> bytes:
        """Read until the relay closes its side; return what came."""
        async with asyncio.timeout(within):
            return await self.reader.read()

    def write_eof(self) -> None:
        """Half-close: no more bytes from the ECU."""
        self.writer.write_eof()

    def reset(self) -> None:
        """Abort the connection."""
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class WatchedRelay(Relay):
    """A relay that tests can wait on: what they watch wakes ``wait_until``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait until ``predicate()`` holds, re-checked when the relay changes."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _accept(self, side: Side, transport: asyncio.Transport) -> None:
        super()._accept(side, transport)
        self._changed.set()

    def session_closed(self, session: Session) -> None:
        """Forget the session and wake waiters."""
        super().session_closed(session)
        self._changed.set()

    def _skipped(self, peer_host: str, conn_id: int, count: int) -> None:
        """Count the skipped bytes and wake waiters."""
        super()._skipped(peer_host, conn_id, count)
        self._changed.set()

    def track_buffer(self, transport: asyncio.WriteTransport) -> None:
        """Note the buffer size and wake waiters (a write may have paused reading)."""
        super().track_buffer(transport)
        self._changed.set()


@dataclass
class RecordingListener:
    """A RelayListener that keeps everything it is told."""

    frames: list[FrameEvent] = field(default_factory=list)
    reports: list[UpstreamReport] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def frame_received(self, event: FrameEvent) -> None:
        """Record a frame."""
        self.frames.append(event)
        self._wake()

    def upstream_result(self, report: UpstreamReport) -> None:
        """Record an upstream report."""
        self.reports.append(report)
        self._wake()

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = WAIT
    ) -> None:
        """Wait until ``predicate()`` holds (checked after each recorded call)."""
        async with asyncio.timeout(within):
            while not predicate():
                await self._changed.wait()

    async def wait_frames(self, count: int, within: float = WAIT) -> list[FrameEvent]:
        """Wait until at least ``count`` frames were recorded; return them."""
        await self.wait_for(lambda: len(self.frames) >= count, within)
        return self.frames

    async def wait_reports(
        self, count: int, within: float = WAIT
    ) -> list[UpstreamReport]:
        """Wait until at least ``count`` upstream reports were recorded; return them."""
        await self.wait_for(lambda: len(self.reports) >= count, within)
        return self.reports

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


@dataclass
class FakeLedger(RecordingListener):
    """A listener that stores data records; the test decides when they are durable."""

    stored: set[tuple[str, str]] = field(default_factory=set)
    marks: int = 0
    durable: int = 0
    auto_confirm: bool = False
    waits: int = 0
    _saved: asyncio.Event = field(default_factory=asyncio.Event)

    def frame_received(self, event: FrameEvent) -> None:
        """Store a data record from the ECU, then record the frame."""
        frame = event.frame
        if (
            frame.kind is FrameKind.DATA
            and event.direction is Direction.ECU_TO_EMA
            and frame.ecu_id
            and frame.timestamp
        ):
            self.stored.add((frame.ecu_id, format_wire_timestamp(frame.timestamp)))
            self.marks += 1
        super().frame_received(event)

    def is_stored(self, ecu_id: str, timestamp: str) -> bool:
        """Return whether the record was stored."""
        return (ecu_id, timestamp) in self.stored

    def stored_timestamps(self, ecu_id: str, limit: int = 99) -> list[str]:
        """Return stored wire timestamps of the ECU, newest first."""
        stamps = sorted((t for e, t in self.stored if e == ecu_id), reverse=True)
        return stamps[:limit]

    def record_mark(self) -> int:
        """Return the number of records stored so far."""
        return self.marks

    def is_durable(self, mark: int) -> bool:
        """Return whether ``confirm`` covered this mark."""
        return self.durable >= mark

    def save_soon(self) -> None:
        """Confirm at once when auto_confirm is on."""
        if self.auto_confirm:
            self.confirm()

    async def wait_durable(self, mark: int) -> None:
        """Wait until ``confirm`` covers ``mark``."""
        self.waits += 1
        self._wake()
        while not self.is_durable(mark):
            saved = self._saved
            await saved.wait()

    def confirm(self) -> None:
        """Make every stored record durable."""
        self.durable = self.marks
        self._saved.set()
        self._saved = asyncio.Event()


class StandInDns(asyncio.DatagramProtocol):
    """A UDP DNS server answering A queries from ``records`` (name -> IPs).

    ``mode``: ``"answer"`` (default; unknown names get NXDOMAIN), ``"servfail"`` or
    ``"silent"`` (never answers, so the client times out).
    """

    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        self.records = dict(records or {})
        self.mode = "answer"
        self.queries: list[str] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str = ECU_HOST) -> None:
        """Listen on ``host`` at a free UDP port (see ``port``)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, 0)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def stop(self) -> None:
        """Stop listening."""
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Answer one query."""
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        self.queries.append(name)
        if self.mode == "silent" or self._transport is None:
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 60, "IN", "A", self.records[name]
                )
            )
        self._transport.sendto(response.to_wire(), addr)
