"""Live state of ECUs and inverters, with energy accounting, built from data records.

Everything here is pure bookkeeping: no I/O, no clock, no asyncio. The hub feeds it
decoded data records and upload outcomes; the storage module persists what
``LiveState.to_persisted`` returns.

Energy is kept in integer milliwatt-hours (the wire gives per-channel round energy in
kWh x 10^6, i.e. mWh), so sums are exact and totals never drift; the state document
shows kWh.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .decoder import format_wire_timestamp as wire_time
from .decoder import parse_wire_timestamp
from .models import DecodedFrame, Inverter, UpstreamReport, UpstreamResult
from .peaks import EcuPeaks

_LOGGER = logging.getLogger(__name__)

DEDUPE_WINDOW = timedelta(days=14)
# A lifetime counter below ours is a glitch or a re-sent old value, unless this many
# newer records in a row (an hour of uploads) agree: then the ECU counter was reset.
LIFETIME_RESET_RECORDS = 12
# ECU time is local wall-clock time (UTC-12 to UTC+14); a record stamped further
# ahead of its arrival than this is a clock glitch and would freeze all counting.
MAX_CLOCK_AHEAD = timedelta(hours=26)
# More ECUs than any installation has: beyond this, new ids are refused so that
# stray or forged uploads cannot grow the state without end.
MAX_ECUS = 32
# Hard cap per ECU on remembered record timestamps (14 days of 1-minute records).
MAX_SEEN = 14 * 24 * 60


class StateFormatError(ValueError):
    """A persisted state document does not have the expected shape."""


class RecordStatus(enum.StrEnum):
    """Why a data record was or was not applied."""

    NEW = "new"
    LATE = "late"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"
    FUTURE = "future"
    TOO_MANY_ECUS = "too_many_ecus"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """What applying one data record changed."""

    ecu_id: str | None
    status: RecordStatus
    new_ecu: bool = False
    added_inverters: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """Return whether the record changed the state."""
        return self.status in (RecordStatus.NEW, RecordStatus.LATE)

    @property
    def late(self) -> bool:
        """Return whether the record was older than the newest one seen."""
        return self.status == RecordStatus.LATE


def kwh(mwh: int) -> float:
    """Convert integer milliwatt-hours to kWh for display."""
    return round(mwh / 1_000_000, 6)


def _wh_to_mwh(wh: float | None) -> int:
    """Convert a round energy in Wh to non-negative integer mWh (garbage counts 0)."""
    if wh is None or not math.isfinite(wh) or wh <= 0:
        return 0
    return round(wh * 1000)


def _finite(value: float | None) -> float | None:
    """Return the value, or None for NaN/infinity (JSON cannot carry them)."""
    return value if value is None or math.isfinite(value) else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(slots=True)
class ChannelState:
    """One DC input of an inverter: latest values and energy counters."""

    channel: int
    dc_voltage_v: float | None = None
    dc_current_a: float | None = None
    power_w: float | None = None
    today_mwh: int = 0
    total_mwh: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the state-document form."""
        return {
            "channel": self.channel,
            "dc_voltage_v": self.dc_voltage_v,
            "dc_current_a": self.dc_current_a,
            "power_w": self.power_w,
            "energy_today_kwh": kwh(self.today_mwh),
            "energy_total_kwh": kwh(self.total_mwh),
        }

    def to_persisted(self) -> dict[str, Any]:
        """Return the persisted form."""
        return {
            "channel": self.channel,
            "dc_voltage_v": self.dc_voltage_v,
            "dc_current_a": self.dc_current_a,
            "power_w": self.power_w,
            "today_mwh": self.today_mwh,
            "total_mwh": self.total_mwh,
        }

    @classmethod
    def from_persisted(cls, raw: Any) -> ChannelState:
        """Rebuild from the persisted form."""
        data = _mapping(raw, "channel")
        return cls(
            channel=_int(data, "channel"),
            dc_voltage_v=_opt_float(data, "dc_voltage_v"),
            dc_current_a=_opt_float(data, "dc_current_a"),
            power_w=_opt_float(data, "power_w"),
            today_mwh=_int(data, "today_mwh"),
            total_mwh=_int(data, "total_mwh"),
        )


