"""Pipe one ECU connection to EMA (or a responder) and hand a copy to the relay.

Every ECU connection gets exactly one upstream connection to the same port on EMA.
Both directions are piped concurrently with asyncio protocols (``sides``): bytes are
written on to the other side first, then cut into frames (``frame_tap``) that go to
the host for decoding and publishing, so neither can delay or change what is
forwarded. A session asks its host only what ``SessionHost`` lists. Reading pauses
while a write buffer is full (``flow``); uploads are timed by ``upload_timer``.

When EMA cannot be reached the ECU's frames are still read and published, then the
connection is closed without a reply so the ECU keeps its records and re-sends them.
In cloudless mode nothing goes upstream; a responder answers the ECU.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ecu_proxy.cloudless import encode_ema_reply
from ecu_proxy.flow import FlowControl
from ecu_proxy.models import Direction, FrameKind, UpstreamResult
from ecu_proxy.session_host import SessionMode
from ecu_proxy.sides import EmaUnreachableError
from ecu_proxy.upload_timer import UPLOAD_KINDS, UploadTimer

if TYPE_CHECKING:
    from ecu_proxy.frame_tap import FrameTap
    from ecu_proxy.guard import CommandGate
    from ecu_proxy.models import DecodedFrame
    from ecu_proxy.session_host import SessionHost

_LOGGER = logging.getLogger(__name__)


class Session:
    """One ECU connection and, in forward mode, its EMA connection."""

    def __init__(
        self,
        host: SessionHost,
        conn_id: int,
        ecu: asyncio.Transport,
        peer: tuple[str, int],
        port: int,
        mode: SessionMode,
        *,
        tap: FrameTap,
        command_gate: CommandGate | None,
    ) -> None:
        self._host = host
        self.conn_id = conn_id
        self.ecu = ecu
        self.peer_host, self.peer_port = peer
        self.port = port
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
        self.bytes_from_ecu = 0
        self.bytes_from_ema = 0
        self.upstream_note = "not connected"
        self.flow = FlowControl(ecu)
        self.ack_gate = host.ack_gate(self._to_ecu)
        # Holds EMA's command frames until whole when the command guard is on.
        self.command_gate = command_gate
        self._tap = tap
        self._upload = UploadTimer(
            self.loop, host.connect_timeout, self._report, self._note
        )
        self._ecu_frames = 0
        self._ecu_eof = False
        self._ema_eof = False
        self._ecu_closed = False
        self._ema_closed = True  # until a connection is made
        self._connect_task: asyncio.Task[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._close_reason: str | None = None
        self._finished = False

    # -- lifecycle ----------------------------------------------------------

    def begin(self) -> None:
        """Start the session: arm the idle timer and connect upstream."""
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
        self.flow.connecting(paused=True)
        self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            self.upstream_note = await self._host.open_upstream(self)
        except EmaUnreachableError as err:
            self._unreachable(str(err))
        finally:
            self._connect_task = None
            self._maybe_done()
        if not self._ecu_closed and self.ema is not None:
            self.flow.connecting(paused=False)

    def ema_made(self, transport: asyncio.Transport) -> None:
        """Take the new EMA connection, or drop it when the ECU already left."""
        if self._ecu_closed or self._finished:
            transport.abort()
            return
        self.ema = transport
        self._ema_closed = False
        self.flow.attach_ema(transport)

    def _unreachable(self, reason: str) -> None:
        self.mode = SessionMode.UNREACHABLE
        self.upstream_note = f"unreachable: {reason}"
        if not self._ecu_closed:
            self.flow.connecting(paused=False)

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
        waiting = not self.progressed or self._tap.buffered(Direction.ECU_TO_EMA) > 0
        now = self.loop.time()
        due, reason = self._host.admission.deadline(self.last_progress, now, waiting)
        if reason is not None:
            _LOGGER.debug("Connection #%d closed: %s", self.conn_id, reason)
            self.abort(reason)
            return
        self._idle_handle = self.loop.call_at(due, self._idle_check)

    def _progress(self) -> None:
        self.progressed = True
        self.last_progress = self.loop.time()

    def _maybe_done(self) -> None:
        if self._finished or not self._ecu_closed or not self._ema_closed:
            return
        if self._connect_task is not None:
            return
        self._finished = True
        self.ack_gate.close()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._upload.cancel()
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

    def _report(
        self, result: UpstreamResult, rtt_ms: float | None, detail: str | None
    ) -> None:
        self._host.report(self, result, rtt_ms=rtt_ms, detail=detail)

    def _note(self, note: str) -> None:
        self.upstream_note = note

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
        for raw in self._cut(Direction.ECU_TO_EMA, data):
            self._ecu_frame(raw)
        if (
            self.mode is SessionMode.UNREACHABLE
            and self._ecu_frames
            and self._tap.buffered(Direction.ECU_TO_EMA) == 0
        ):
            self._close_reason = "EMA unreachable, no reply sent"
            self.ecu.close()

    def _ecu_frame(self, raw: bytes) -> None:
        self._ecu_frames += 1
        self._progress()
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
            self._upload.sent()
        elif self.mode is SessionMode.UNREACHABLE:
            self._report(UpstreamResult.UNREACHABLE, None, self.upstream_note)
        else:
            self._report(UpstreamResult.CLOUDLESS, None, None)
            self._answer_cloudless(frame, stored=stored)

    def _answer_cloudless(self, frame: DecodedFrame, *, stored: bool) -> None:
        """Answer an upload with the responder's reply, as EMA would."""
        reply = self._host.cloudless_reply(frame)
        if reply is None:
            return
        # A reply that says "stored" (the record's own timestamp, or the list of
        # stored ones) goes out only once the disk holds what it lists; past the
        # bound the ECU is told nothing is stored and keeps its data.
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
        # The ECU gave up or finished (a result frame needs no answer).
        self._upload.cancel()
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self.ema is not None:
            self.ema.close()
        self._maybe_done()

    # -- EMA -> ECU ---------------------------------------------------------

    def from_ema(self, data: bytes) -> None:
        """Forward EMA bytes first, then time the reply and decode the copy."""
        self._progress()  # EMA answers only an exchange that is going on
        self.bytes_from_ema += len(data)
        self._host.counters.bytes_from_ema += len(data)
        gate = self.command_gate
        forward = data if gate is None else gate.feed(data, self.ecu_id)
        if forward:
            # Held while the ECU's record is not yet on disk (bounded).
            self.ack_gate.send(forward)
        self._upload.answered(self.last_progress)
        for raw in self._cut(Direction.EMA_TO_ECU, data):
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
        self._unanswered("EMA closed the connection without replying")
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
            self._unanswered("EMA connection ended without a reply")
        self.ack_gate.then(self.ecu.close)
        self._maybe_done()

    def _release_held(self) -> None:
        """Forward what the guard's gate still holds once EMA's side ends."""
        held = self.command_gate.flush() if self.command_gate is not None else b""
        if held:
            self.ack_gate.send(held)

    def _unanswered(self, detail: str) -> None:
        # After the ECU's half-close no answer is due: it finished its upload.
        if not self._ecu_eof:
            self._upload.unanswered(detail)

    # -- the copy -----------------------------------------------------------

    def _cut(self, direction: Direction, data: bytes) -> list[bytes]:
        frames, skipped = self._tap.cut(direction, data)
        if skipped:  # too busy to decode is not stalled: it keeps its slot
            self._progress()
        return frames

    def _flush(self, direction: Direction) -> None:
        for raw in self._tap.flush(direction):
            self._host.publish(self, raw, direction)
