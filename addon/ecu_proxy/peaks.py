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
from typing import TYPE_CHECKING, Any

from .persisted import StateFormatError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .models import Inverter


class PeaksFormatError(StateFormatError):
    """A persisted peaks document does not have the expected shape."""


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

    today_w: float | None = None
    ever_w: float | None = None

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

    @classmethod
    def from_persisted(cls, raw: Any) -> Peak:
        """Rebuild from the persisted form."""
        data = _mapping(raw)
        return cls(
            today_w=_opt_power(data, "peak_power_today_w"),
            ever_w=_opt_power(data, "peak_power_ever_w"),
        )


@dataclass(slots=True)
class EcuPeaks:
    """Peaks of one ECU and its inverters, and the ECU's energy this hour."""

    day: date | None = None
    hour: datetime | None = None  # start of the hour being counted (ECU time)
    hour_mwh: int = 0
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

    def to_persisted(self) -> dict[str, Any]:
        """Return the persisted form."""
        return {
            "day": self.day.isoformat() if self.day else None,
            "hour": self.hour.isoformat() if self.hour else None,
            "hour_mwh": self.hour_mwh,
            "ecu": self.ecu.as_dict(),
            "inverters": {
                i: self.inverters[i].as_dict() for i in sorted(self.inverters)
            },
        }

    @classmethod
    def from_persisted(cls, raw: Any) -> EcuPeaks:
        """Rebuild from the persisted form; None (an older state file) is empty."""
        if raw is None:
            return cls()
        data = _mapping(raw)
        hour_mwh = data.get("hour_mwh", 0)
        if isinstance(hour_mwh, bool) or not isinstance(hour_mwh, int) or hour_mwh < 0:
            raise PeaksFormatError("hour_mwh must be a non-negative integer")
        try:
            day = date.fromisoformat(data["day"]) if data.get("day") else None
            hour = datetime.fromisoformat(data["hour"]) if data.get("hour") else None
        except (TypeError, ValueError) as err:
            raise PeaksFormatError(f"bad peaks day or hour: {err}") from err
        inverters = _mapping(data.get("inverters", {}))
        return cls(
            day=day,
            hour=hour,
            hour_mwh=hour_mwh,
            ecu=Peak.from_persisted(data.get("ecu", {})),
            inverters={
                str(inv_id): Peak.from_persisted(peak)
                for inv_id, peak in inverters.items()
            },
        )


def _mapping(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PeaksFormatError("peaks must be an object")
    return raw


def _opt_power(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PeaksFormatError(f"{key} must be a number or null")
    return _power(value)