@dataclass(slots=True)
class InverterState:
    """One inverter: latest values, online flag and energy counters."""

    id: str
    type_code: str
    family: str
    online: bool = False
    last_seen: datetime | None = None
    last_record_at: datetime | None = None
    ac_voltage_v: float | None = None
    phase_voltages_v: tuple[float, ...] | None = None
    frequency_hz: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    raw: str | None = None
    today_mwh: int = 0
    total_mwh: int = 0
    channels: dict[int, ChannelState] = field(default_factory=dict)

    def take_values(self, inv: Inverter, received_at: datetime, at: datetime) -> None:
        """Copy the live values of a record's inverter block."""
        self.type_code = inv.type_code
        self.family = inv.family
        self.last_seen = received_at
        self.last_record_at = at
        self.ac_voltage_v = _finite(inv.ac_voltage_v)
        self.phase_voltages_v = (
            tuple(v if math.isfinite(v) else 0.0 for v in inv.phase_voltages_v)
            if inv.phase_voltages_v
            else None
        )
        self.frequency_hz = _finite(inv.frequency_hz)
        self.temperature_c = _finite(inv.temperature_c)
        self.power_w = _finite(inv.power_w)
        self.raw = inv.raw
        for ch in inv.channels:
            state = self.channel(ch.channel)
            state.dc_voltage_v = _finite(ch.dc_voltage_v)
            state.dc_current_a = _finite(ch.dc_current_a)
            state.power_w = _finite(ch.power_w)

    def channel(self, number: int) -> ChannelState:
        """Return the channel state, creating it on first use."""
        state = self.channels.get(number)
        if state is None:
            state = self.channels[number] = ChannelState(number)
        return state

    def reset_today(self) -> None:
        """Zero the daily counters of the inverter and its channels."""
        self.today_mwh = 0
        for ch in self.channels.values():
            ch.today_mwh = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the state-document form."""
        return {
            "id": self.id,
            "type_code": self.type_code,
            "family": self.family,
            "online": self.online,
            "last_seen": _iso(self.last_seen),
            "last_record_at": _iso(self.last_record_at),
            "ac_voltage_v": self.ac_voltage_v,
            "phase_voltages_v": (
                list(self.phase_voltages_v) if self.phase_voltages_v else None
            ),
            "frequency_hz": self.frequency_hz,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "energy_today_kwh": kwh(self.today_mwh),
            "energy_total_kwh": kwh(self.total_mwh),
            "raw": self.raw,
            "channels": [self.channels[n].as_dict() for n in sorted(self.channels)],
        }

    def to_persisted(self) -> dict[str, Any]:
        """Return the persisted form."""
        out = self.as_dict()
        del out["energy_today_kwh"], out["energy_total_kwh"]
        out["today_mwh"] = self.today_mwh
        out["total_mwh"] = self.total_mwh
        out["channels"] = [
            self.channels[n].to_persisted() for n in sorted(self.channels)
        ]
        return out

    @classmethod
    def from_persisted(cls, raw: Any) -> InverterState:
        """Rebuild from the persisted form."""
        data = _mapping(raw, "inverter")
        phases = data.get("phase_voltages_v")
        if phases is not None and (
            not isinstance(phases, list)
            or not all(isinstance(v, int | float) for v in phases)
        ):
            raise StateFormatError("inverter phase_voltages_v must be a list")
        channels = [ChannelState.from_persisted(c) for c in _list(data, "channels")]
        return cls(
            id=_str(data, "id"),
            type_code=_str(data, "type_code"),
            family=_str(data, "family"),
            online=bool(data.get("online", False)),
            last_seen=_opt_time(data, "last_seen"),
            last_record_at=_opt_time(data, "last_record_at"),
            ac_voltage_v=_opt_float(data, "ac_voltage_v"),
            phase_voltages_v=tuple(float(v) for v in phases) if phases else None,
            frequency_hz=_opt_float(data, "frequency_hz"),
            temperature_c=_opt_float(data, "temperature_c"),
            power_w=_opt_float(data, "power_w"),
            raw=_opt_str(data, "raw"),
            today_mwh=_int(data, "today_mwh"),
            total_mwh=_int(data, "total_mwh"),
            channels={c.channel: c for c in channels},
        )


@dataclass(slots=True)
class UpstreamState:
    """How the last upload of an ECU to EMA went."""

    result: UpstreamResult | None = None
    at: datetime | None = None
    rtt_ms: float | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the state-document form (also the persisted form)."""
        return {
            "result": self.result.value if self.result else None,
            "at": _iso(self.at),
            "rtt_ms": self.rtt_ms,
            "detail": self.detail,
        }

    @classmethod
    def from_persisted(cls, raw: Any) -> UpstreamState:
        """Rebuild from the persisted form."""
        data = _mapping(raw, "upstream")
        result = _opt_str(data, "result")
        try:
            parsed = UpstreamResult(result) if result is not None else None
        except ValueError as err:
            raise StateFormatError(f"unknown upstream result {result!r}") from err
        return cls(
            result=parsed,
            at=_opt_time(data, "at"),
            rtt_ms=_opt_float(data, "rtt_ms"),
            detail=_opt_str(data, "detail"),
        )


