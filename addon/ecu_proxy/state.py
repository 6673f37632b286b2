"""Live state of ECUs and inverters, with energy accounting, built from data records.

Everything here is pure bookkeeping: no I/O, no clock, no asyncio. The hub feeds it
decoded data records and upload outcomes; the state file (``state_file``) saves the
data classes as they are, through the contract codec: a field is saved unless its
metadata says ``skip``, and ``COUNTER``/``READING`` bound what a file may hold.

Energy is kept in integer milliwatt-hours (the wire gives per-channel round energy in
kWh x 10^6, i.e. mWh), so sums are exact and totals never drift; the state document
shows kWh.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from .contract.codec import ContractError, decode, encode, meta
from .ecu_admission import MAX_ECUS, Admission
from .lifetime import LIFETIME_RESET_RECORDS, next_lifetime
from .lograte import RateLimitedLog
from .models import DecodedFrame, Inverter, UpstreamReport, UpstreamResult
from .peaks import EcuPeaks
from .storage import COUNTER, READING
from .timeline import StampWindow, Timeline, Verdict, fingerprint
from .wire import format_wire_timestamp as wire_time

__all__ = [
    "LIFETIME_RESET_RECORDS",
    "MAX_ECUS",
    "LiveState",
    "RecordOutcome",
    "RecordStatus",
]

_LOGGER = logging.getLogger(__name__)
_LIMITED = RateLimitedLog(_LOGGER)

DEDUPE_WINDOW = timedelta(days=14)
# Hard cap per ECU on remembered record timestamps (14 days of 1-minute records).
MAX_SEEN = 14 * 24 * 60
# Over all ECUs: bounds the state file (about 30 bytes per timestamp) whatever
# ECUs forged records create; the ECU remembering most gives way first.
MAX_SEEN_TOTAL = 2 * MAX_SEEN


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
    evicted_ecus: tuple[str, ...] = ()  # unconfirmed ECUs dropped to make room

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

    channel: int = field(metadata=COUNTER)
    dc_voltage_v: float | None = field(default=None, metadata=READING)
    dc_current_a: float | None = field(default=None, metadata=READING)
    power_w: float | None = field(default=None, metadata=READING)
    today_mwh: int = field(default=0, metadata=COUNTER)
    total_mwh: int = field(default=0, metadata=COUNTER)


@dataclass(slots=True)
class InverterState:
    """One inverter: latest values, online flag and energy counters."""

    id: str
    type_code: str
    family: str
    online: bool = False
    last_seen: datetime | None = None
    last_record_at: datetime | None = None
    ac_voltage_v: float | None = field(default=None, metadata=READING)
    phase_voltages_v: tuple[float, ...] | None = None
    frequency_hz: float | None = field(default=None, metadata=READING)
    temperature_c: float | None = field(default=None, metadata=READING)
    power_w: float | None = field(default=None, metadata=READING)
    raw: str | None = None
    today_mwh: int = field(default=0, metadata=COUNTER)
    total_mwh: int = field(default=0, metadata=COUNTER)
    channels: dict[int, ChannelState] = field(default_factory=dict)
    # counted records it was in (see ecu_admission)
    records: int = field(default=0, metadata=COUNTER)

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


@dataclass(slots=True)
class UpstreamState:
    """How the last upload of an ECU to EMA went."""

    result: UpstreamResult | None = None
    at: datetime | None = None
    rtt_ms: float | None = field(default=None, metadata=READING)
    detail: str | None = None


@dataclass(slots=True)
class EcuState:
    """One ECU: latest record values, energy today, known inverters, upload status."""

    ecu_id: str
    model: str | None = None
    last_seen: datetime | None = None
    last_record_at: datetime | None = None
    power_w: float | None = field(default=None, metadata=READING)
    lifetime_energy_kwh: float | None = field(default=None, metadata=READING)
    inverter_count: int | None = None
    warnings: tuple[str, ...] = ()
    today: date | None = None
    today_mwh: int = field(default=0, metadata=COUNTER)
    upstream: UpstreamState = field(default_factory=UpstreamState)
    inverters: dict[str, InverterState] = field(default_factory=dict)
    # Wire timestamps of records already counted, for deduplication.
    seen: StampWindow = field(default_factory=StampWindow)
    timeline: Timeline = field(default_factory=Timeline)
    # Newer records in a row whose lifetime counter was below ours (see
    # LIFETIME_RESET_RECORDS).
    lifetime_lower_streak: int = field(default=0, metadata=COUNTER)
    # counted records (see ecu_admission)
    records: int = field(default=0, metadata=COUNTER)
    # The last record refused as far ahead, with its arrival: counted after all if
    # the next record shows the ECU clock really moved (not saved).
    held: tuple[DecodedFrame, datetime] | None = field(
        default=None, compare=False, metadata=meta(skip=True)
    )
    # Peak power and energy this hour (peaks.py).
    peaks: EcuPeaks = field(default_factory=EcuPeaks)

    @property
    def newest(self) -> str | None:
        """Return the wire time of the newest record on the ECU's timeline."""
        newest = self.timeline.newest
        return wire_time(newest) if newest is not None else None

    @property
    def inverters_online(self) -> int:
        """Return how many inverters were in the newest record."""
        return sum(1 for inv in self.inverters.values() if inv.online)

    def remember(self, stamp: str, mark: int | None = None) -> None:
        """Record a counted timestamp and forget those out of the window."""
        self.seen.add(stamp, mark)
        if len(self.seen) > MAX_SEEN:
            self.seen.drop_oldest(len(self.seen) - MAX_SEEN)

    def make_newest(self, at: datetime, arrival: datetime) -> None:
        """Move the ECU's timeline to a record; prune the window on a new day."""
        previous = self.timeline.newest
        self.timeline.advance(at, arrival)
        if previous is None or previous.date() != at.date():
            cutoff = self.oldest_countable()
            if cutoff is not None:
                self.seen.drop_before(cutoff)

    def oldest_countable(self) -> str | None:
        """Return the oldest timestamp that deduplication still covers."""
        newest = self.timeline.newest
        if newest is None:
            return None
        if len(self.seen) >= MAX_SEEN:
            return self.seen.oldest()
        return wire_time(newest - DEDUPE_WINDOW)


