"""Figures derived from an ECU's records: peak power today and ever, energy this hour.

Pure bookkeeping like the state module, which keeps one ``EcuPeaks`` per ECU and
feeds it every counted record; document.py shows its figures in the state
document. Days and hours are those of the ECU's own clock (the record timestamps,
local wall-clock time), the same days the state's "energy today" uses. A record
counts towards the hour its timestamp falls in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from .contract.codec import meta
from .storage import COUNTER

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .models import Inverter


# Saved peaks: a power reading as ``note`` keeps them (not negative, plausible).
_PEAK = meta(minimum=0, maximum=1e15)


def _power(value: float | None) -> float | None:
    """Return a usable power reading (finite, not negative), else None."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _round_mwh(inverter: Inverter) -> int:
    """Return an inverter block's round energy in whole mWh (garbage counts 0)."""
    readings: list[float | None] = (
        [ch.round_energy_wh for ch in inverter.channels]
        if inverter.channels
        else [inverter.round_energy_wh]
    )
    return sum(
        round(wh * 1000)
        for wh in readings
        if wh is not None and math.isfinite(wh) and wh > 0
    )


@dataclass(slots=True)
class Peak:
    """Highest power of the current day and of all time, in watts."""

    today_w: float | None = field(default=None, metadata=_PEAK)
    ever_w: float | None = field(default=None, metadata=_PEAK)

    def note(self, power_w: float | None, *, today: bool) -> None:
        """Take a power reading; ``today`` is False for a record of an older day."""
        power = _power(power_w)
        if power is None:
            return
        if today and (self.today_w is None or power > self.today_w):
            self.today_w = power
        if self.ever_w is None or power > self.ever_w:
            self.ever_w = power

    def as_dict(self) -> dict[str, float | None]:
        """Return the state-document fields (also the persisted form)."""
        return {"peak_power_today_w": self.today_w, "peak_power_ever_w": self.ever_w}


@dataclass(slots=True)
class EcuPeaks:
    """Peaks of one ECU and its inverters, and the ECU's energy this hour."""

    day: date | None = None
    hour: datetime | None = None  # start of the hour being counted (ECU time)
    hour_mwh: int = field(default=0, metadata=COUNTER)
    ecu: Peak = field(default_factory=Peak)
    inverters: dict[str, Peak] = field(default_factory=dict)

    def note_record(
        self, power_w: float | None, blocks: Sequence[Inverter], at: datetime
    ) -> None:
        """Take a counted record stamped ``at`` (ECU time), new or late.

        ``blocks`` are the record's inverters the state tracks: peaks are kept
        for no inverter the state has not admitted.
        """
        if self.day is None or at.date() > self.day:
            self.day = at.date()
            self.ecu.today_w = None
            for peak in self.inverters.values():
                peak.today_w = None
        today = at.date() == self.day
        self.ecu.note(power_w, today=today)
        for block in blocks:
            peak = self.inverters.setdefault(block.id, Peak())
            peak.note(block.power_w, today=today)
        hour = at.replace(minute=0, second=0, microsecond=0)
        if self.hour is None or hour > self.hour:
            self.hour = hour
            self.hour_mwh = 0
        if hour == self.hour:
            self.hour_mwh += sum(_round_mwh(block) for block in blocks)
