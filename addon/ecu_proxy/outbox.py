"""What the hub hands each listener: events, and one ordered, bounded outbox each.

An ``Event`` wraps one contract event message with its JSON text, built once and
shared by every listener. A ``Subscription`` is one listener's queue of events and
other messages (the API's results), bounded in items and in bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from .contract.codec import encode

if TYPE_CHECKING:
    from .contract.messages import Event as EventMessage
    from .hub import Hub


class Event:
    """One change pushed to listeners; its JSON text is built once and shared."""

    __slots__ = ("json", "message", "wire")

    def __init__(self, message: EventMessage) -> None:
        """Wrap an event message; ``wire`` is its JSON form."""
        self.message = message
        self.wire: dict[str, Any] = encode(message)
        self.json = json.dumps(self.wire, separators=(",", ":"))

    @property
    def seq(self) -> int:
        """Return the event's number."""
        return self.message.seq

    @property
    def name(self) -> str:
        """Return the event's name (``record``, ``ecu_status``, ...)."""
        return self.message.event

    @property
    def data(self) -> dict[str, Any]:
        """Return the event's ``data`` in its JSON form (shared: do not mutate)."""
        data: dict[str, Any] = self.wire["data"]
        return data


def _text_size(item: Event | str) -> int:
    return len(item.json if isinstance(item, Event) else item)


class Subscription:
    """One listener's ordered, bounded outbox of events and other messages.

    Events are only queued after ``listen``. When the queue is full the subscription
    is marked overflowed and dropped by the hub; its owner should disconnect.
    """

    def __init__(self, hub: Hub, max_queue: int, max_bytes: int | None = None) -> None:
        """Create an outbox of at most ``max_queue`` items and ``max_bytes`` of text."""
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._hub = hub
        self._queue: asyncio.Queue[Event | str] = asyncio.Queue(max_queue)
        self._max_bytes = max_bytes
        self.queued_bytes = 0
        self._after: int | None = None
        self.overflowed = asyncio.Event()
        self.closed = False

    @property
    def listening(self) -> bool:
        """Return whether events are being queued."""
        return self._after is not None

    def listen(self, after_seq: int) -> None:
        """Queue every event numbered above ``after_seq`` from now on."""
        self._after = after_seq

    def send(self, text: str) -> bool:
        """Queue a non-event message in order with the events; False on overflow."""
        return self._put(text)

    def deliver(self, event: Event) -> None:
        """Queue an event if listening and new to this subscriber (hub use)."""
        if self._after is not None and event.seq > self._after:
            self._put(event)

    async def get(self) -> Event | str:
        """Wait for the next queued item."""
        item = await self._queue.get()
        if self._max_bytes is not None:
            self.queued_bytes -= _text_size(item)
        return item

    def close(self) -> None:
        """Stop receiving events."""
        self.closed = True
        self._hub.unsubscribe(self)

    def _put(self, item: Event | str) -> bool:
        if self.closed:
            return False
        size = _text_size(item) if self._max_bytes is not None else 0
        over_budget = (
            self._max_bytes is not None
            and self.queued_bytes > 0  # one message alone may exceed the budget
            and self.queued_bytes + size > self._max_bytes
        )
        if not over_budget:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(item)
                self.queued_bytes += size
                return True
        self.closed = True
        self.overflowed.set()
        self._hub.unsubscribe(self)
        return False