@dataclass(slots=True)
class EcuState:
    """One ECU: latest record values, energy today, known inverters, upload status."""

    ecu_id: str
    model: str | None = None
    last_seen: datetime | None = None
    last_record_at: datetime | None = None
    power_w: float | None = None
    lifetime_energy_kwh: float | None = None
    inverter_count: int | None = None
    warnings: tuple[str, ...] = ()
    today: date | None = None
    today_mwh: int = 0
    upstream: UpstreamState = field(default_factory=UpstreamState)
    inverters: dict[str, InverterState] = field(default_factory=dict)
    # Wire timestamps of records already counted, for deduplication.
    seen: set[str] = field(default_factory=set)
    newest: str | None = None
    # Newer records in a row whose lifetime counter was below ours (see
    # LIFETIME_RESET_RECORDS).
    lifetime_lower_streak: int = 0
    # Peak power and energy this hour (peaks.py).
    peaks: EcuPeaks = field(default_factory=EcuPeaks)

    @property
    def inverters_online(self) -> int:
        """Return how many inverters were in the newest record."""
        return sum(1 for inv in self.inverters.values() if inv.online)

    def as_dict(self) -> dict[str, Any]:
        """Return the state-document form."""
        return self.peaks.add_to(self._as_dict())

    def _as_dict(self) -> dict[str, Any]:
        return {
            "ecu_id": self.ecu_id,
            "model": self.model,
            "last_seen": _iso(self.last_seen),
            "last_record_at": _iso(self.last_record_at),
            "power_w": self.power_w,
            "lifetime_energy_kwh": self.lifetime_energy_kwh,
            "energy_today_kwh": kwh(self.today_mwh),
            "today": self.today.isoformat() if self.today else None,
            "inverter_count": self.inverter_count,
            "inverters_online": self.inverters_online,
            "warnings": list(self.warnings),
            "upstream": self.upstream.as_dict(),
            "inverters": {
                inv_id: self.inverters[inv_id].as_dict()
                for inv_id in sorted(self.inverters)
            },
        }

    def to_persisted(self) -> dict[str, Any]:
        """Return the persisted form."""
        return {
            "ecu_id": self.ecu_id,
            "model": self.model,
            "last_seen": _iso(self.last_seen),
            "last_record_at": _iso(self.last_record_at),
            "power_w": self.power_w,
            "lifetime_energy_kwh": self.lifetime_energy_kwh,
            "inverter_count": self.inverter_count,
            "warnings": list(self.warnings),
            "today": self.today.isoformat() if self.today else None,
            "today_mwh": self.today_mwh,
            "upstream": self.upstream.as_dict(),
            "inverters": [
                self.inverters[i].to_persisted() for i in sorted(self.inverters)
            ],
            "seen": sorted(self.seen),
            "lifetime_lower_streak": self.lifetime_lower_streak,
            "peaks": self.peaks.to_persisted(),
        }

    @classmethod
    def from_persisted(cls, raw: Any) -> EcuState:
        """Rebuild from the persisted form."""
        data = _mapping(raw, "ecu")
        today = _opt_str(data, "today")
        try:
            today_date = date.fromisoformat(today) if today else None
        except ValueError as err:
            raise StateFormatError(f"bad ECU date {today!r}") from err
        seen = _list(data, "seen")
        if not all(isinstance(s, str) and _is_wire_time(s) for s in seen):
            raise StateFormatError("ECU seen timestamps must be 14-digit strings")
        warnings = _list(data, "warnings")
        inverters = [InverterState.from_persisted(i) for i in _list(data, "inverters")]
        count = data.get("inverter_count")
        if count is not None and not isinstance(count, int):
            raise StateFormatError("inverter_count must be an integer")
        ecu = cls(
            ecu_id=_str(data, "ecu_id"),
            model=_opt_str(data, "model"),
            last_seen=_opt_time(data, "last_seen"),
            last_record_at=_opt_time(data, "last_record_at"),
            power_w=_opt_float(data, "power_w"),
            lifetime_energy_kwh=_opt_float(data, "lifetime_energy_kwh"),
            inverter_count=count,
            warnings=tuple(str(w) for w in warnings),
            today=today_date,
            today_mwh=_int(data, "today_mwh"),
            upstream=UpstreamState.from_persisted(data.get("upstream", {})),
            inverters={inv.id: inv for inv in inverters},
            seen=set(seen),
            newest=max(seen) if seen else None,
            lifetime_lower_streak=_int(data, "lifetime_lower_streak"),
            peaks=EcuPeaks.from_persisted(data.get("peaks")),
        )
        return ecu

    def remember(self, stamp: str) -> None:
        """Record a counted timestamp and forget those out of the window."""
        self.seen.add(stamp)
        if self.newest is None or stamp > self.newest:
            previous = self.newest
            self.newest = stamp
            if previous is None or previous[:8] != stamp[:8]:
                self._prune()
        if len(self.seen) > MAX_SEEN:
            for old in sorted(self.seen)[: len(self.seen) - MAX_SEEN]:
                self.seen.discard(old)

    def oldest_countable(self) -> str | None:
        """Return the oldest timestamp that deduplication still covers."""
        if self.newest is None:
            return None
        if len(self.seen) >= MAX_SEEN:
            return min(self.seen)
        newest = parse_wire_timestamp(self.newest)
        assert newest is not None  # only valid wire times are stored
        return wire_time(newest - DEDUPE_WINDOW)

    def _prune(self) -> None:
        cutoff = self.oldest_countable()
        if cutoff is not None:
            self.seen = {s for s in self.seen if s >= cutoff}


