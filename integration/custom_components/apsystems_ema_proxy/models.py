"""Typed messages and state of the ECU proxy API (schema 1), free of Home Assistant.

Raw payloads are ``TypedDict``s named ``<Thing>DataType`` and mirror the JSON of the
API document; Python objects are frozen dataclasses built with ``from_message``.
Parsing is lenient about missing optional keys (older or newer services) and strict
about the ones that identify things: those raise ``InvalidMessage``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

from .exceptions import InvalidMessage

# ---------------------------------------------------------------------------
# Raw payloads


class ServerInfoDataType(TypedDict):
    """The greeting the service sends first."""

    type: Literal["server_info"]
    server_id: str
    version: str
    schema_version: int
    min_schema_version: int
    requires_auth: bool
    mqtt_discovery: NotRequired[bool]


class UpstreamDataType(TypedDict):
    """How the last upload of an ECU to EMA went."""

    result: str | None
    at: str | None
    rtt_ms: NotRequired[float | None]
    detail: NotRequired[str | None]


class ChannelDataType(TypedDict):
    """One DC input of an inverter."""

    channel: int
    dc_voltage_v: float | None
    dc_current_a: float | None
    power_w: float | None
    energy_today_kwh: NotRequired[float | None]
    energy_total_kwh: NotRequired[float | None]


class InverterDataType(TypedDict):
    """One inverter as the service keeps it."""

    id: str
    type_code: str
    family: str
    online: bool
    last_seen: str | None
    last_record_at: NotRequired[str | None]
    ac_voltage_v: float | None
    phase_voltages_v: NotRequired[list[float] | None]
    frequency_hz: float | None
    temperature_c: float | None
    power_w: float | None
    energy_today_kwh: NotRequired[float | None]
    energy_total_kwh: NotRequired[float | None]
    raw: NotRequired[str | None]
    channels: list[ChannelDataType]
    peak_power_today_w: NotRequired[float | None]
    peak_power_ever_w: NotRequired[float | None]


class EcuDataType(TypedDict):
    """One ECU as the service keeps it."""

    ecu_id: str
    model: str | None
    last_seen: str | None
    last_record_at: NotRequired[str | None]
    power_w: float | None
    lifetime_energy_kwh: float | None
    energy_today_kwh: NotRequired[float | None]
    today: NotRequired[str | None]
    inverter_count: NotRequired[int | None]
    inverters_online: NotRequired[int | None]
    warnings: NotRequired[list[str]]
    upstream: NotRequired[UpstreamDataType | None]
    inverters: dict[str, InverterDataType]
    peak_power_today_w: NotRequired[float | None]
    peak_power_ever_w: NotRequired[float | None]
    energy_this_hour_kwh: NotRequired[float | None]
    hour_start: NotRequired[str | None]


class StateDataType(TypedDict):
    """The state document."""

    server_id: str
    version: str
    schema_version: int
    ecus: dict[str, EcuDataType]


class EventMessageDataType(TypedDict):
    """An event message."""

    type: Literal["event"]
    seq: int
    event: str
    data: dict[str, Any]


class ListenResultDataType(TypedDict):
    """The result of ``start_listening``."""

    last_seq: int
    state: StateDataType | None
    events: list[EventMessageDataType]


class FrameDataType(TypedDict):
    """One raw frame as ``get_frames`` returns it."""

    seq: int
    received_at: str
    port: int
    direction: str
    peer: str
    raw: str
    decoded: dict[str, Any]


# ---------------------------------------------------------------------------
# Field helpers


def _require_str(data: Mapping[str, Any], key: str, what: str) -> str:
    """Return a non-empty string field or raise InvalidMessage."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{what}: {key!r} is missing or not a string")
    return value


def _require_int(data: Mapping[str, Any], key: str, what: str) -> int:
    """Return an integer field or raise InvalidMessage."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"{what}: {key!r} is missing or not an integer")
    return value


def _require_mapping(data: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    """Return an object field or raise InvalidMessage."""
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise InvalidMessage(f"{what}: {key!r} is missing or not an object")
    return value


def _float(value: Any) -> float | None:
    """Return a number as float, anything else as None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    """Return an integer, anything else as None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _str(value: Any) -> str | None:
    """Return a string, anything else as None."""
    return value if isinstance(value, str) else None


def _datetime(value: Any) -> datetime | None:
    """Parse an ISO 8601 time; None for missing or unparsable values."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _utc_datetime(value: Any) -> datetime | None:
    """Parse a time we received something at; one without offset counts as UTC."""
    parsed = _datetime(value)
    if parsed is not None and parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


