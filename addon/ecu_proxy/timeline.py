"""An ECU's own timeline: which records are current, and which timestamps are known.

Record timestamps are the ECU's local wall clock. The host clock cannot judge them
(a board without a real-time clock can be days behind before NTP), so a record is
judged against the ECU's own newest record, moved on by the time that passed
between the two arrivals:

* far ahead of that and of the host clock (more than a day): a clock glitch or a
  forgery; refused;
* hours ahead, arriving minutes after the newest: counted, shown, but it neither
  becomes the ECU's newest record nor starts a new day, so one glitch cannot freeze
  the live values and "today" until the real clock catches up;
* behind the newest: a re-sent (late) record, unless two of them in a row advance
  like the arrivals do: then the ECU clock stepped (back at the end of daylight
  saving time, or forward for good) and the timeline follows it.

Timestamps of counted records are kept with a fingerprint of the record's content,
so a timestamp repeated after the clock went back is a new record when the content
differs, and a duplicate when it is the same record sent again.
"""

from __future__ import annotations

import bisect
import enum
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .contract.codec import ContractError, decode, meta
from .wire import parse_wire_timestamp

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .models import DecodedFrame

# A record further ahead of the ECU's timeline than this is refused: ECU time is
# local time (UTC-12 to UTC+14), so no clock setting explains more.
MAX_AHEAD = timedelta(hours=26)
# Ahead by more than this (daylight saving moves one hour) is a glitch.
GLITCH_AHEAD = timedelta(hours=2)
# Arrivals closer than this are one burst (a backlog): order by timestamp only.
BURST = timedelta(seconds=60)
# Two records "advance like the arrivals" when the gaps differ by at most this.
STEP_MATCH = timedelta(minutes=2)


class Verdict(enum.Enum):
    """How a record relates to the ECU's timeline."""

    CURRENT = "current"  # the ECU's newest record
    GLITCH = "glitch"  # ahead: counted and shown, but not the newest
    LATE = "late"  # behind the newest: counted only
    STEP = "step"  # the ECU clock stepped: becomes the newest though earlier
    FUTURE = "future"  # refused


@dataclass(slots=True)
class Timeline:
    """Where an ECU's clock stands, by its newest record and that record's arrival."""

    newest: datetime | None = None  # ECU time of the newest record
    newest_arrival: datetime | None = None  # when it arrived (UTC)
    # The last record off the timeline: (its ECU time, its arrival); two in a row
    # that advance together mean the clock stepped (not saved).
    off: tuple[datetime, datetime] | None = field(
        default=None, metadata=meta(skip=True)
    )

    def __post_init__(self) -> None:
        """Refuse times of the wrong kind (from a state file): judge compares them."""
        if self.newest is not None and self.newest.tzinfo is not None:
            raise ContractError("timeline.newest: ECU time has no time zone")
        if self.newest_arrival is not None and self.newest_arrival.tzinfo is None:
            raise ContractError("timeline.newest_arrival: needs a time zone")

    def judge(self, at: datetime, arrival: datetime) -> Verdict:
        """Classify a (new, not duplicate) record of ECU time ``at``."""
        if self.newest is None or self.newest_arrival is None:
            return Verdict.CURRENT
        elapsed = arrival - self.newest_arrival
        expected = self.newest + max(elapsed, timedelta(0))
        ahead = at - expected
        # Refused only when ahead of the host clock too: a host clock far behind
        # (no real-time clock before NTP) must not drop the ECU's records.
        host_now = arrival.astimezone(UTC).replace(tzinfo=None)
        if ahead > MAX_AHEAD and at - host_now > MAX_AHEAD:
            return self._off(at, arrival, Verdict.FUTURE)
        if at >= self.newest:
            if ahead > GLITCH_AHEAD and elapsed >= BURST:
                return self._off(at, arrival, Verdict.GLITCH)
            self.off = None
            return Verdict.CURRENT
        return self._off(at, arrival, Verdict.LATE)

    def _off(self, at: datetime, arrival: datetime, verdict: Verdict) -> Verdict:
        previous, self.off = self.off, (at, arrival)
        if previous is None:
            return verdict
        gap = arrival - previous[1]
        if gap >= BURST and abs((at - previous[0]) - gap) <= STEP_MATCH:
            self.off = None
            return Verdict.STEP
        return verdict

    def advance(self, at: datetime, arrival: datetime) -> None:
        """Make a record the newest (CURRENT or STEP)."""
        self.newest = at
        self.newest_arrival = arrival


