"""Live state of ECUs and inverters, with energy accounting, built from data records.

Everything here is pure bookkeeping: no I/O, no clock, no asyncio. The hub feeds it
decoded data records and upload outcomes; what is kept per ECU is in ecu_state.py,
and the state file (``state_file``) saves it as it is, through the contract codec.

Energy is kept in integer milliwatt-hours (the wire gives per-channel round energy in
kWh x 10^6, i.e. mWh), so sums are exact and totals never drift; the state document
shows kWh.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .contract.codec import ContractError, decode, encode
from .ecu_admission import MAX_ECUS, Admission
from .ecu_state import MAX_SEEN, EcuState, InverterState, finite
from .lifetime import LIFETIME_RESET_RECORDS, next_lifetime
from .lograte import RateLimitedLog
from .timeline import Verdict, fingerprint
from .wire import format_wire_timestamp as wire_time

if TYPE_CHECKING:
    from datetime import datetime

    from .models import DecodedFrame, Inverter, UpstreamReport

__all__ = [
    "LIFETIME_RESET_RECORDS",
    "MAX_ECUS",
    "LiveState",
    "RecordOutcome",
    "RecordStatus",
]

_LOGGER = logging.getLogger(__name__)
_LIMITED = RateLimitedLog(_LOGGER)

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


def _wh_to_mwh(wh: float | None) -> int:
    """Convert a round energy in Wh to non-negative integer mWh (garbage counts 0)."""
    if wh is None or not math.isfinite(wh) or wh <= 0:
        return 0
    return round(wh * 1000)


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
        ecu.power_w = finite(frame.power_w)
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
