"""Rate-limit repeated log lines so a flood of bad input cannot flood the log.

A hostile or broken LAN device can trigger the same warning thousands of times a
second (rejected connections, late records, refused ids). Each distinct key is logged
at most once per interval; what was held back is counted and reported with the next
line of that key, so nothing is hidden, only folded.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_INTERVAL_S = 60.0
# Keys remembered at once; the least recently logged key is forgotten first.
MAX_KEYS = 256


class _Slot:
    """When a key was last logged and how many lines were held back since."""

    __slots__ = ("last", "suppressed")

    def __init__(self, last: float) -> None:
        self.last = last
        self.suppressed = 0


class RateLimitedLog:
    """Log each key at most once per interval, counting what was held back."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        """Wrap a logger."""
        self._logger = logger
        self._interval = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._slots: OrderedDict[str, _Slot] = OrderedDict()

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log unless this key was logged within the interval; say if it was logged."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        slot = self._slots.get(key)
        if slot is not None and now - slot.last < self._interval:
            slot.suppressed += 1
            return False
        held = slot.suppressed if slot is not None else 0
        if slot is None:
            slot = _Slot(now)
            self._slots[key] = slot
            while len(self._slots) > self._max_keys:
                self._slots.popitem(last=False)
        else:
            slot.last = now
            slot.suppressed = 0
            self._slots.move_to_end(key)
        if held:
            self._logger.log(
                level,
                "%s (%d more like this in the last %.0f s)",
                msg % args if args else msg,
                held,
                self._interval,
            )
        else:
            self._logger.log(level, msg, *args)
        return True

    def limited_warning(self, key: str, msg: str, *args: object) -> bool:
        """Log a rate-limited warning."""
        return self.log(logging.WARNING, key, msg, *args)

    def limited_info(self, key: str, msg: str, *args: object) -> bool:
        """Log a rate-limited info line."""
        return self.log(logging.INFO, key, msg, *args)

    def suppressed(self, key: str) -> int:
        """Return how many lines of this key are held back right now."""
        slot = self._slots.get(key)
        return slot.suppressed if slot is not None else 0
