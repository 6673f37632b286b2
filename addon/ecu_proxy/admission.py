"""Decide which LAN connections the relay takes, and how much decoding each may cost.

A hostile or broken device on the LAN must not lock the real ECU out. So:

* each address may hold at most ``per_address`` connections;
* ``reserved`` of the ``max_connections`` slots are kept for addresses that have sent
  a valid record (trusted); other addresses share the rest;
* when the shared slots are full, a newcomer takes the slot of the oldest connection
  that has not completed any frame and is older than ``grace`` seconds, so a device
  that only holds connections open cannot keep a new ECU out;
* decoding is paid from token buckets (per address, larger for trusted ones, and
  one shared by untrusted addresses), so floods of tiny frames cost a bounded
  amount of CPU.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from .framing import Framer
    from .options import Options

# Seconds a connection has to complete a frame (the ECU sends at once).
FRAME_TIMEOUT = 30.0
# A connection younger than this is not taken over by a newcomer.
EVICT_GRACE = 2.0
# Addresses remembered as trusted; the least recently confirmed is forgotten.
MAX_TRUSTED = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers admission works with."""

    max_connections: int = 64
    per_address: int = 8
    reserved: int = 16
    frame_timeout: float = FRAME_TIMEOUT
    idle_timeout: float = 300.0
    grace: float = EVICT_GRACE
    # Frames decoded per address: burst and steady rate per second.
    frame_burst: float = 256.0
    frame_rate: float = 64.0
    # A trusted address (an ECU) gets this many times the per-address budget: an
    # ECU sending its backlog to a fast EMA must not lose decoding.
    trusted_factor: float = 16.0
    # Frames decoded for all untrusted addresses together.
    shared_burst: float = 512.0
    shared_rate: float = 128.0

    @classmethod
    def from_options(cls, options: Options) -> Limits:
        """Derive the limits from the service options."""
        return cls(
            max_connections=options.max_connections,
            per_address=options.max_connections_per_address,
            reserved=min(16, options.max_connections // 4),
            frame_timeout=min(FRAME_TIMEOUT, options.idle_timeout),
            idle_timeout=options.idle_timeout,
        )


class Holder(Protocol):
    """A connection as admission sees it."""

    peer_host: str
    started: float

    @property
    def progressed(self) -> bool:
        """Return whether it has completed a frame."""

    def abort(self, reason: str) -> None:
        """Drop the connection."""


class _Bucket:
    """A token bucket of frames."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = burst
        self.at = now

    def available(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens


class Admission:
    """Track open connections per address and which addresses are trusted."""

    def __init__(
        self, limits: Limits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Start with no connections and no trusted address."""
        self.limits = limits
        self._clock = clock
        self._open: dict[str, list[Holder]] = {}
        self._total = 0
        self._untrusted = 0
        self._trusted: OrderedDict[str, None] = OrderedDict()
        self._buckets: dict[str, _Bucket] = {}
        self._shared = _Bucket(limits.shared_burst, limits.shared_rate, clock())
        self.evicted = 0

    @property
    def untrusted_capacity(self) -> int:
        """Return the slots addresses without a valid record may share."""
        return max(1, self.limits.max_connections - self.limits.reserved)

    def is_trusted(self, host: str) -> bool:
        """Return whether this address has sent a valid record."""
        return host in self._trusted

    def trust(self, host: str) -> None:
        """Remember that this address sent a valid record."""
        if host in self._trusted:
            self._trusted.move_to_end(host)
            return
        self._trusted[host] = None
        held = len(self._open.get(host, ()))
        self._untrusted -= held
        while len(self._trusted) > MAX_TRUSTED:
            old, _ = self._trusted.popitem(last=False)
            self._untrusted += len(self._open.get(old, ()))

    def admit(self, holder: Holder) -> str | None:
        """Register a new connection; return why it is refused, or None."""
        host = holder.peer_host
        limits = self.limits
        held = self._open.get(host, [])
        if len(held) >= limits.per_address:
            return f"already {len(held)} open from this address (per-address limit)"
        trusted = host in self._trusted
        if (
            not trusted
            and self._untrusted >= self.untrusted_capacity
            and not self._evict_stalled()
        ):
            return (
                f"already {self._untrusted} open from unconfirmed addresses "
                f"({limits.reserved} slots kept for ECUs that sent a record; "
                "max_connections)"
            )
        if self._total >= limits.max_connections and not self._evict_stalled():
            return f"already {self._total} open (max_connections)"
        self._open.setdefault(host, []).append(holder)
        self._total += 1
        if not trusted:
            self._untrusted += 1
        return None

    def release(self, holder: Holder) -> None:
        """Forget a connection that ended."""
        host = holder.peer_host
        held = self._open.get(host)
        if held is None or holder not in held:
            return
        held.remove(holder)
        if not held:
            del self._open[host]
            self._buckets.pop(host, None)
        self._total -= 1
        if host not in self._trusted:
            self._untrusted -= 1

    def frame_allowance(self, host: str) -> int:
        """Return how many frames from this address may be decoded now."""
        now = self._clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = _Bucket(self.limits.frame_burst, self.limits.frame_rate, now)
            self._buckets[host] = bucket
        if host in self._trusted:
            factor = self.limits.trusted_factor
            bucket.burst = self.limits.frame_burst * factor
            bucket.rate = self.limits.frame_rate * factor
            return int(bucket.available(now))
        own = bucket.available(now)
        return int(min(own, self._shared.available(now)))

    def spend(self, host: str, frames: int) -> None:
        """Pay for frames decoded (after ``frame_allowance``)."""
        if frames <= 0:
            return
        bucket = self._buckets.get(host)
        if bucket is not None:
            bucket.tokens = max(0.0, bucket.tokens - frames)
        if host not in self._trusted:
            self._shared.tokens = max(0.0, self._shared.tokens - frames)

    def cut(self, framer: Framer, data: bytes, host: str) -> tuple[list[bytes], int]:
        """Cut frames from ``data`` within ``host``'s budget.

        Return the frames and how many bytes were skipped undecoded.
        """
        before = framer.skipped
        frames = framer.feed(data, self.frame_allowance(host))
        self.spend(host, len(frames))
        return frames, framer.skipped - before

    def deadline(
        self, last_progress: float, now: float, waiting: bool
    ) -> tuple[float, str | None]:
        """Return when to look at a connection again, or why to close it now.

        ``waiting``: it has completed no frame yet, or is in the middle of one.
        """
        limits = self.limits
        span = limits.frame_timeout if waiting else limits.idle_timeout
        if now >= last_progress + span:
            what = "without completing a frame" if waiting else "idle"
            return now, f"{what} for {span:g} s"
        # Look again at least every frame_timeout: a partial frame may start later.
        return min(last_progress + span, now + limits.frame_timeout), None

    def _evict_stalled(self) -> bool:
        """Abort the oldest untrusted connection without progress past the grace."""
        now = self._clock()
        victim: Holder | None = None
        for host, held in self._open.items():
            if host in self._trusted:
                continue
            for holder in held:
                if holder.progressed or now - holder.started < self.limits.grace:
                    continue
                if victim is None or holder.started < victim.started:
                    victim = holder
        if victim is None:
            return False
        self.release(victim)
        self.evicted += 1
        victim.abort("slot taken by a new connection: no frame completed yet")
        return True