class LiveState:
    """All ECUs this service has seen."""

    def __init__(self, ecus: dict[str, EcuState] | None = None) -> None:
        """Start with the given ECUs (or none)."""
        self.ecus: dict[str, EcuState] = ecus or {}
        self._refused: set[str] = set()  # ids refused by MAX_ECUS, logged once

    def ecu(self, ecu_id: str) -> EcuState:
        """Return the ECU's state, creating it on first use."""
        state = self.ecus.get(ecu_id)
        if state is None:
            state = self.ecus[ecu_id] = EcuState(ecu_id)
        return state

    def apply_record(self, frame: DecodedFrame, received_at: datetime) -> RecordOutcome:
        """Apply one decoded data record received at ``received_at`` (UTC)."""
        ecu_id, at = frame.ecu_id, frame.timestamp
        if not ecu_id or at is None:
            return RecordOutcome(ecu_id, RecordStatus.INCOMPLETE)
        if at - received_at.astimezone(UTC).replace(tzinfo=None) > MAX_CLOCK_AHEAD:
            _LOGGER.warning(
                "ECU %s: ignoring record stamped %s, too far ahead of its arrival "
                "at %s (ECU clock wrong?)",
                ecu_id,
                at.isoformat(),
                received_at.isoformat(),
            )
            return RecordOutcome(ecu_id, RecordStatus.FUTURE)
        new_ecu = ecu_id not in self.ecus
        if new_ecu and len(self.ecus) >= MAX_ECUS:
            if ecu_id not in self._refused:
                if len(self._refused) < MAX_ECUS:
                    self._refused.add(ecu_id)
                _LOGGER.warning(
                    "Ignoring ECU %s: already tracking %d ECUs (set allowed_ecu_ids "
                    "to choose which)",
                    ecu_id,
                    MAX_ECUS,
                )
            return RecordOutcome(ecu_id, RecordStatus.TOO_MANY_ECUS)
        ecu = self.ecu(ecu_id)
        stamp = wire_time(at)
        if stamp in ecu.seen:
            return RecordOutcome(ecu_id, RecordStatus.DUPLICATE)
        oldest = ecu.oldest_countable()
        if oldest is not None and stamp < oldest:
            _LOGGER.warning(
                "ECU %s: ignoring record of %s, older than the %s kept for "
                "deduplication",
                ecu_id,
                at.isoformat(),
                oldest,
            )
            return RecordOutcome(ecu_id, RecordStatus.TOO_OLD)
        late = ecu.newest is not None and stamp < ecu.newest
        added = self._count_energy(ecu, frame, at)
        ecu.peaks.note_record(frame, at)
        if late:
            self._note_late_lifetime(ecu, frame)
        else:
            self._take_live_values(ecu, frame, at, received_at)
        for inv_id in added:
            inv = ecu.inverters[inv_id]
            if late:  # known from now on, but not part of the newest record
                source = next(i for i in frame.inverters if i.id == inv_id)
                inv.take_values(source, received_at, at)
                inv.online = False
        ecu.last_seen = received_at
        ecu.remember(stamp)
        return RecordOutcome(
            ecu_id,
            RecordStatus.LATE if late else RecordStatus.NEW,
            new_ecu=new_ecu,
            added_inverters=tuple(added),
        )

    def apply_upstream(self, report: UpstreamReport) -> str | None:
        """Apply an upload outcome; return the ECU id it was for, if known."""
        if not report.ecu_id:
            return None
        if report.ecu_id not in self.ecus and len(self.ecus) >= MAX_ECUS:
            return None
        upstream = self.ecu(report.ecu_id).upstream
        upstream.result = report.result
        upstream.at = report.at
        upstream.rtt_ms = round(report.rtt_ms, 1) if report.rtt_ms is not None else None
        upstream.detail = report.detail
        return report.ecu_id

    def is_stored(self, ecu_id: str, timestamp: str) -> bool:
        """Return whether a record of the ECU with this wire timestamp was counted."""
        ecu = self.ecus.get(ecu_id)
        return ecu is not None and timestamp in ecu.seen

    def stored_timestamps(self, ecu_id: str, limit: int = 99) -> list[str]:
        """Return wire timestamps of counted records of an ECU, newest first."""
        ecu = self.ecus.get(ecu_id)
        if ecu is None or limit <= 0:
            return []
        return sorted(ecu.seen, reverse=True)[:limit]

    def as_dict(self) -> dict[str, Any]:
        """Return the ``ecus`` part of the state document."""
        return {ecu_id: self.ecus[ecu_id].as_dict() for ecu_id in sorted(self.ecus)}

    def to_persisted(self) -> dict[str, Any]:
        """Return the ``ecus`` part of the persisted document."""
        return {
            ecu_id: self.ecus[ecu_id].to_persisted() for ecu_id in sorted(self.ecus)
        }

    @classmethod
    def from_persisted(cls, raw: Any) -> LiveState:
        """Rebuild from the ``ecus`` part of a persisted document."""
        data = _mapping(raw, "ecus")
        ecus: dict[str, EcuState] = {}
        for key, value in data.items():
            ecu = EcuState.from_persisted(value)
            if ecu.ecu_id != key:
                raise StateFormatError(f"ECU entry {key!r} holds {ecu.ecu_id!r}")
            ecus[key] = ecu
        return cls(ecus)

    @staticmethod
    def _count_energy(ecu: EcuState, frame: DecodedFrame, at: datetime) -> list[str]:
        """Add the record's round energies; return ids of inverters seen first now."""
        day = at.date()
        if ecu.today is None or day > ecu.today:
            ecu.today = day
            ecu.today_mwh = 0
            for known in ecu.inverters.values():
                known.reset_today()
        counts_today = day == ecu.today
        added: list[str] = []
        for block in frame.inverters:
            inv = ecu.inverters.get(block.id)
            if inv is None:
                inv = InverterState(block.id, block.type_code, block.family)
                ecu.inverters[block.id] = inv
                added.append(block.id)
            if block.channels:
                inverter_mwh = 0
                for ch in block.channels:
                    mwh = _wh_to_mwh(ch.round_energy_wh)
                    state = inv.channel(ch.channel)
                    state.total_mwh += mwh
                    if counts_today:
                        state.today_mwh += mwh
                    inverter_mwh += mwh
            else:
                inverter_mwh = _wh_to_mwh(block.round_energy_wh)
            inv.total_mwh += inverter_mwh
            if counts_today:
                inv.today_mwh += inverter_mwh
                ecu.today_mwh += inverter_mwh
        return added

    @staticmethod
    def _take_live_values(
        ecu: EcuState, frame: DecodedFrame, at: datetime, received_at: datetime
    ) -> None:
        """Make the record the ECU's current picture."""
        if frame.ecu_model:
            ecu.model = frame.ecu_model
        ecu.last_record_at = at
        ecu.power_w = _finite(frame.power_w)
        ecu.inverter_count = (
            frame.inverter_count
            if frame.inverter_count is not None
            else len(frame.inverters)
        )
        ecu.warnings = frame.warnings
        lifetime = frame.lifetime_energy_kwh
        if lifetime is not None and math.isfinite(lifetime):
            current = ecu.lifetime_energy_kwh
            if current is None or lifetime >= current:
                ecu.lifetime_energy_kwh = lifetime
                ecu.lifetime_lower_streak = 0
            elif ecu.lifetime_lower_streak + 1 >= LIFETIME_RESET_RECORDS:
                _LOGGER.warning(
                    "ECU %s: lifetime energy has read %.1f kWh, below the %.1f kWh "
                    "seen before, for %d new records in a row; taking it as a "
                    "counter reset",
                    ecu.ecu_id,
                    lifetime,
                    current,
                    LIFETIME_RESET_RECORDS,
                )
                ecu.lifetime_energy_kwh = lifetime
                ecu.lifetime_lower_streak = 0
            else:
                ecu.lifetime_lower_streak += 1
                _LOGGER.warning(
                    "ECU %s: ignoring lifetime energy %.1f kWh of record %s, lower "
                    "than the %.1f kWh already seen",
                    ecu.ecu_id,
                    lifetime,
                    at.isoformat(),
                    current,
                )
        present = {block.id for block in frame.inverters}
        for inv_id, inv in ecu.inverters.items():
            inv.online = inv_id in present
        for block in frame.inverters:
            ecu.inverters[block.id].take_values(block, received_at, at)

    @staticmethod
    def _note_late_lifetime(ecu: EcuState, frame: DecodedFrame) -> None:
        """Log that a late record's lifetime counter is not used."""
        if frame.lifetime_energy_kwh is not None:
            _LOGGER.debug(
                "ECU %s: late record of %s; its lifetime energy %.1f kWh is not used",
                ecu.ecu_id,
                frame.timestamp.isoformat() if frame.timestamp else "?",
                frame.lifetime_energy_kwh,
            )


# --- helpers for reading persisted documents -------------------------------------


def _is_wire_time(text: str) -> bool:
    return parse_wire_timestamp(text) is not None


def _mapping(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise StateFormatError(f"{what} must be an object")
    return raw


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise StateFormatError(f"{key} must be a list")
    return value


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise StateFormatError(f"{key} must be a string")
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise StateFormatError(f"{key} must be a string or null")
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateFormatError(f"{key} must be a non-negative integer")
    return value


def _opt_float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateFormatError(f"{key} must be a number or null")
    return value


def _opt_time(data: dict[str, Any], key: str) -> datetime | None:
    value = _opt_str(data, key)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as err:
        raise StateFormatError(f"{key} is not an ISO time: {value!r}") from err