# ---------------------------------------------------------------------------
# Objects


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Who the service is and which API schemas it speaks."""

    server_id: str
    version: str
    schema_version: int
    min_schema_version: int
    requires_auth: bool
    # The service also announces these entities through MQTT discovery.
    mqtt_discovery: bool = False

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ServerInfo:
        """Build from the ``server_info`` greeting."""
        if data.get("type") != "server_info":
            raise InvalidMessage("the service did not start with server_info")
        schema = _require_int(data, "schema_version", "server_info")
        return cls(
            server_id=_require_str(data, "server_id", "server_info"),
            version=_str(data.get("version")) or "unknown",
            schema_version=schema,
            min_schema_version=_int(data.get("min_schema_version")) or schema,
            requires_auth=data.get("requires_auth") is True,
            mqtt_discovery=data.get("mqtt_discovery") is True,
        )


@dataclass(frozen=True, slots=True)
class Upstream:
    """Outcome of the last upload of an ECU to EMA."""

    result: str | None = None
    at: datetime | None = None
    rtt_ms: float | None = None
    detail: str | None = None  # why an upload failed, in the service's words

    @classmethod
    def from_message(cls, data: Any) -> Upstream:
        """Build from an ``upstream`` object; anything else means no upload yet."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            result=_str(data.get("result")),
            at=_utc_datetime(data.get("at")),
            rtt_ms=_float(data.get("rtt_ms")),
            detail=_str(data.get("detail")),
        )


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One DC input of an inverter."""

    channel: int
    dc_voltage_v: float | None
    dc_current_a: float | None
    power_w: float | None
    energy_today_kwh: float | None
    energy_total_kwh: float | None

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ChannelState:
        """Build from a channel object."""
        return cls(
            channel=_require_int(data, "channel", "channel"),
            dc_voltage_v=_float(data.get("dc_voltage_v")),
            dc_current_a=_float(data.get("dc_current_a")),
            power_w=_float(data.get("power_w")),
            energy_today_kwh=_float(data.get("energy_today_kwh")),
            energy_total_kwh=_float(data.get("energy_total_kwh")),
        )


@dataclass(frozen=True, slots=True)
class InverterState:
    """One inverter: identity, latest values and DC channels."""

    id: str
    type_code: str
    family: str
    online: bool
    last_seen: datetime | None
    last_record_at: datetime | None
    ac_voltage_v: float | None
    phase_voltages_v: tuple[float, ...] | None
    frequency_hz: float | None
    temperature_c: float | None
    power_w: float | None
    energy_today_kwh: float | None
    energy_total_kwh: float | None
    raw: str | None
    channels: tuple[ChannelState, ...]
    peak_power_today_w: float | None = None
    peak_power_ever_w: float | None = None

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> InverterState:
        """Build from an inverter object."""
        inverter_id = _require_str(data, "id", "inverter")
        phases = data.get("phase_voltages_v")
        channels = data.get("channels")
        return cls(
            id=inverter_id,
            type_code=_str(data.get("type_code")) or "",
            family=_str(data.get("family")) or "unknown",
            online=data.get("online") is True,
            last_seen=_utc_datetime(data.get("last_seen")),
            last_record_at=_datetime(data.get("last_record_at")),
            ac_voltage_v=_float(data.get("ac_voltage_v")),
            phase_voltages_v=(
                tuple(v for v in (_float(p) for p in phases) if v is not None)
                if isinstance(phases, list)
                else None
            ),
            frequency_hz=_float(data.get("frequency_hz")),
            temperature_c=_float(data.get("temperature_c")),
            power_w=_float(data.get("power_w")),
            energy_today_kwh=_float(data.get("energy_today_kwh")),
            energy_total_kwh=_float(data.get("energy_total_kwh")),
            raw=_str(data.get("raw")),
            channels=tuple(
                ChannelState.from_message(c)
                for c in (channels if isinstance(channels, list) else [])
                if isinstance(c, Mapping)
            ),
            peak_power_today_w=_float(data.get("peak_power_today_w")),
            peak_power_ever_w=_float(data.get("peak_power_ever_w")),
        )

    @property
    def unknown_type(self) -> bool:
        """Return True when the service does not know this inverter's type code."""
        return self.family == "unknown"

    @property
    def three_phase(self) -> bool:
        """Return True for inverters that report one voltage per grid phase."""
        return self.phase_voltages_v is not None