class LiveState:
    """All ECUs this service has seen."""

    def __init__(self, ecus: dict[str, EcuState] | None = None) -> None:
        """Start with the given ECUs (or none)."""
        self.ecus: dict[str, EcuState] = ecus or {}
        self.admission = Admission()

    def ecu(self, ecu_id: str) -> EcuState:
        """Return the ECU's state, creating it on first use."""
        state = self.ecus.get(ecu_id)
        if state is None:
            state = self.ecus[ecu_id] = EcuState(ecu_id)
        return state

    def apply_record(
        self, frame: DecodedFrame, received_at: datetime, peer: str | None = None
    ) -> RecordOutcome:
        """Apply a decoded data record from address ``peer`` received (UTC) at."""
        ecu_id, at = frame.ecu_id, frame.timestamp
        if not ecu_id or at is None:
            return RecordOutcome(ecu_id, RecordStatus.INCOMPLETE)
        new_ecu = ecu_id not in self.ecus
        evicted: list[str] = []
        if new_ecu:
            room, evicted = self.admission.room_for_ecu(self.ecus, ecu_id, peer)
            if not room:
                return RecordOutcome(ecu_id, RecordStatus.TOO_MANY_ECUS)
            for gone in evicted:
                del self.ecus[gone]
                self.admission.forget(gone)
            self.admission.admitted(ecu_id, peer)
        ecu = self.ecu(ecu_id)
        stamp = wire_time(at)
        mark = fingerprint(frame)
        if ecu.seen.seen(stamp, mark):
            return RecordOutcome(ecu_id, RecordStatus.DUPLICATE)
        oldest = ecu.oldest_countable()
        if oldest is not None and stamp < oldest:
            _LIMITED.limited_warning(
                f"too-old-{ecu_id}",
                "ECU %s: ignoring record of %s, older than the %s kept for "
                "deduplication",
                ecu_id,
                at.isoformat(),
                oldest,
            )
            return RecordOutcome(ecu_id, RecordStatus.TOO_OLD)
        verdict = ecu.timeline.judge(at, received_at)
        if verdict is Verdict.FUTURE:
            _LIMITED.limited_warning(
                f"future-{ecu_id}",
                "ECU %s: ignoring record stamped %s, too far ahead (over a day) of "
                "the ECU's own newest record %s (ECU clock wrong?)",
                ecu_id,
                at.isoformat(),
                ecu.newest,
            )
            ecu.held = (frame, received_at)
            return RecordOutcome(ecu_id, RecordStatus.FUTURE)
        if verdict is Verdict.GLITCH or verdict is Verdict.STEP:
            _LIMITED.limited_warning(
                f"clock-{ecu_id}",
                "ECU %s: record stamped %s is off the ECU's timeline (newest %s); %s",
                ecu_id,
                at.isoformat(),
                ecu.newest,
                "following the ECU clock"
                if verdict is Verdict.STEP
                else "counting it without moving the ECU's day",
            )
        late = verdict is Verdict.LATE
        blocks, added = self._admit_inverters(ecu, frame.inverters)
        if verdict is Verdict.STEP and ecu.today is not None and at.date() < ecu.today:
            ecu.today = None  # the clock went back across midnight: restart the day
        self._count_energy(ecu, blocks, at, new_day=verdict is not Verdict.GLITCH)
        if verdict is not Verdict.GLITCH:
            # A glitching stamp must not move the day or hour the peaks count in.
            ecu.peaks.note_record(frame.power_w, blocks, at)
        if late:
            self._note_late_lifetime(ecu, frame)
        else:
            self._take_live_values(ecu, frame, blocks, at, received_at)
        for block in blocks:
            inv = ecu.inverters[block.id]
            inv.records += 1
            if late and block.id in added:
                # known from now on, but not part of the newest record
                inv.take_values(block, received_at, at)
                inv.online = False
        ecu.records += 1
        ecu.last_seen = received_at
        ecu.remember(stamp, mark)
        held, ecu.held = ecu.held, None
        if verdict is Verdict.CURRENT or verdict is Verdict.STEP:
            ecu.make_newest(at, received_at)
        if verdict is Verdict.STEP and held is not None:
            # the refused record was the first of the new timeline: count it now
            self.apply_record(held[0], held[1], peer)
        if len(self.ecus) > 1:
            self._trim_seen()
        return RecordOutcome(
            ecu_id,
            RecordStatus.LATE if late else RecordStatus.NEW,
            new_ecu=new_ecu,
            added_inverters=tuple(added),
            evicted_ecus=tuple(evicted),
        )

    def _trim_seen(self) -> None:
        """Keep the remembered timestamps of all ECUs within MAX_SEEN_TOTAL."""
        excess = sum(len(e.seen) for e in self.ecus.values()) - MAX_SEEN_TOTAL
        if excess > 0:
            largest = max(self.ecus.values(), key=lambda e: len(e.seen))
            largest.seen.drop_oldest(excess)

    def _admit_inverters(
        self, ecu: EcuState, blocks: tuple[Inverter, ...]
    ) -> tuple[list[Inverter], list[str]]:
        """Return the record's blocks the state tracks, and the ids new to it."""

        def add(block: Inverter) -> None:
            ecu.inverters[block.id] = InverterState(
                block.id, block.type_code, block.family
            )

        def remove(ecu_id: str, inv_id: str) -> None:
            del self.ecus[ecu_id].inverters[inv_id]
            self.ecus[ecu_id].peaks.inverters.pop(inv_id, None)

        return self.admission.admit_blocks(self.ecus, ecu.ecu_id, blocks, add, remove)

    def apply_upstream(self, report: UpstreamReport) -> str | None:
        """Apply an upload outcome; return the ECU id it was for, if known."""
        if not report.ecu_id:
            return None
        if report.ecu_id not in self.ecus and len(self.ecus) >= self.admission.max_ecus:
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
        return ecu.seen.newest_first(limit)

    def to_json(self) -> Any:
        """Return the saved form: the ECUs as the codec writes them."""
        return encode(self.ecus)

    @classmethod
    def from_json(cls, data: Any, path: str) -> LiveState:
        """Rebuild from the saved form; every key must name what it holds."""
        ecus = decode(dict[str, EcuState], data, path)
        for ecu_id, ecu in ecus.items():
            where = f"{path}.{ecu_id}"
            _same_key(ecu_id, ecu.ecu_id, where)
            for inv_id, inv in ecu.inverters.items():
                _same_key(inv_id, inv.id, f"{where}.inverters.{inv_id}")
                for number, channel in inv.channels.items():
                    _same_key(number, channel.channel, f"{where}.channels.{number}")
        return cls(ecus)

    @staticmethod
    def _count_energy(
        ecu: EcuState, blocks: list[Inverter], at: datetime, *, new_day: bool
    ) -> None:
        """Add the round energies of the record's tracked inverter blocks."""
        day = at.date()
        if ecu.today is None or (new_day and day > ecu.today):
            ecu.today = day
            ecu.today_mwh = 0
            for known in ecu.inverters.values():
                known.reset_today()
        counts_today = day == ecu.today
        for block in blocks:
            inv = ecu.inverters[block.id]
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

    @staticmethod
    def _take_live_values(
        ecu: EcuState,
        frame: DecodedFrame,
        blocks: list[Inverter],
        at: datetime,
        received_at: datetime,
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
        ecu.lifetime_energy_kwh, ecu.lifetime_lower_streak = next_lifetime(
            ecu.ecu_id,
            ecu.lifetime_energy_kwh,
            ecu.lifetime_lower_streak,
            frame.lifetime_energy_kwh,
            at,
        )
        present = {block.id for block in blocks}
        for inv_id, inv in ecu.inverters.items():
            inv.online = inv_id in present
        for block in blocks:
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


def _same_key(key: object, held: object, path: str) -> None:
    if key != held:
        raise ContractError(f"{path}: holds {held!r}")
