"""Pipe one ECU connection to EMA (or a responder) and hand a copy to the relay.

Longer than ~400 lines because one connection's lifecycle is one state machine.

Every ECU connection gets exactly one upstream connection to the same port on EMA.
Both directions are piped concurrently with asyncio protocols: bytes are written on
to the other side first, then fed to a framer (one per direction) whose frames go
to the host for decoding and publishing, so neither can delay or change what is
forwarded. A session asks its host only what ``SessionHost`` lists.

Flow control keeps memory bounded: when one side's write buffer passes its high-water
mark, reading from the other side pauses until it drains.

When EMA cannot be reached the ECU's frames are still read and published, then the
connection is closed without a reply so the ECU keeps its records and re-sends them.
In cloudless mode nothing goes upstream; a responder answers the ECU.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, cast

from ecu_proxy.cloudless import encode_ema_reply
from ecu_proxy.framing import Framer
from ecu_proxy.models import Direction, FrameKind, UpstreamResult
from ecu_proxy.session_host import Pause, SessionMode
from ecu_proxy.upstream import UpstreamError

if TYPE_CHECKING:
    from ecu_proxy.session_host import SessionHost

_LOGGER = logging.getLogger(__name__)

# A side's write buffer may grow to this before reading from the other side pauses.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024
# Frames whose upload we time (the ECU waits for EMA's answer to these).
UPLOAD_KINDS = frozenset({FrameKind.DATA, FrameKind.RECONCILE_QUERY, FrameKind.CONTROL})


class Side(asyncio.Protocol):
    """One end of a relayed connection; hands every event to its session."""

    session: Session | None = None
    transport: asyncio.Transport | None = None

    def pause_writing(self) -> None:
        """Pause reading from the other side while this side's buffer is full."""
        if self.session is not None:
            self.session.write_paused(self, paused=True)

    def resume_writing(self) -> None:
        """Resume reading from the other side once this side's buffer drained."""
        if self.session is not None:
            self.session.write_paused(self, paused=False)


class _EmaSide(Side):
    """Our connection to EMA for one ECU connection."""

    def __init__(self, session: Session) -> None:
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


