"""Relay ECU connections to EMA byte for byte and publish a decoded copy.

Every ECU connection gets exactly one upstream connection to the same port on EMA.
Both directions are piped concurrently with asyncio protocols: bytes are written on
to the other side first, then fed to a framer (one per direction) whose frames are
decoded and handed to the listener. Decoding and the listener can never delay or
change what is forwarded; their errors are logged and counted.

Flow control keeps memory bounded: when one side's write buffer passes its high-water
mark, reading from the other side pauses until it drains.

Which connections are taken, how long one may go without completing a frame and how
many frames of it are decoded is decided in ``admission``; acknowledgements wait for
the record to be on disk in ``durability``.

When EMA cannot be reached the ECU's frames are still read and published, then the
connection is closed without a reply so the ECU keeps its records and re-sends them.
In cloudless mode nothing goes upstream; a responder answers the ECU.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, cast

from ecu_proxy.admission import Admission, Limits
from ecu_proxy.cloudless import encode_ema_reply
from ecu_proxy.decoder import decode_frame
from ecu_proxy.durability import HOLD_BOUND, AckGate
from ecu_proxy.framing import Framer
from ecu_proxy.lograte import RateLimitedLog
from ecu_proxy.models import (
    DecodedFrame,
    Direction,
    FrameEvent,
    FrameKind,
    RelayCounters,
    RelayListener,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.upstream import UpstreamError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecu_proxy.cloudless import CloudlessResponder
    from ecu_proxy.durability import DurableLedger
    from ecu_proxy.guard import Guard
    from ecu_proxy.options import Options
    from ecu_proxy.upstream import UpstreamResolver

_LOGGER = logging.getLogger(__name__)

# A side's write buffer may grow to this before reading from the other side pauses.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024
# Frames whose upload we time (the ECU waits for EMA's answer to these).
UPLOAD_KINDS = frozenset({FrameKind.DATA, FrameKind.RECONCILE_QUERY, FrameKind.CONTROL})

# Distinct ids outside allowed_ecu_ids that get a log line; beyond this, silence.
MAX_IGNORED_IDS = 64

_FORWARD = "forward"
_UNREACHABLE = "unreachable"
_CLOUDLESS = "cloudless"
# Reasons for not reading from a side.
_CONNECTING = "connecting"
_BACKPRESSURE = "backpressure"


class Relay:
    """Listen on the relay ports and pipe each ECU connection to EMA."""

    def __init__(
        self,
        options: Options,
        listener: RelayListener,
        *,
        upstream: UpstreamResolver | None,
        cloudless: CloudlessResponder | None,
        guard: Guard | None = None,
        ledger: DurableLedger | None = None,
        limits: Limits | None = None,
    ) -> None:
        if cloudless is None and upstream is None:
            raise ValueError("the relay needs an upstream resolver or a responder")
        self.counters = RelayCounters()
        self.peak_write_buffer = 0
        self.decode_errors = 0
        self._options = options
        self._listener = listener
        self._upstream = upstream
        self._cloudless = cloudless
        self._guard = guard
        self._allowed = frozenset(options.allowed_ecu_ids)
        self._ledger = ledger
        # Warnings a LAN device can trigger at will are folded, with counts.
        self.log = RateLimitedLog(_LOGGER)
        self.admission = Admission(limits or Limits.from_options(options))
        self.frames_skipped_bytes = 0
        self.late_acks = 0
        # Seconds an acknowledgement may wait for the disk (see durability).
        self.hold_bound = HOLD_BOUND
        self._servers: list[asyncio.Server] = []
        self._bound: dict[int, int] = {}
        self._sessions: set[_Session] = set()
        self._ids = itertools.count(1)
        self._ignored_ids: set[str] = set()
        self._outage_since: float | None = None
        self._changed = asyncio.Event()
        self._stopping = False

    @property
    def bound_ports(self) -> dict[int, int]:
        """Return configured port -> actually bound port, for listening ports."""
        return dict(self._bound)

    @property
    def buffered_bytes(self) -> int:
        """Return the bytes now waiting in the relay's write buffers."""
        return sum(s.buffered_bytes() for s in self._sessions)

    @property
    def paused_connections(self) -> int:
        """Return how many connections have reading paused for backpressure."""
        return sum(1 for s in self._sessions if s.paused_for_backpressure())

    async def start(self) -> None:
        """Bind every relay port; a port that fails is recorded, the rest start."""
        loop = asyncio.get_running_loop()
        for port in self._options.all_ports:
            try:
                server = await loop.create_server(
                    partial(_EcuSide, self),
                    host=self._options.listen,
                    port=port,
                    reuse_address=True,
                    backlog=max(128, self._options.max_connections),
                )
            except OSError as err:
                text = f"error: {err.strerror or err}"
                self.counters.listeners[port] = text
                _LOGGER.error(
                    "Cannot listen on %s port %d: %s",
                    self._options.listen,
                    port,
                    err.strerror or err,
                )
                continue
            self._servers.append(server)
            self._bound[port] = server.sockets[0].getsockname()[1]
            self.counters.listeners[port] = "listening"
            _LOGGER.info(
                "Relay listening on %s port %d", self._options.listen, self._bound[port]
            )

    async def stop(self) -> None:
        """Stop listening, close open connections and wait for their handlers."""
        self._stopping = True
        for server in self._servers:
            server.close()
        sessions = list(self._sessions)
        for session in sessions:
            session.abort("relay stopping")
        if sessions:
            await asyncio.gather(*(s.done for s in sessions), return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._bound.clear()
        for port in list(self.counters.listeners):
            self.counters.listeners[port] = "stopped"

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait until ``predicate()`` holds, re-checked when connections change.

        Raises TimeoutError when it does not hold within ``within`` seconds.
        """
        async with asyncio.timeout(within):
            while not predicate():
                await self._changed.wait()

    # -- internal, called by sessions ---------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _accept(self, side: _EcuSide, transport: asyncio.Transport) -> None:
        local = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        port = int(local[1]) if local else 0
        peer_host = str(peer[0]) if peer else "?"
        peer_port = int(peer[1]) if peer else 0
        if self._stopping:  # accepted in the last loop turn before stop()
            transport.abort()
            return
        mode = _CLOUDLESS if self._cloudless is not None else _FORWARD
        session = _Session(
            self, next(self._ids), transport, port, peer_host, peer_port, mode
        )
        refusal = self.admission.admit(session)
        if refusal is not None:
            self.counters.rejected_connections += 1
            self.log.limited_warning(
                "rejected",
                "Rejecting connection from %s:%d on port %d: %s",
                peer_host,
                peer_port,
                port,
                refusal,
            )
            transport.abort()
            return
        side.session = session
        self._sessions.add(session)
        self.counters.connections += 1
        self.counters.active_connections += 1
        session.begin()
        self._notify()

    def _closed(self, session: _Session) -> None:
        self.admission.release(session)
        self._sessions.discard(session)
        self.counters.active_connections -= 1
        self._notify()

    def _decode(self, raw: bytes, direction: Direction) -> DecodedFrame:
        self.counters.frames_relayed += 1
        try:
            frame = decode_frame(raw, direction)
        except Exception as err:  # the decoder must never stop the relay
            self.decode_errors += 1
            self.counters.frames_invalid += 1
            self.log.limited_warning(
                "decoder", "Decoder failed on a %d-byte frame: %r", len(raw), err
            )
            return DecodedFrame(
                kind=FrameKind.INVALID,
                version=None,
                length=len(raw),
                error=f"decoder error: {err!r}",
            )
        if frame.kind is FrameKind.INVALID:
            self.counters.frames_invalid += 1
        else:
            self.counters.frames_decoded += 1
        return frame

    def _allowed_id(self, ecu_id: str | None) -> bool:
        if not self._allowed or ecu_id in self._allowed:
            return True
        key = ecu_id or "(unknown)"
        if key not in self._ignored_ids and len(self._ignored_ids) < MAX_IGNORED_IDS:
            self._ignored_ids.add(key)
            _LOGGER.info(
                "ECU %s is not in allowed_ecu_ids: relaying its traffic unchanged "
                "but not publishing it",
                key,
            )
        return False

    def _publish(
        self, session: _Session, raw: bytes, frame: DecodedFrame, direction: Direction
    ) -> None:
        # EMA's replies carry other digits where an ECU id would be: they belong
        # to the connection's ECU.
        ecu_id = (
            session.ecu_id
            if direction is Direction.EMA_TO_ECU
            else frame.ecu_id or session.ecu_id
        )
        if not self._allowed_id(ecu_id):
            return
        event = FrameEvent(
            connection_id=session.conn_id,
            port=session.port,
            peer=session.peer_host,
            direction=direction,
            raw=raw,
            frame=frame,
            received_at=datetime.now(UTC),
        )
        try:
            self._listener.frame_received(event)
        except Exception:
            _LOGGER.exception("Listener failed on a frame; relaying continues")

    def _report(
        self,
        session: _Session,
        result: UpstreamResult,
        rtt_ms: float | None = None,
        detail: str | None = None,
    ) -> None:
        if not self._allowed_id(session.ecu_id):
            return
        report = UpstreamReport(
            ecu_id=session.ecu_id,
            port=session.port,
            result=result,
            at=datetime.now(UTC),
            rtt_ms=rtt_ms,
            detail=detail,
        )
        try:
            self._listener.upstream_result(report)
        except Exception:
            _LOGGER.exception("Listener failed on an upstream report")

    def _ema_down(self, reason: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            _LOGGER.warning(
                "EMA is unreachable (%s): uploads are decoded locally and closed "
                "without a reply, so the ECU keeps them and sends them again later",
                reason,
            )
        else:
            _LOGGER.debug("EMA still unreachable: %s", reason)

    def _ema_up(self) -> None:
        if self._outage_since is not None:
            _LOGGER.info(
                "EMA is reachable again after %.0f s",
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    def _track_buffer(self, transport: asyncio.WriteTransport) -> None:
        size = transport.get_write_buffer_size()
        self.peak_write_buffer = max(self.peak_write_buffer, size)

    async def _address(self) -> str:
        assert self._upstream is not None
        return await self._upstream.address()

    def _skipped(self, session: _Session, count: int) -> None:
        self.frames_skipped_bytes += count
        self.log.limited_warning(
            f"budget {session.peer_host}",
            "%s sends more frames than the relay decodes: %d bytes of connection "
            "#%d relayed unchanged without decoding",
            session.peer_host,
            count,
            session.conn_id,
        )

    def _late_ack(self) -> None:
        self.late_acks += 1

    def _reply_for(self, frame: DecodedFrame) -> bytes | None:
        assert self._cloudless is not None
        try:
            return self._cloudless.reply_for(frame)
        except Exception:
            _LOGGER.exception("Cloudless responder failed; not answering this frame")
            return None


class _Side(asyncio.Protocol):
    """One end of a relayed connection; hands every event to its session."""

    session: _Session | None = None
    transport: asyncio.Transport | None = None

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.write_paused(self, paused=True)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.write_paused(self, paused=False)


class _EcuSide(_Side):
    """The ECU's connection to us."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (other event loops' do not subclass asyncio.Transport).
        transport = cast("asyncio.Transport", transport)
        self.transport = transport
        self._relay._accept(self, transport)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.from_ecu(data)

    def eof_received(self) -> bool | None:
        if self.session is not None:
            return self.session.ecu_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.ecu_lost(exc)


