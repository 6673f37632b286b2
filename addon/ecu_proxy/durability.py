"""Hold what tells the ECU "stored" until the record is on disk, within a bound.

The ECU deletes a record once it is acknowledged. So the bytes that acknowledge it
(EMA's reply in forward mode, our own reply in cloudless mode) wait until the state
file holds the record. One state write covers every record applied before it, so
records arriving together share one fsync, and the write starts when the record
arrives, in parallel with EMA's round trip.

The wait is bounded (``HOLD_BOUND`` seconds from when the bytes are held, well within
the ~10 s the ECU waits). When the disk does not confirm in time (full, read-only,
failing), forward mode passes EMA's reply on anyway, so the cloud path never breaks
(EMA has the record; only the local history may miss it), and cloudless mode sends
its "not stored" form of the reply, so the ECU keeps the record and offers it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .lograte import RateLimitedLog
from .models import DecodedFrame, FrameKind
from .wire import format_wire_timestamp

_LOGGER = logging.getLogger(__name__)

HOLD_BOUND = 4.0
# Held bytes beyond this are passed on at once: replies to the ECU are small.
MAX_HELD_BYTES = 64 * 1024


class DurableLedger(Protocol):
    """Where records are stored: knows what is applied and what is on disk."""

    def is_stored(self, ecu_id: str, timestamp: str) -> bool:
        """Return whether the record with this wire timestamp is stored."""

    def record_mark(self) -> int:
        """Return a mark covering every change applied so far."""

    def is_durable(self, mark: int) -> bool:
        """Return whether every change up to ``mark`` is on disk."""

    def save_soon(self) -> None:
        """Start a save without the usual debounce delay."""

    async def wait_durable(self, mark: int) -> None:
        """Wait until every change up to ``mark`` is on disk."""


@dataclass(slots=True)
class _Held:
    """Bytes (or a reply chosen once the outcome is known) waiting for a mark."""

    mark: int
    since: float
    data: bytes | None = None
    choose: Callable[[bool], bytes | None] | None = None
    then: Callable[[], None] | None = None


class AckGate:
    """Pass bytes to the ECU in order, each once the records before it are durable."""

    def __init__(
        self,
        ledger: DurableLedger | None,
        write: Callable[[bytes], None],
        on_late: Callable[[], None],
        bound: float = HOLD_BOUND,
        log: RateLimitedLog | None = None,
    ) -> None:
        """Write through ``write``; call ``on_late`` when the bound passes."""
        self._ledger = ledger
        self._write = write
        self._on_late = on_late
        self._bound = bound
        self._log = log or RateLimitedLog(_LOGGER)
        self._mark = 0
        self._held: deque[_Held] = deque()
        self._held_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self.late = 0

    @property
    def holding(self) -> bool:
        """Return whether bytes are waiting."""
        return bool(self._held)

    def expect_record(self, frame: DecodedFrame) -> bool:
        """If the ledger stored this data record, ``expect`` it; say if it did."""
        if (
            self._ledger is None
            or frame.kind is not FrameKind.DATA
            or frame.ecu_id is None
            or frame.timestamp is None
        ):
            return False
        stamp = format_wire_timestamp(frame.timestamp)
        if not self._ledger.is_stored(frame.ecu_id, stamp):
            return False
        self.expect()
        return True

    def expect(self) -> None:
        """Note that a record was stored: later acknowledgements wait for it."""
        if self._ledger is None:
            return
        self._mark = self._ledger.record_mark()
        if not self._ledger.is_durable(self._mark):
            self._ledger.save_soon()

    def send(self, data: bytes) -> None:
        """Pass bytes on now, or once the expected records are durable."""
        if self._held_bytes + len(data) > MAX_HELD_BYTES:
            self._release_all(durable=False)
        if self._pass_now():
            self._write(data)
            return
        self._hold(_Held(self._mark, self._now(), data=data), len(data))

    def reply(self, choose: Callable[[bool], bytes | None]) -> None:
        """Send ``choose(durable)``: the reply depends on whether the disk confirmed."""
        if self._ledger is None or self._pass_now():
            data = choose(True)
        else:
            self._hold(_Held(self._mark, self._now(), choose=choose), 0)
            return
        if data is not None:
            self._write(data)

    def then(self, action: Callable[[], None]) -> None:
        """Run ``action`` after everything held so far is passed on."""
        if not self._held:
            action()
            return
        self._hold(_Held(self._mark, self._now(), then=action), 0)

    def close(self) -> None:
        """Drop what is held (the connection is gone)."""
        self._held.clear()
        self._held_bytes = 0
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # -- internal -----------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _pass_now(self) -> bool:
        if self._held:
            return False
        return self._ledger is None or self._ledger.is_durable(self._mark)

    def _hold(self, item: _Held, size: int) -> None:
        if self._ledger is not None and not self._ledger.is_durable(item.mark):
            self._ledger.save_soon()
        self._held.append(item)
        self._held_bytes += size
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self._ledger is not None
        ledger = self._ledger
        try:
            while self._held:
                head = self._held[0]
                durable = ledger.is_durable(head.mark)
                if not durable:
                    try:
                        async with asyncio.timeout_at(head.since + self._bound):
                            await ledger.wait_durable(head.mark)
                        durable = True
                    except TimeoutError:
                        self.late += 1
                        self._log.limited_warning(
                            "late-ack",
                            "The state file did not confirm a record within %g s; "
                            "the reply went to the ECU anyway in forward mode, and "
                            "as 'not stored' in cloudless mode",
                            self._bound,
                        )
                        self._on_late()
                self._release_all(durable=durable, upto=head.mark)
        finally:
            self._task = None

    def _release_all(self, *, durable: bool, upto: int | None = None) -> None:
        """Pass on held items in order (those needing ``upto`` or less)."""
        while self._held:
            item = self._held[0]
            if upto is not None and item.mark > upto:
                return
            self._held.popleft()
            if item.data is not None:
                self._held_bytes -= len(item.data)
                self._write(item.data)
            elif item.choose is not None:
                data = item.choose(durable)
                if data is not None:
                    self._write(data)
            elif item.then is not None:
                item.then()