class Session:
    """One ECU connection and, in forward mode, its EMA connection."""

    def __init__(
        self,
        host: SessionHost,
        conn_id: int,
        ecu: asyncio.Transport,
        port: int,
        peer_host: str,
        peer_port: int,
        mode: SessionMode,
    ) -> None:
        self._host = host
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
        self.ack_gate = host.ack_gate(self._to_ecu)
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
        self._ecu_pause: set[Pause] = set()
        self._ema_pause: set[Pause] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._pending_since: float | None = None
        self._pending_timer: asyncio.TimerHandle | None = None
        self._pending_timed_out = False
        self._close_reason: str | None = None
        self._finished = False
        # Holds EMA's command frames until whole when the command guard is on.
        self.command_gate = host.command_gate(conn_id)

    # -- lifecycle ----------------------------------------------------------

    def begin(self) -> None:
        """Start the session: arm the idle timer and connect upstream."""
        self.ecu.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self._idle_handle = self.loop.call_at(
            self.started + self._host.admission.limits.frame_timeout, self._idle_check
        )
        _LOGGER.debug(
            "Connection #%d from %s:%d on port %d (%s)",
            self.conn_id,
            self.peer_host,
            self.peer_port,
            self.port,
            self.mode,
        )
        if self.mode is SessionMode.CLOUDLESS:
            self.upstream_note = "cloudless"
            return
        self._set_reading(self.ecu, self._ecu_pause, Pause.CONNECTING, paused=True)
        self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            address = await self._open_upstream()
        finally:
            self._connect_task = None
            self._maybe_done()
        if address is None or self._ecu_closed or self.ema is None:
            return
        self._host.ema_reachable()
        self._set_reading(self.ecu, self._ecu_pause, Pause.CONNECTING, paused=False)

    async def _open_upstream(self) -> str | None:
        """Connect to EMA; on failure switch to unreachable mode and return None.

        Finding the address and connecting share one connect_timeout window, so
        the ECU (which waits about 10 s for an answer) is never kept longer.
        """
        timeout = self._host.connect_timeout
        started = time.monotonic()
        address: str | None = None
        try:
            async with asyncio.timeout(timeout):
                address = await self._host.upstream_address()
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
        self.mode = SessionMode.UNREACHABLE
        self.upstream_note = f"unreachable: {reason}"
        self._host.ema_unreachable(reason)
        if not self._ecu_closed:
            self._set_reading(self.ecu, self._ecu_pause, Pause.CONNECTING, paused=False)

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
        due, reason = self._host.admission.deadline(self.last_progress, now, waiting)
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
        self._host.session_closed(self)
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
        reasons: set[Pause],
        reason: Pause,
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

    def write_paused(self, side: Side, *, paused: bool) -> None:
        """Stop (or restart) reading from the peer of a side whose buffer is full."""
        if side.transport is self.ecu:
            if self.ema is not None:
                self._set_reading(
                    self.ema, self._ema_pause, Pause.BACKPRESSURE, paused=paused
                )
        else:
            self._set_reading(
                self.ecu, self._ecu_pause, Pause.BACKPRESSURE, paused=paused
            )

    def paused_for_backpressure(self) -> bool:
        """Return True while reading from either side waits for a drain."""
        return (
            Pause.BACKPRESSURE in self._ecu_pause
            or Pause.BACKPRESSURE in self._ema_pause
        )

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
        self._host.counters.bytes_from_ecu += len(data)
        ema = self.ema
        if (
            self.mode is SessionMode.FORWARD
            and ema is not None
            and not ema.is_closing()
        ):
            ema.write(data)
            self._host.track_buffer(ema)
        for raw in self._feed(Direction.ECU_TO_EMA, data):
            self._ecu_frame(raw)
        if (
            self.mode is SessionMode.UNREACHABLE
            and self._ecu_frames
            and self._buffered(Direction.ECU_TO_EMA) == 0
        ):
            self._close_reason = "EMA unreachable, no reply sent"
            self.ecu.close()

    def _ecu_frame(self, raw: bytes) -> None:
        self._ecu_frames += 1
        self.progressed = True
        self.last_progress = self.loop.time()
        frame = self._host.publish(self, raw, Direction.ECU_TO_EMA)
        if frame.ecu_id and self.ecu_id is None:
            self.ecu_id = frame.ecu_id
        # A stored record: its address is an ECU's, and acks now wait for the disk.
        stored = self.ack_gate.expect_record(frame)
        if stored:
            self._host.admission.trust(self.peer_host)
        if frame.kind not in UPLOAD_KINDS:
            return
        if self.mode is SessionMode.FORWARD:
            if self._pending_since is None:
                self._pending_since = self.loop.time()
                self._pending_timed_out = False
                self._pending_timer = self.loop.call_later(
                    self._host.connect_timeout, self._reply_timeout
                )
        elif self.mode is SessionMode.UNREACHABLE:
            self._host.report(
                self, UpstreamResult.UNREACHABLE, detail=self.upstream_note
            )
        else:
            self._host.report(self, UpstreamResult.CLOUDLESS)
            reply = self._host.cloudless_reply(frame)
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
        self._host.publish(self, reply, Direction.EMA_TO_ECU)

    def _to_ecu(self, data: bytes) -> None:
        if not self.ecu.is_closing():
            self.ecu.write(data)
            self._host.track_buffer(self.ecu)

    def _reply_timeout(self) -> None:
        self._pending_timer = None
        if self._pending_since is None or self._finished:
            return
        self._pending_timed_out = True
        window = self._host.connect_timeout
        self.upstream_note = f"no reply within {window:g} s"
        self._host.report(
            self,
            UpstreamResult.TIMEOUT,
            detail=f"EMA did not answer within {window:g} s",
        )

    def ecu_eof(self) -> bool:
        """Pass the ECU's half-close on; keep the other direction running."""
        self._ecu_eof = True
        self._flush(Direction.ECU_TO_EMA)
        if self.mode is not SessionMode.FORWARD:
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
        self._host.counters.bytes_from_ema += len(data)
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
            self._host.report(self, UpstreamResult.OK, rtt_ms=rtt_ms)
        for raw in self._feed(Direction.EMA_TO_ECU, data):
            self._host.publish(self, raw, Direction.EMA_TO_ECU)
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
        self._host.report(self, UpstreamResult.TIMEOUT, detail=detail)

    # -- framing ------------------------------------------------------------

    def _feed(self, direction: Direction, data: bytes) -> list[bytes]:
        framer = self._framers[direction]
        if framer is None:
            return []
        # Both directions are paid from the LAN device's frame budget: what EMA
        # answers on its connection is what that device asked for.
        try:
            frames, skipped = self._host.admission.cut(framer, data, self.peer_host)
        except Exception:  # noqa: BLE001 - a framer fault must not stop forwarding
            self._framer_failed(direction)
            return []
        if skipped:
            # Too busy to decode is not stalled: it keeps its slot, not its budget.
            self.progressed = True
            self.last_progress = self.loop.time()
            self._host.skipped(self, skipped)
        return frames

    def _flush(self, direction: Direction) -> None:
        framer = self._framers[direction]
        if framer is None:
            return
        try:
            leftovers = framer.flush()
        except Exception:  # noqa: BLE001 - a framer fault must not stop forwarding
            self._framer_failed(direction)
            return
        for raw in leftovers:
            self._host.publish(self, raw, direction)

    def _buffered(self, direction: Direction) -> int:
        framer = self._framers[direction]
        return 0 if framer is None else framer.buffered

    def _framer_failed(self, direction: Direction) -> None:
        self._host.framer_failed()
        self._framers[direction] = None
        _LOGGER.exception(
            "Framer failed on connection #%d (%s); relaying continues undecoded",
            self.conn_id,
            direction.value,
        )