class _EmaSide(_Side):
    """Our connection to EMA for one ECU connection."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (other event loops' do not subclass asyncio.Transport).
        transport = cast("asyncio.Transport", transport)
        self.transport = transport
        if self.session is not None:
            self.session.ema_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.from_ema(data)

    def eof_received(self) -> bool | None:
        if self.session is not None:
            return self.session.ema_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.ema_lost(exc)


class _Session:
    """One ECU connection and, in forward mode, its EMA connection."""

    def __init__(
        self,
        relay: Relay,
        conn_id: int,
        ecu: asyncio.Transport,
        port: int,
        peer_host: str,
        peer_port: int,
        mode: str,
    ) -> None:
        self.relay = relay
        self.conn_id = conn_id
        self.ecu = ecu
        self.port = port
        self.peer_host = peer_host
        self.peer_port = peer_port
        self.mode = mode
        self.ecu_id: str | None = None
        self.ema: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.started = self.loop.time()
        # Progress is a frame completed from the ECU (a garbage run counts once it
        # is cut), bytes past the frame budget, or bytes from EMA; a trickle that
        # completes nothing keeps no slot.
        self.last_progress = self.started
        self.progressed = False
        self.ack_gate = AckGate(
            relay._ledger, self._to_ecu, relay._late_ack, relay.hold_bound, relay.log
        )
        self.bytes_from_ecu = 0
        self.bytes_from_ema = 0
        self.upstream_note = "not connected"
        self._framers: dict[Direction, Framer | None] = {
            Direction.ECU_TO_EMA: Framer(),
            Direction.EMA_TO_ECU: Framer(),
        }
        self._ecu_frames = 0
        self._ecu_eof = False
        self._ema_eof = False
        self._ecu_closed = False
        self._ema_closed = True  # until a connection is made
        self._ecu_pause: set[str] = set()
        self._ema_pause: set[str] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._pending_since: float | None = None
        self._pending_timer: asyncio.TimerHandle | None = None
        self._pending_timed_out = False
        self._close_reason: str | None = None
        self._finished = False
        # Holds EMA's command frames until whole when the command guard is on.
        self.command_gate = (
            relay._guard.gate(conn_id) if relay._guard is not None else None
        )

    # -- lifecycle ----------------------------------------------------------

    def begin(self) -> None:
        """Start the session: arm the idle timer and connect upstream."""
        self.ecu.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self._idle_handle = self.loop.call_at(
            self.started + self.relay.admission.limits.frame_timeout, self._idle_check
        )
        _LOGGER.debug(
            "Connection #%d from %s:%d on port %d (%s)",
            self.conn_id,
            self.peer_host,
            self.peer_port,
            self.port,
            self.mode,
        )
        if self.mode == _CLOUDLESS:
            self.upstream_note = "cloudless"
            return
        self._set_reading(self.ecu, self._ecu_pause, _CONNECTING, paused=True)
        self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            address = await self._open_upstream()
        finally:
            self._connect_task = None
            self._maybe_done()
        if address is None or self._ecu_closed or self.ema is None:
            return
        self.relay._ema_up()
        self._set_reading(self.ecu, self._ecu_pause, _CONNECTING, paused=False)

    async def _open_upstream(self) -> str | None:
        """Connect to EMA; on failure switch to unreachable mode and return None.

        Finding the address and connecting share one connect_timeout window, so
        the ECU (which waits about 10 s for an answer) is never kept longer.
        """
        timeout = self.relay._options.connect_timeout
        started = time.monotonic()
        address: str | None = None
        try:
            async with asyncio.timeout(timeout):
                address = await self.relay._address()
                await self.loop.create_connection(
                    partial(_EmaSide, self), address, self.port
                )
        except UpstreamError as err:
            self._unreachable(str(err))
            return None
        except TimeoutError:
            target = f"{address}:{self.port}" if address else "EMA's address"
            self._unreachable(f"no connection to {target} within {timeout:g} s")
            return None
        except OSError as err:
            self._unreachable(
                f"cannot connect to {address}:{self.port}: {err.strerror or err}"
            )
            return None
        except Exception as err:  # never leave the ECU paused on a surprise
            _LOGGER.exception("Unexpected error while connecting to EMA")
            self._unreachable(f"unexpected error: {err!r}")
            return None
        self.upstream_note = (
            f"connected to {address}:{self.port} in "
            f"{(time.monotonic() - started) * 1000:.0f} ms"
        )
        return address

    def ema_made(self, transport: asyncio.Transport) -> None:
        """Take the new EMA connection, or drop it when the ECU already left."""
        if self._ecu_closed or self._finished:
            transport.abort()
            return
        self.ema = transport
        self._ema_closed = False
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def _unreachable(self, reason: str) -> None:
        self.mode = _UNREACHABLE
        self.upstream_note = f"unreachable: {reason}"
        self.relay._ema_down(reason)
        if not self._ecu_closed:
            self._set_reading(self.ecu, self._ecu_pause, _CONNECTING, paused=False)

    def abort(self, reason: str) -> None:
        """Drop both connections now (idle timeout, shutdown)."""
        self._close_reason = self._close_reason or reason
        if self._connect_task is not None:
            self._connect_task.cancel()
        self.ack_gate.close()
        self.ecu.abort()
        if self.ema is not None:
            self.ema.abort()

    def _close_both(self) -> None:
        """Close both sides gracefully (buffered bytes are still delivered)."""
        self.ecu.close()
        if self.ema is not None:
            self.ema.close()

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self._finished:
            return
        waiting = not self.progressed or self._buffered(Direction.ECU_TO_EMA) > 0
        now = self.loop.time()
        due, reason = self.relay.admission.deadline(self.last_progress, now, waiting)
        if reason is not None:
            _LOGGER.debug("Connection #%d closed: %s", self.conn_id, reason)
            self.abort(reason)
            return
        self._idle_handle = self.loop.call_at(due, self._idle_check)

    def _maybe_done(self) -> None:
        if self._finished or not self._ecu_closed or not self._ema_closed:
            return
        if self._connect_task is not None:
            return
        self._finished = True
        self.ack_gate.close()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self._pending_timer is not None:
            self._pending_timer.cancel()
        self.relay._closed(self)
        _LOGGER.info(
            "ECU %s:%d port %d%s: %d B from ECU, %d B from EMA, upstream %s, %.2f s%s",
            self.peer_host,
            self.peer_port,
            self.port,
            f" ({self.ecu_id})" if self.ecu_id else "",
            self.bytes_from_ecu,
            self.bytes_from_ema,
            self.upstream_note,
            self.loop.time() - self.started,
            f", closed: {self._close_reason}" if self._close_reason else "",
        )
        if not self.done.done():
            self.done.set_result(None)

    # -- flow control -------------------------------------------------------

    def _set_reading(
        self,
        transport: asyncio.Transport,
        reasons: set[str],
        reason: str,
        *,
        paused: bool,
    ) -> None:
        before = bool(reasons)
        if paused:
            reasons.add(reason)
        else:
            reasons.discard(reason)
        after = bool(reasons)
        if before == after or transport.is_closing():
            return
        if after:
            transport.pause_reading()
        else:
            transport.resume_reading()
        if reason == _BACKPRESSURE:
            self.relay._notify()

    def write_paused(self, side: _Side, *, paused: bool) -> None:
        """Stop (or restart) reading from the peer of a side whose buffer is full."""
        if side.transport is self.ecu:
            if self.ema is not None:
                self._set_reading(
                    self.ema, self._ema_pause, _BACKPRESSURE, paused=paused
                )
        else:
            self._set_reading(self.ecu, self._ecu_pause, _BACKPRESSURE, paused=paused)

    def paused_for_backpressure(self) -> bool:
        """Return True while reading from either side waits for a drain."""
        return _BACKPRESSURE in self._ecu_pause or _BACKPRESSURE in self._ema_pause

    def buffered_bytes(self) -> int:
        """Return the bytes waiting in this session's write buffers."""
        total = self.ecu.get_write_buffer_size()
        if self.ema is not None:
            total += self.ema.get_write_buffer_size()
        return total

    # -- ECU -> EMA ---------------------------------------------------------

    def from_ecu(self, data: bytes) -> None:
        """Forward ECU bytes first, then decode the copy."""
        self.bytes_from_ecu += len(data)
        self.relay.counters.bytes_from_ecu += len(data)
        ema = self.ema
        if self.mode == _FORWARD and ema is not None and not ema.is_closing():
            ema.write(data)
            self.relay._track_buffer(ema)
        for raw in self._feed(Direction.ECU_TO_EMA, data):
            self._ecu_frame(raw)
        if (
            self.mode == _UNREACHABLE
            and self._ecu_frames
            and self._buffered(Direction.ECU_TO_EMA) == 0
        ):
            self._close_reason = "EMA unreachable, no reply sent"
            self.ecu.close()

    def _ecu_frame(self, raw: bytes) -> None:
        self._ecu_frames += 1
        self.progressed = True
        self.last_progress = self.loop.time()
        frame = self.relay._decode(raw, Direction.ECU_TO_EMA)
        if frame.ecu_id and self.ecu_id is None:
            self.ecu_id = frame.ecu_id
        self.relay._publish(self, raw, frame, Direction.ECU_TO_EMA)
        # A stored record: its address is an ECU's, and acks now wait for the disk.
        stored = self.ack_gate.expect_record(frame)
        if stored:
            self.relay.admission.trust(self.peer_host)
        if frame.kind not in UPLOAD_KINDS:
            return
        if self.mode == _FORWARD:
            if self._pending_since is None:
                self._pending_since = self.loop.time()
                self._pending_timed_out = False
                self._pending_timer = self.loop.call_later(
                    self.relay._options.connect_timeout, self._reply_timeout
                )
        elif self.mode == _UNREACHABLE:
            self.relay._report(
                self, UpstreamResult.UNREACHABLE, detail=self.upstream_note
            )
        else:
            self.relay._report(self, UpstreamResult.CLOUDLESS)
            reply = self.relay._reply_for(frame)
            if reply is None:
                return
            # A reply that says "stored" (the record's own timestamp, or the list
            # of stored ones) goes out only once the disk holds what it lists;
            # past the bound the ECU is told nothing is stored and keeps its data.
            if frame.kind is FrameKind.RECONCILE_QUERY:
                self.ack_gate.expect()
                stored = True
            fallback = encode_ema_reply(()) if stored else reply
            self.ack_gate.reply(
                lambda durable: self._answer(reply if durable else fallback)
            )

    def _answer(self, reply: bytes) -> None:
        """Send our own reply to the ECU and publish it like one from EMA."""
        if self.ecu.is_closing():
            return
        self._to_ecu(reply)
        self.bytes_from_ema += len(reply)
        reply_frame = self.relay._decode(reply, Direction.EMA_TO_ECU)
        self.relay._publish(self, reply, reply_frame, Direction.EMA_TO_ECU)

    def _to_ecu(self, data: bytes) -> None:
        if not self.ecu.is_closing():
            self.ecu.write(data)
            self.relay._track_buffer(self.ecu)

    def _reply_timeout(self) -> None:
        self._pending_timer = None
        if self._pending_since is None or self._finished:
            return
        self._pending_timed_out = True
        window = self.relay._options.connect_timeout
        self.upstream_note = f"no reply within {window:g} s"
        self.relay._report(
            self,
            UpstreamResult.TIMEOUT,
            detail=f"EMA did not answer within {window:g} s",
        )

    def ecu_eof(self) -> bool:
        """Pass the ECU's half-close on; keep the other direction running."""
        self._ecu_eof = True
        self._flush(Direction.ECU_TO_EMA)
        if self.mode != _FORWARD:
            self.ecu.close()
            return True
        if self.ema is not None and not self.ema.is_closing():
            if self._ema_eof:
                self._close_both()
            elif self.ema.can_write_eof():
                self.ema.write_eof()
        return True

    def ecu_lost(self, exc: Exception | None) -> None:
        """Finish after the ECU connection ended (closed, reset or aborted)."""
        self._ecu_closed = True
        if exc is not None and self._close_reason is None:
            self._close_reason = f"ECU connection lost: {exc}"
        if not self._ecu_eof:
            self._flush(Direction.ECU_TO_EMA)
        if self._pending_timer is not None:
            # The ECU gave up or finished (a result frame needs no answer).
            self._pending_timer.cancel()
            self._pending_timer = None
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self.ema is not None:
            self.ema.close()
        self._maybe_done()

    # -- EMA -> ECU ---------------------------------------------------------

    def from_ema(self, data: bytes) -> None:
        """Forward EMA bytes first, then time the reply and decode the copy."""
        now = self.loop.time()
        self.progressed = True  # EMA answers only an exchange that is going on
        self.last_progress = now
        self.bytes_from_ema += len(data)
        self.relay.counters.bytes_from_ema += len(data)
        gate = self.command_gate
        forward = data if gate is None else gate.feed(data, self.ecu_id)
        if forward:
            # Held while the ECU's record is not yet on disk (bounded).
            self.ack_gate.send(forward)
        if self._pending_since is not None:
            rtt_ms = (now - self._pending_since) * 1000
            self._pending_since = None
            if self._pending_timer is not None:
                self._pending_timer.cancel()
                self._pending_timer = None
            self.upstream_note = f"ok ({rtt_ms:.1f} ms)"
            self.relay._report(self, UpstreamResult.OK, rtt_ms=rtt_ms)
        for raw in self._feed(Direction.EMA_TO_ECU, data):
            frame = self.relay._decode(raw, Direction.EMA_TO_ECU)
            self.relay._publish(self, raw, frame, Direction.EMA_TO_ECU)
        reply = gate.take_reply() if gate is not None else None
        if reply is not None:  # blocked: end the ECU's session, tell EMA nothing
            self._close_reason = "EMA command blocked by the guard"
            self.ack_gate.send(reply)
            if self.ema is not None:
                self.ema.close()

    def ema_eof(self) -> bool:
        """Pass EMA's half-close on to the ECU."""
        self._ema_eof = True
        self._release_held()
        self._flush(Direction.EMA_TO_ECU)
        self._no_reply("EMA closed the connection without replying")
        self.ack_gate.then(self._pass_ema_eof)
        return True

    def _pass_ema_eof(self) -> None:
        if self._ecu_eof:
            self._close_both()
        elif not self.ecu.is_closing() and self.ecu.can_write_eof():
            self.ecu.write_eof()

    def ema_lost(self, exc: Exception | None) -> None:
        """Close the ECU side once EMA's connection is gone."""
        self._ema_closed = True
        self._release_held()
        if exc is not None and self._close_reason is None:
            self._close_reason = f"EMA connection lost: {exc}"
        if not self._ema_eof:
            self._flush(Direction.EMA_TO_ECU)
        if not self._ecu_closed:
            self._no_reply("EMA connection ended without a reply")
        self.ack_gate.then(self.ecu.close)
        self._maybe_done()

    def _release_held(self) -> None:
        """Forward what the guard's gate still holds once EMA's side ends."""
        held = self.command_gate.flush() if self.command_gate is not None else b""
        if held:
            self.ack_gate.send(held)

    def _no_reply(self, detail: str) -> None:
        if self._pending_since is None or self._pending_timed_out or self._ecu_eof:
            return
        self._pending_since = None
        if self._pending_timer is not None:
            self._pending_timer.cancel()
            self._pending_timer = None
        self.upstream_note = detail
        self.relay._report(self, UpstreamResult.TIMEOUT, detail=detail)

    # -- framing ------------------------------------------------------------

    def _feed(self, direction: Direction, data: bytes) -> list[bytes]:
        framer = self._framers[direction]
        if framer is None:
            return []
        # Both directions are paid from the LAN device's frame budget: what EMA
        # answers on its connection is what that device asked for.
        try:
            frames, skipped = self.relay.admission.cut(framer, data, self.peer_host)
        except Exception:
            self._framer_failed(direction)
            return []
        if skipped:
            # Too busy to decode is not stalled: it keeps its slot, not its budget.
            self.progressed = True
            self.last_progress = self.loop.time()
            self.relay._skipped(self, skipped)
        return frames

    def _flush(self, direction: Direction) -> None:
        framer = self._framers[direction]
        if framer is None:
            return
        try:
            leftovers = framer.flush()
        except Exception:
            self._framer_failed(direction)
            return
        for raw in leftovers:
            frame = self.relay._decode(raw, direction)
            self.relay._publish(self, raw, frame, direction)

    def _buffered(self, direction: Direction) -> int:
        framer = self._framers[direction]
        return 0 if framer is None else framer.buffered

    def _framer_failed(self, direction: Direction) -> None:
        self.relay.decode_errors += 1
        self._framers[direction] = None
        _LOGGER.exception(
            "Framer failed on connection #%d (%s); relaying continues undecoded",
            self.conn_id,
            direction.value,
        )
