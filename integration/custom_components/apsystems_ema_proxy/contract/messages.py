"""WebSocket messages (docs/api.md, "WebSocket /ws"): greeting, results, events.

Every message the service sends is one of these classes; field order is the key
order on the wire. Commands the client sends are plain ``{"message_id", "command",
...args}`` objects and are not modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .codec import ContractError, decode, encode, meta
from .frames import Frame
from .state import Document, Ecu, EmaCommand, NewInverter, Upstream

MessageId = str | int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """The greeting the service sends first on every connection."""

    type: Literal["server_info"] = "server_info"
    server_id: str
    version: str
    schema_version: int
    min_schema_version: int
    requires_auth: bool
    mqtt_discovery: bool | None = field(
        default=None,
        metadata=meta(
            description="Present when the service runs with MQTT support: true "
            "while it announces its devices through MQTT discovery",
            omit_none=True,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The answer to a command that succeeded."""

    type: Literal["result"] = "result"
    message_id: MessageId
    success: bool = True
    result: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResult:
    """The answer to a command that failed (``error_code``: constants.ErrorCode)."""

    type: Literal["result"] = "result"
    message_id: MessageId
    success: bool = False
    error_code: str
    details: str


# --- events --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordData:
    """A data record was counted; ``ecu`` is the ECU after it."""

    ecu_id: str
    ecu: Ecu
    late: bool = field(
        metadata=meta(description="Older than the newest record (the ECU re-sending)")
    )


@dataclass(frozen=True, slots=True)
class InverterAddedData:
    """An inverter was seen for the first time (its record event follows)."""

    ecu_id: str
    inverter: NewInverter


@dataclass(frozen=True, slots=True)
class EcuStatusData:
    """The outcome of one upload of the ECU to EMA."""

    ecu_id: str
    upstream: Upstream


@dataclass(frozen=True, slots=True)
class EmaCommandData(EmaCommand):
    """EMA sent the ECU a command: the command, and the ECU's blocked count."""

    blocked_count: int = field(
        metadata=meta(description="Commands blocked for this ECU since the start")
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordEvent:
    """A ``record`` event."""

    type: Literal["event"] = "event"
    seq: int
    event: Literal["record"] = "record"
    data: RecordData


@dataclass(frozen=True, slots=True, kw_only=True)
class InverterAddedEvent:
    """An ``inverter_added`` event."""

    type: Literal["event"] = "event"
    seq: int
    event: Literal["inverter_added"] = "inverter_added"
    data: InverterAddedData


@dataclass(frozen=True, slots=True, kw_only=True)
class EcuStatusEvent:
    """An ``ecu_status`` event."""

    type: Literal["event"] = "event"
    seq: int
    event: Literal["ecu_status"] = "ecu_status"
    data: EcuStatusData


@dataclass(frozen=True, slots=True, kw_only=True)
class EmaCommandEvent:
    """An ``ema_command`` event."""

    type: Literal["event"] = "event"
    seq: int
    event: Literal["ema_command"] = "ema_command"
    data: EmaCommandData


type Event = RecordEvent | InverterAddedEvent | EcuStatusEvent | EmaCommandEvent

# The class of each event name; a client ignores names it does not know.
EVENTS: dict[str, type[Event]] = {
    "record": RecordEvent,
    "inverter_added": InverterAddedEvent,
    "ecu_status": EcuStatusEvent,
    "ema_command": EmaCommandEvent,
}


# --- command results -----------------------------------------------------------


def decode_event(data: Any, path: str = "$") -> Event | None:
    """Return an event message, or None for an event name this contract lacks."""
    name = data.get("event") if isinstance(data, dict) else None
    kind = EVENTS.get(name) if isinstance(name, str) else None
    if kind is None:
        if not isinstance(data, dict):
            raise ContractError(f"{path}: expected an event object, got {data!r:.60}")
        return None
    return decode(kind, data, path)


@dataclass(frozen=True, slots=True)
class ListenResult:
    """The result of ``start_listening``: the full state, or the missed events.

    Reading it skips events of names this contract does not know (a newer service
    may send more), so it defines its own JSON form.
    """

    last_seq: int
    state: Document | None
    events: list[Event]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "last_seq": self.last_seq,
            "state": encode(self.state),
            "events": [encode(event) for event in self.events],
        }

    @classmethod
    def from_json(cls, data: Any, path: str = "$") -> ListenResult:
        """Read the JSON form; raise ContractError naming the path."""
        head = decode(_ListenHead, data, path)
        events = (
            decode_event(item, f"{path}.events[{index}]")
            for index, item in enumerate(head.events)
        )
        return cls(head.last_seq, head.state, [e for e in events if e is not None])


@dataclass(frozen=True, slots=True)
class _ListenHead:
    last_seq: int
    state: Document | None
    events: list[Any]


@dataclass(frozen=True, slots=True)
class StateResult:
    """The result of ``get_state``."""

    state: Document


@dataclass(frozen=True, slots=True)
class FramesPage:
    """The result of ``get_frames`` and the answer of ``/api/frames``."""

    frames: list[Frame]
    more: bool = False
