"""Messages waiting for the MQTT broker: one per topic, the latest wins."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def dumps(data: Any) -> str:
    """Return the compact JSON payload of ``data``."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Message:
    """One message waiting for the broker."""

    topic: str
    payload: str
    retain: bool


@dataclass(slots=True)
class Outbox:
    """Pending messages, one per topic (the latest wins), at most ``limit``."""

    limit: int
    dropped: int = 0
    _items: dict[str, Message] = field(default_factory=dict)

    def put(self, message: Message) -> None:
        """Queue a message, replacing an older one of the same topic."""
        if message.topic in self._items:
            self.dropped += 1
        elif len(self._items) >= self.limit:
            del self._items[next(iter(self._items))]
            self.dropped += 1
        self._items[message.topic] = message

    def take(self, count: int) -> list[Message]:
        """Remove and return up to ``count`` messages, oldest first."""
        taken: list[Message] = []
        while self._items and len(taken) < count:
            topic = next(iter(self._items))
            taken.append(self._items.pop(topic))
        return taken

    def __len__(self) -> int:
        """Return how many messages wait."""
        return len(self._items)
