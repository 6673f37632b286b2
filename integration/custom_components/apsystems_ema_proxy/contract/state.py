"""The state document: ECUs, inverters, channels, uploads, EMA commands, the guard.

``GET /api/state``, ``get_state`` and ``start_listening`` send a :class:`Document`;
events carry its parts. docs/state.schema.json is generated from these classes
(``python -m ecu_proxy.contract.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Literal

from .codec import meta
from .constants import UNKNOWN_FAMILY, CommandOutcome, GuardMode, UpstreamResult

_RECEIVED = "when the service received it (UTC, with offset)"
_ECU_TIME = "the ECU's own local wall clock (no offset)"


def _received(what: str) -> dict[str, Any]:
    return meta(description=f"{what}: {_RECEIVED}")


def _ecu_time(what: str) -> dict[str, Any]:
    return meta(description=f"{what}: {_ECU_TIME}")


def _kwh(description: str) -> dict[str, Any]:
    return meta(description=description, minimum=0)


@dataclass(frozen=True, slots=True)
class Upstream:
    """How the last upload of an ECU to EMA went (all null before the first)."""

    result: UpstreamResult | None
    at: datetime | None = field(metadata=_received("When it ended"))
    rtt_ms: float | None
    detail: str | None = field(
        metadata=meta(description="A short text from the relay, e.g. why it failed")
    )


@dataclass(frozen=True, slots=True)
class Channel:
    """One DC input of an inverter."""

    channel: int
    dc_voltage_v: float | None
    dc_current_a: float | None
    power_w: float | None
    energy_today_kwh: float = field(metadata=_kwh("Energy of the ECU's 'today'"))
    energy_total_kwh: float = field(metadata=_kwh("Since first seen; never decreases"))


@dataclass(frozen=True, slots=True)
class NewInverter:
    """One inverter as an inverter_added event announces it: no peaks yet."""

    id: str
    type_code: str
    family: str
    online: bool = field(metadata=meta(description="Part of the newest record"))
    last_seen: datetime | None = field(metadata=_received("Its newest record"))
    last_record_at: datetime | None = field(metadata=_ecu_time("Its newest record"))
    ac_voltage_v: float | None
    phase_voltages_v: list[float] | None = field(
        metadata=meta(description="One voltage per grid phase (three-phase only)")
    )
    frequency_hz: float | None
    temperature_c: float | None
    power_w: float | None
    energy_today_kwh: float = field(metadata=_kwh("Energy of the ECU's 'today'"))
    energy_total_kwh: float = field(
        metadata=_kwh("Since first seen; never decreases (total_increasing)")
    )
    raw: str | None = field(
        metadata=meta(description="Block text of an inverter whose type is not known")
    )
    channels: list[Channel]

    @property
    def unknown_type(self) -> bool:
        """Return True when the service does not know this inverter's type code."""
        return self.family == UNKNOWN_FAMILY

    @property
    def three_phase(self) -> bool:
        """Return True for inverters that report one voltage per grid phase."""
        return self.phase_voltages_v is not None

    def as_inverter(self) -> Inverter:
        """Return it as a state-document inverter (peaks not known yet)."""
        return Inverter(
            **{item.name: getattr(self, item.name) for item in fields(self)}
        )


@dataclass(frozen=True, slots=True)
class Inverter(NewInverter):
    """One inverter: identity, newest values, energy counters, peaks, channels."""

    peak_power_today_w: float | None = field(
        default=None,
        metadata=meta(
            description="Highest power in a record dated 'today', in W; not in an "
            "inverter_added event (its record event follows at once)",
            minimum=0,
        ),
    )
    peak_power_ever_w: float | None = field(
        default=None,
        metadata=meta(
            description="Highest power in any counted record since first seen, in W",
            minimum=0,
        ),
    )


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """The ECU's first frame after an EMA command on the same connection."""

    command: str | None
    action: str
    result: str | None = field(
        metadata=meta(description="Set for acknowledgements (done, unknown_command)")
    )
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EmaCommand:
    """One EMA -> ECU command on port 8997 and what became of it."""

    at: datetime = field(metadata=_received("When EMA sent it"))
    ecu_id: str
    command: str | None
    inner_command: str | None
    action: str
    changes_plant: bool
    parameters: dict[str, Any]
    raw_text: str | None
    outcome: CommandOutcome
    blocked: bool
    guard: GuardMode = field(metadata=meta(description="The guard's mode then"))
    answer: CommandAnswer | None


@dataclass(frozen=True, slots=True)
class Ecu:
    """One ECU: newest record values, energy, inverters, upload status, commands."""

    ecu_id: str
    model: str | None
    last_seen: datetime | None = field(metadata=_received("Its newest record"))
    last_record_at: datetime | None = field(metadata=_ecu_time("Its newest record"))
    power_w: float | None
    lifetime_energy_kwh: float | None = field(
        metadata=meta(description="The ECU's own lifetime counter; never decreases")
    )
    energy_today_kwh: float = field(
        metadata=_kwh("Sum of the channel round energies of records dated 'today'")
    )
    today: date | None = field(
        metadata=meta(description="The ECU-local date energy_today_kwh belongs to")
    )
    inverter_count: int | None
    inverters_online: int = field(metadata=meta(minimum=0))
    warnings: list[str]
    upstream: Upstream
    inverters: dict[str, Inverter]
    peak_power_today_w: float | None = field(
        metadata=meta(
            description="Highest power in a record dated 'today' (the ECU's date), "
            "in W",
            minimum=0,
        )
    )
    peak_power_ever_w: float | None = field(
        metadata=meta(
            description="Highest power in any counted record since first seen, in W",
            minimum=0,
        )
    )
    energy_this_hour_kwh: float = field(
        metadata=_kwh(
            "Sum of the channel round energies of records stamped within the hour "
            "that starts at hour_start; starts again at 0 with the first record of "
            "a later hour"
        )
    )
    hour_start: datetime | None = field(
        metadata=_ecu_time("Start of the hour energy_this_hour_kwh belongs to")
    )
    commands: list[EmaCommand] | None = field(
        default=None,
        metadata=meta(
            description="The newest EMA commands for this ECU (at most 20), oldest "
            "first; in the state document, not in record events",
            omit_none=True,
        ),
    )


@dataclass(frozen=True, slots=True)
class Guard:
    """The EMA command guard: its options and what it blocked since the start."""

    mode: GuardMode
    blocked_actions: list[str]
    blocked_total: int = field(metadata=meta(minimum=0))
    blocked_by_ecu: dict[str, int]
    blocked_by_action: dict[str, int]


@dataclass(frozen=True, slots=True)
class Document:
    """The state document: every ECU the service keeps, by id."""

    server_id: str
    version: str
    schema_version: Literal[1]
    ecus: dict[str, Ecu]
    guard: Guard | None = field(default=None, metadata=meta(omit_none=True))