def fingerprint(frame: DecodedFrame) -> int:
    """Return a checksum of the ECU's counters in a record, to tell records apart.

    Only the ECU-level lifetime counter and power: a record sent again carries the
    same values, while the hour repeated after the clock went back carries a
    lifetime counter that has moved on (at night, when it has not, the records
    hold no energy either).
    """
    text = f"{frame.lifetime_energy_kwh!r}|{frame.power_w!r}"
    return zlib.crc32(text.encode())


class StampWindow:
    """Timestamps of counted records, oldest first, with their fingerprints.

    Adding the newest timestamp appends; an older one is placed by binary search;
    forgetting the oldest moves a start index and compacts now and then: no
    operation sorts or copies the whole set per record.
    """

    __slots__ = ("_head", "_marks", "_stamps")

    def __init__(self, stamps: list[str] | None = None) -> None:
        """Start with sorted ``stamps`` (their fingerprints unknown)."""
        self._stamps: list[str] = sorted(set(stamps or ()))
        self._head = 0
        # fingerprints per timestamp; None = unknown (saved by an older version)
        self._marks: dict[str, tuple[int | None, ...]] = dict.fromkeys(
            self._stamps, (None,)
        )

    def __len__(self) -> int:
        """Return how many distinct timestamps are kept."""
        return len(self._stamps) - self._head

    def __contains__(self, stamp: object) -> bool:
        """Return whether the timestamp is kept."""
        return stamp in self._marks

    def __iter__(self) -> Iterator[str]:
        """Iterate the timestamps, oldest first."""
        return iter(self._stamps[self._head :])

    def seen(self, stamp: str, mark: int) -> bool:
        """Return whether this very record (timestamp and fingerprint) is kept."""
        marks = self._marks.get(stamp)
        return marks is not None and (mark in marks or None in marks)

    def add(self, stamp: str, mark: int | None) -> None:
        """Keep a timestamp with the fingerprint of its record."""
        marks = self._marks.get(stamp)
        if marks is not None:
            if mark not in marks:
                self._marks[stamp] = (*marks, mark)
            return
        self._marks[stamp] = (mark,)
        if not len(self) or stamp > self._stamps[-1]:
            self._stamps.append(stamp)
        else:
            bisect.insort(self._stamps, stamp, lo=self._head)

    def oldest(self) -> str | None:
        """Return the oldest timestamp kept."""
        return self._stamps[self._head] if len(self) else None

    def newest_first(self, limit: int) -> list[str]:
        """Return up to ``limit`` timestamps, newest first."""
        start = max(self._head, len(self._stamps) - limit)
        return self._stamps[start:][::-1]

    def drop_oldest(self, count: int = 1) -> None:
        """Forget the ``count`` oldest timestamps."""
        end = min(self._head + count, len(self._stamps))
        for stamp in self._stamps[self._head : end]:
            del self._marks[stamp]
        self._head = end
        if self._head > 1024 and self._head * 2 > len(self._stamps):
            del self._stamps[: self._head]
            self._head = 0

    def drop_before(self, cutoff: str) -> None:
        """Forget every timestamp older than ``cutoff``."""
        end = bisect.bisect_left(self._stamps, cutoff, lo=self._head)
        self.drop_oldest(end - self._head)

    def to_json(self) -> dict[str, list[Any]]:
        """Return timestamps (repeated per fingerprint) and fingerprints, aligned."""
        stamps: list[str] = []
        marks: list[int | None] = []
        for stamp in self:
            for mark in self._marks[stamp]:
                stamps.append(stamp)
                marks.append(mark)
        return {"stamps": stamps, "marks": marks}

    @classmethod
    def from_json(cls, data: Any, path: str) -> StampWindow:
        """Rebuild from ``to_json``; a fingerprint None matches any record."""
        saved = decode(_SavedWindow, data, path)
        if len(saved.marks) != len(saved.stamps):
            raise ContractError(f"{path}: stamps and marks differ in length")
        window = cls(saved.stamps)
        window._marks = {}
        pairs = zip(saved.stamps, saved.marks, strict=True)
        for index, (stamp, mark) in enumerate(pairs):
            # isdigit() also passes full-width and other Unicode digits
            if not stamp.isascii() or parse_wire_timestamp(stamp) is None:
                raise ContractError(f"{path}.stamps[{index}]: not a record time")
            if mark is not None and not 0 <= mark < 2**32:
                raise ContractError(f"{path}.marks[{index}]: not a CRC-32")
            window._marks[stamp] = (*window._marks.get(stamp, ()), mark)
        return window


@dataclass(frozen=True, slots=True)
class _SavedWindow:
    """The saved form of a StampWindow."""

    stamps: list[str]
    marks: list[int | None]
