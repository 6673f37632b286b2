"""One ECU's record in the live state: its inverters, channels and upload status.

The data classes ``LiveState`` (state.py) keeps per ECU, with the small helpers that
move a record's values into them and keep the ECU's dedupe window and timeline.
The state file saves them as they are through the contract codec (``COUNTER`` and
``READING`` bound what a file may hold); document.py turns them into the state
document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from .contract.codec import meta
from .models import DecodedFrame, Inverter, UpstreamResult
from .peaks import EcuPeaks
from .storage import COUNTER, READING
from .timeline import StampWindow, Timeline
from .wire import format_wire_timestamp as wire_time

DEDUPE_WINDOW = timedelta(days=14)
# Hard cap per ECU on remembered record timestamps (14 days of 1-minute records).
MAX_SEEN = 14 * 24 * 60
# Over all ECUs: bounds the state file (about 30 bytes per timestamp) whatever
# ECUs forged records create; the ECU remembering most gives way first.


def kwh(mwh: int) -> float:
    """Convert integer milliwatt-hours to kWh for display."""
    return round(mwh / 1_000_000, 6)


def finite(value: float | None) -> float | None:
    """Return the value, or None for NaN/infinity (JSON cannot carry them)."""
    return value if value is None or math.isfinite(value) else None


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
        self.ac_voltage_v = finite(inv.ac_voltage_v)
        self.phase_voltages_v = (
            tuple(v if math.isfinite(v) else 0.0 for v in inv.phase_voltages_v)
            if inv.phase_voltages_v
            else None
        )
        self.frequency_hz = finite(inv.frequency_hz)
        self.temperature_c = finite(inv.temperature_c)
        self.power_w = finite(inv.power_w)
        self.raw = inv.raw
        for ch in inv.channels:
            state = self.channel(ch.channel)
            state.dc_voltage_v = finite(ch.dc_voltage_v)
            state.dc_current_a = finite(ch.dc_current_a)
            state.power_w = finite(ch.power_w)

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