@dataclass(frozen=True, slots=True)
class EcuState:
    """One ECU: totals, upload status and its inverters."""

    ecu_id: str
    model: str | None
    last_seen: datetime | None
    last_record_at: datetime | None
    power_w: float | None
    lifetime_energy_kwh: float | None
    energy_today_kwh: float | None
    today: str | None
    inverter_count: int | None
    inverters_online: int | None
    warnings: tuple[str, ...]
    upstream: Upstream
    inverters: Mapping[str, InverterState] = field(default_factory=dict)
    peak_power_today_w: float | None = None
    peak_power_ever_w: float | None = None
    energy_this_hour_kwh: float | None = None
    hour_start: datetime | None = None  # ECU-local, no offset

    @classmethod
    def empty(cls, ecu_id: str) -> EcuState:
        """Return an ECU known by id only, with no record yet."""
        return cls.from_message({"ecu_id": ecu_id})

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> EcuState:
        """Build from an ECU object."""
        ecu_id = _require_str(data, "ecu_id", "ecu")
        raw_inverters = data.get("inverters")
        inverters = [
            InverterState.from_message(inv)
            for inv in (
                raw_inverters.values() if isinstance(raw_inverters, Mapping) else ()
            )
            if isinstance(inv, Mapping)
        ]
        warnings = data.get("warnings")
        return cls(
            ecu_id=ecu_id,
            model=_str(data.get("model")),
            last_seen=_utc_datetime(data.get("last_seen")),
            last_record_at=_datetime(data.get("last_record_at")),
            power_w=_float(data.get("power_w")),
            lifetime_energy_kwh=_float(data.get("lifetime_energy_kwh")),
            energy_today_kwh=_float(data.get("energy_today_kwh")),
            today=_str(data.get("today")),
            inverter_count=_int(data.get("inverter_count")),
            inverters_online=_int(data.get("inverters_online")),
            warnings=tuple(
                w for w in (warnings if isinstance(warnings, list) else []) if _str(w)
            ),
            upstream=Upstream.from_message(data.get("upstream")),
            inverters={inv.id: inv for inv in inverters},
            peak_power_today_w=_float(data.get("peak_power_today_w")),
            peak_power_ever_w=_float(data.get("peak_power_ever_w")),
            energy_this_hour_kwh=_float(data.get("energy_this_hour_kwh")),
            hour_start=_datetime(data.get("hour_start")),
        )


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything the service knows: ECUs by id."""

    server_id: str | None = None
    version: str | None = None
    ecus: Mapping[str, EcuState] = field(default_factory=dict)

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ProxyState:
        """Build from the state document."""
        raw_ecus = data.get("ecus")
        if not isinstance(raw_ecus, Mapping):
            raise InvalidMessage("state: 'ecus' is missing or not an object")
        ecus = [
            EcuState.from_message(ecu)
            for ecu in raw_ecus.values()
            if isinstance(ecu, Mapping)
        ]
        return cls(
            server_id=_str(data.get("server_id")),
            version=_str(data.get("version")),
            ecus={ecu.ecu_id: ecu for ecu in ecus},
        )

    def apply(self, event: Event) -> ProxyState:
        """Return the state with one event applied."""
        ecus = dict(self.ecus)
        match event:
            case RecordEvent():
                ecus[event.ecu_id] = event.ecu
            case InverterAddedEvent():
                if (ecu := ecus.get(event.ecu_id)) is None:
                    return self
                inverters = dict(ecu.inverters)
                inverters[event.inverter.id] = event.inverter
                ecus[event.ecu_id] = dataclasses.replace(ecu, inverters=inverters)
            case EcuStatusEvent():
                # An ECU may be heard from (an upload attempt) before its first
                # record: the service then keeps it, so do the same.
                ecu = ecus.get(event.ecu_id) or EcuState.empty(event.ecu_id)
                ecus[event.ecu_id] = dataclasses.replace(ecu, upstream=event.upstream)
        return dataclasses.replace(self, ecus=ecus)


# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """An ECU uploaded a record; ``ecu`` is its new state."""

    seq: int
    ecu_id: str
    ecu: EcuState
    late: bool


@dataclass(frozen=True, slots=True)
class InverterAddedEvent:
    """The service saw an inverter for the first time."""

    seq: int
    ecu_id: str
    inverter: InverterState


@dataclass(frozen=True, slots=True)
class EcuStatusEvent:
    """The upload status of an ECU changed."""

    seq: int
    ecu_id: str
    upstream: Upstream


type Event = RecordEvent | InverterAddedEvent | EcuStatusEvent | EmaCommandEvent


def event_from_message(data: Mapping[str, Any]) -> Event | None:
    """Build an event; None for event names this client does not know."""
    seq = _require_int(data, "seq", "event")
    body = _require_mapping(data, "data", "event")
    name = data.get("event")
    if name == "ema_command":
        return EmaCommandEvent.from_message(seq, body)
    if name not in ("record", "inverter_added", "ecu_status"):
        return None
    ecu_id = _require_str(body, "ecu_id", f"{name} event")
    match name:
        case "record":
            return RecordEvent(
                seq=seq,
                ecu_id=ecu_id,
                ecu=EcuState.from_message(_require_mapping(body, "ecu", "record")),
                late=body.get("late") is True,
            )
        case "inverter_added":
            return InverterAddedEvent(
                seq=seq,
                ecu_id=ecu_id,
                inverter=InverterState.from_message(
                    _require_mapping(body, "inverter", "inverter_added")
                ),
            )
        case _:
            return EcuStatusEvent(
                seq=seq,
                ecu_id=ecu_id,
                upstream=Upstream.from_message(body.get("upstream")),
            )


@dataclass(frozen=True, slots=True)
class ListenResult:
    """What ``start_listening`` returned: a full state or the missed events."""

    last_seq: int
    state: ProxyState | None
    events: tuple[Event, ...]

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ListenResult:
        """Build from the ``start_listening`` result."""
        raw_state = data.get("state")
        raw_events = data.get("events")
        events = (
            event_from_message(e)
            for e in (raw_events if isinstance(raw_events, list) else [])
            if isinstance(e, Mapping)
        )
        return cls(
            last_seq=_require_int(data, "last_seq", "start_listening"),
            state=(
                ProxyState.from_message(raw_state)
                if isinstance(raw_state, Mapping)
                else None
            ),
            events=tuple(e for e in events if e is not None),
        )


@dataclass(frozen=True, slots=True)
class Frame:
    """One raw frame the service relayed, with its decode."""

    seq: int
    received_at: str
    port: int | None
    direction: str | None
    peer: str | None
    raw: str
    decoded: Mapping[str, Any]
    size: int | None = None  # bytes of the whole frame
    truncated: bool = False  # raw holds only the first part of the frame

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Frame:
        """Build from a frame object."""
        decoded = data.get("decoded")
        return cls(
            seq=_require_int(data, "seq", "frame"),
            received_at=_str(data.get("received_at")) or "",
            port=_int(data.get("port")),
            direction=_str(data.get("direction")),
            peer=_str(data.get("peer")),
            raw=_str(data.get("raw")) or "",
            decoded=dict(decoded) if isinstance(decoded, Mapping) else {},
            size=_int(data.get("size")),
            truncated=data.get("truncated") is True,
        )


@dataclass(frozen=True, slots=True)
class EmaCommandEvent:
    """EMA sent the ECU a command; what it asked and what the proxy did with it."""

    seq: int
    ecu_id: str
    action: str
    command: str | None
    changes_plant: bool
    blocked: bool
    guard: str
    parameters: Mapping[str, Any]
    answer: str | None  # the ECU's answer: action, and result when acknowledged
    blocked_count: int

    @classmethod
    def from_message(cls, seq: int, body: Mapping[str, Any]) -> EmaCommandEvent:
        """Build from an ``ema_command`` event body (docs/api.md)."""
        parameters = body.get("parameters")
        answer = body.get("answer")
        answer_text: str | None = None
        if isinstance(answer, Mapping):
            answer_text = _str(answer.get("action"))
            if (result := _str(answer.get("result"))) is not None:
                answer_text = f"{answer_text}: {result}"
        return cls(
            seq=seq,
            ecu_id=_require_str(body, "ecu_id", "ema_command event"),
            action=_require_str(body, "action", "ema_command event"),
            command=_str(body.get("inner_command")) or _str(body.get("command")),
            changes_plant=body.get("changes_plant") is True,
            blocked=body.get("blocked") is True,
            guard=_str(body.get("guard")) or "off",
            parameters=dict(parameters) if isinstance(parameters, Mapping) else {},
            answer=answer_text,
            blocked_count=_int(body.get("blocked_count")) or 0,
        )
