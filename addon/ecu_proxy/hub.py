"""The hub between the relay and the API: live state, events, frame capture, saving.

The relay calls ``frame_received`` and ``upstream_result`` synchronously from the event
loop; they only update memory and ``put_nowait`` into subscriber queues, so a slow
API client or a slow disk never holds up the relay. The state file's store
(``storage``) saves in a background task, debounced, with the write in a worker
thread; the hub is the relay's durable ledger through it: ``wait_durable`` skips the
debounce, so one write (one fsync) covers every record waiting for it. The command
log (commands.py) keeps its own file through a store of its own, saved the same way.

What it sends is built by document.py from the contract; the listeners' outboxes are
in outbox.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import document
from .commands import CommandLog
from .contract.codec import encode
from .contract.messages import (
    EcuStatusData,
    EcuStatusEvent,
    EmaCommandEvent,
    InverterAddedData,
    InverterAddedEvent,
    RecordData,
    RecordEvent,
)
from .frame_json import captured
from .guard import Guard
from .lograte import RateLimitedLog
from .models import Direction, FrameEvent, FrameKind, UpstreamReport
from .outbox import Event, Subscription
from .peaks import Peak
from .state import LiveState, RecordStatus
from .state_file import SavedState, state_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from .contract.messages import Event as EventMessage
    from .contract.state import Document
    from .options import Options

__all__ = [
    "CAPTURE_RAW_LIMIT",
    "FRAME_BUFFER",
    "HISTORY_BYTES",
    "HISTORY_SIZE",
    "SEQ_GAP_AFTER_CRASH",
    "CapturedFrame",
    "Event",
    "Hub",
    "Subscription",
]

_LOGGER = logging.getLogger(__name__)

HISTORY_SIZE = 1000
HISTORY_BYTES = 8 * 1024 * 1024
FRAME_BUFFER = 200
# Bytes of one frame kept for /api/frames: any real record (100 inverters is about
# 13 kB) fits; long runs of garbage are cut so the buffer stays small.
CAPTURE_RAW_LIMIT = 32 * 1024
SAVE_DELAY = 1.0
SAVE_RETRY_DELAY = 5.0
# After a crash, events numbered after the last save may have reached clients; skip
# far enough ahead that a number is never handed out twice.
SEQ_GAP_AFTER_CRASH = 10_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """A frame kept for ``/api/frames``."""

    seq: int
    event: FrameEvent
    size: int  # bytes of the whole frame; event.raw may be cut to the limit

    @classmethod
    def of(cls, seq: int, event: FrameEvent) -> CapturedFrame:
        """Capture an event, keeping at most CAPTURE_RAW_LIMIT bytes of it."""
        size = len(event.raw)
        if size > CAPTURE_RAW_LIMIT:
            event = dataclasses.replace(event, raw=event.raw[:CAPTURE_RAW_LIMIT])
        return cls(seq, event, size)


class Hub:
    """Live state fed by the relay, fanned out to subscribers, saved to disk."""

    def __init__(
        self,
        options: Options,
        *,
        server_id: str,
        version: str,
        clock: Callable[[], datetime] = _utcnow,
        save_delay: float = SAVE_DELAY,
    ) -> None:
        """Prepare an empty hub; ``start`` loads the saved state."""
        self.options = options
        self.server_id = server_id
        self.version = version
        self.store = state_store(
            options.data_dir,
            clock=clock,
            delay=save_delay,
            retry_delay=SAVE_RETRY_DELAY,
        )
        self.state = LiveState()
        self._seq = 0
        self._history: deque[Event] = deque(maxlen=HISTORY_SIZE)
        self._history_bytes = 0
        self._frames: deque[CapturedFrame] = deque(maxlen=FRAME_BUFFER)
        self._frame_seq = 0
        self._subscriptions: dict[Subscription, None] = {}
        self._log = RateLimitedLog(_LOGGER)
        self._started = time.monotonic()
        self.guard = Guard(options.guard, clock=clock)
        self.commands = CommandLog(
            options.data_dir,
            clock=clock,
            save_delay=save_delay,
            retry_delay=SAVE_RETRY_DELAY,
        )

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Load the saved state and start the debounced savers."""
        await self.commands.start()
        loaded = await self.store.async_load()
        seq = loaded.salvaged
        if loaded.data is not None:
            self.state = loaded.data.ecus
            seq = loaded.data.last_seq
            _LOGGER.info(
                "Loaded state: %d ECU(s), %d inverter(s), last event %d",
                len(self.state.ecus),
                sum(len(e.inverters) for e in self.state.ecus.values()),
                seq,
            )
        if not loaded.clean and (loaded.data is not None or loaded.problem):
            seq += SEQ_GAP_AFTER_CRASH
        self._seq = seq
        self._started = time.monotonic()
        await self.store.start(self._saved_state)

    def _saved_state(self) -> SavedState:
        return SavedState(ecus=self.state, last_seq=self._seq)

    async def stop(self) -> bool:
        """Stop the savers and write the state out one last time; say if it was."""
        await self.commands.stop()
        return await self.store.stop()

    async def save_now(self) -> None:
        """Write the state out immediately."""
        await self.store.save_now()

    @property
    def disk_problem(self) -> str | None:
        """Return why the state or the command log cannot be saved, if it cannot."""
        return self.store.disk_problem or self.commands.store.disk_problem

    @property
    def save_count(self) -> int:
        """Return how many times the state was written since creation."""
        return self.store.save_count

    async def wait_saved(self) -> None:
        """Wait until the next write of the state file completes."""
        await self.store.wait_saved()

    # --- DurableLedger -----------------------------------------------------------

    def record_mark(self) -> int:
        """Return a mark covering every change applied so far."""
        return self.store.record_mark()

    def is_durable(self, mark: int) -> bool:
        """Return whether every change up to ``mark`` is on disk."""
        return self.store.is_durable(mark)

    def save_soon(self) -> None:
        """Start a save without the debounce delay."""
        self.store.save_soon()

    async def wait_durable(self, mark: int) -> None:
        """Wait until every change up to ``mark`` is on disk (no time limit)."""
        await self.store.wait_durable(mark)

    # --- RelayListener -----------------------------------------------------------

    def frame_received(self, event: FrameEvent) -> None:
        """Capture a frame and apply it if it is an ECU data record."""
        try:
            if self.options.capture_frames:
                self._frame_seq += 1
                self._frames.append(CapturedFrame.of(self._frame_seq, event))
            frame = event.frame
            if frame.kind is FrameKind.DATA and event.direction is Direction.ECU_TO_EMA:
                self._apply_record(event)
            elif frame.kind is FrameKind.CONTROL:
                self._command_frame(event)
        except Exception:  # the relay must keep going whatever happens here
            _LOGGER.exception("Could not process a frame from %s", event.peer)

    def upstream_result(self, report: UpstreamReport) -> None:
        """Record how an upload to EMA went and tell listeners."""
        try:
            ecu_id = self.state.apply_upstream(report)
            if ecu_id is None:
                return
            upstream = document.upstream(self.state.ecus[ecu_id].upstream)
            self._publish(
                EcuStatusEvent(seq=self._seq + 1, data=EcuStatusData(ecu_id, upstream))
            )
            self.store.changed()
        except Exception:
            _LOGGER.exception("Could not record an upload result")

    def _apply_record(self, event: FrameEvent) -> None:
        frame = event.frame
        outcome = self.state.apply_record(frame, event.received_at, event.peer)
        if outcome.status == RecordStatus.INCOMPLETE:
            self._log.limited_warning(
                f"incomplete {event.peer}",
                "Data record from %s without ECU id or timestamp ignored",
                event.peer,
            )
            return
        if not outcome.accepted:
            _LOGGER.debug(
                "ECU %s: record of %s not counted (%s)",
                outcome.ecu_id,
                frame.timestamp,
                outcome.status,
            )
            return
        assert outcome.ecu_id is not None
        ecu = self.state.ecus[outcome.ecu_id]
        if outcome.new_ecu:
            _LOGGER.info("New ECU %s (%s)", ecu.ecu_id, ecu.model or "unknown model")
        for inv_id in outcome.added_inverters:
            inverter = ecu.inverters[inv_id]
            _LOGGER.info(
                "ECU %s: new inverter %s (type %s, %s)",
                ecu.ecu_id,
                inv_id,
                inverter.type_code,
                inverter.family,
            )
            added = document.inverter(inverter, Peak())
            self._publish(
                InverterAddedEvent(
                    seq=self._seq + 1, data=InverterAddedData(ecu.ecu_id, added)
                )
            )
        record = RecordData(ecu.ecu_id, document.ecu(ecu), outcome.late)
        self._publish(RecordEvent(seq=self._seq + 1, data=record))
        self.store.changed()

    def _command_frame(self, event: FrameEvent) -> None:
        """Pair EMA's commands with the ECU's answers; publish each finished pair."""
        blocked = event.direction is Direction.EMA_TO_ECU and self.guard.take_verdict(
            event.connection_id, event.raw
        )
        mode = self.guard.settings.mode
        for entry in self.commands.observe(event, blocked=blocked, guard=mode):
            count = self.guard.counts.by_ecu.get(entry.ecu_id, 0)
            data = document.ema_command_data(entry, count)
            self._publish(EmaCommandEvent(seq=self._seq + 1, data=data))

    # --- RecordIndex -------------------------------------------------------------

    def stored_timestamps(self, ecu_id: str, limit: int = 99) -> list[str]:
        """Return wire timestamps (YYYYMMDDhhmmss) of stored records, newest first."""
        return self.state.stored_timestamps(ecu_id, limit)

    def is_stored(self, ecu_id: str, timestamp: str) -> bool:
        """Return whether the record with this wire timestamp is stored."""
        return self.state.is_stored(ecu_id, timestamp)

    # --- reading -----------------------------------------------------------------

    def document(self) -> Document:
        """Return the state document of docs/api.md."""
        return document.document(
            self.server_id,
            self.version,
            self.state.ecus,
            {ecu_id: self.commands.recent(ecu_id) for ecu_id in self.state.ecus},
            self.guard,
        )

    def snapshot(self) -> dict[str, Any]:
        """Return the state document in its JSON form."""
        snapshot: dict[str, Any] = encode(self.document())
        return snapshot

    @property
    def last_seq(self) -> int:
        """Return the number of the newest event."""
        return self._seq

    def events_since(self, since: int) -> list[Event] | None:
        """Return the events after ``since``, or None if history no longer has them."""
        oldest = self._history[0].seq if self._history else self._seq + 1
        if not oldest - 1 <= since <= self._seq:
            return None
        return [e for e in self._history if e.seq > since]

    def frames(self, limit: int = FRAME_BUFFER) -> list[dict[str, Any]]:
        """Return the last ``limit`` captured frames, oldest first."""
        if limit <= 0:
            return []
        kept = list(self._frames)[-limit:]
        return [encode(captured(f)) for f in kept]

    def captured(self) -> list[CapturedFrame]:
        """Return the captured frames, oldest first."""
        return list(self._frames)

    def uptime_s(self) -> float:
        """Return seconds since start."""
        return time.monotonic() - self._started

    # --- fan-out -----------------------------------------------------------------

    def subscribe(self, max_queue: int, max_bytes: int | None = None) -> Subscription:
        """Return a subscription of at most ``max_queue`` items and ``max_bytes``."""
        sub = Subscription(self, max_queue, max_bytes)
        self._subscriptions[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription."""
        self._subscriptions.pop(sub, None)

    @property
    def subscriber_count(self) -> int:
        """Return how many subscriptions are open."""
        return len(self._subscriptions)

    def _publish(self, message: EventMessage) -> None:
        """Keep and fan out the next event (``message.seq`` numbers it)."""
        self._seq = message.seq
        event = Event(message)
        if len(self._history) == self._history.maxlen:
            self._history_bytes -= len(self._history[0].json)
        self._history.append(event)
        self._history_bytes += len(event.json)
        # Events are bounded in bytes too: big ones (many inverters) leave sooner.
        while self._history_bytes > HISTORY_BYTES and len(self._history) > 1:
            self._history_bytes -= len(self._history.popleft().json)
        for sub in list(self._subscriptions):
            sub.deliver(event)
