"""Relayed frames as the service lists them (``get_frames``, ``/api/frames``).

``decoded`` is the decode of one frame: the keys common to every kind, plus those
of its kind (docs/api.md; ``apsystems-ecu-proxy decode`` prints the same JSON).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .codec import meta


class Direction(enum.StrEnum):
    """Which way a frame travelled."""

    ECU_TO_EMA = "ecu_to_ema"
    EMA_TO_ECU = "ema_to_ecu"


@dataclass(frozen=True, slots=True)
class FrameChannel:
    """One DC input of an inverter in one record."""

    channel: int
    dc_voltage_v: float | None
    dc_current_a: float | None
    power_w: float
    round_energy_wh: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameInverter:
    """One inverter block of a data record.

    ``raw`` holds the block text for unknown type codes (and for layouts whose
    scaling is not known), so nothing the ECU sent is lost. ``phase_voltages_v``
    is set for three-phase inverters (type 04) only.
    """

    id: str
    type_code: str
    family: str
    ac_voltage_v: float | None
    phase_voltages_v: tuple[float, ...] | None = None
    frequency_hz: float | None
    temperature_c: float | None
    power_w: float | None
    round_energy_wh: float | None
    channels: tuple[FrameChannel, ...]
    raw: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFrame:
    """An ECU data record."""

    kind: Literal["data"] = "data"
    version: str | None
    length: int
    ecu_id: str | None
    ecu_model: str | None
    timestamp: datetime | None = field(
        metadata=meta(description="The ECU's own local wall clock (no offset)")
    )
    power_w: float | None
    round_energy_kwh: float | None
    lifetime_energy_kwh: float | None
    inverter_count: int | None
    more_records: bool | None
    inverters: tuple[FrameInverter, ...]
    warnings: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlFrame:
    """A frame of the control port: what EMA asks the ECU, or what the ECU reports."""

    kind: Literal["control"] = "control"
    version: str | None
    length: int
    command: str | None
    ecu_id: str | None
    inner_command: str | None
    action: str
    changes_plant: bool
    parameters: dict[str, Any]
    raw_text: str | None
    problem: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileQueryFrame:
    """The ECU asks EMA which of its records arrived."""

    kind: Literal["reconcile_query"] = "reconcile_query"
    version: str | None
    length: int
    ecu_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmaReplyFrame:
    """EMA's answer to a data record or a reconcile query."""

    kind: Literal["ema_reply"] = "ema_reply"
    version: str | None
    length: int
    status: str | None
    timestamps: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidFrame:
    """A frame that could not be read; ``error`` says why."""

    kind: Literal["invalid"] = "invalid"
    version: str | None
    length: int
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownFrame:
    """A frame of a kind the decoder does not know."""

    kind: Literal["unknown"] = "unknown"
    version: str | None
    length: int


@dataclass(frozen=True, slots=True)
class OmittedDecode:
    """In a frame list: a decode too large to list (the raw text stays)."""

    kind: str
    version: str | None
    length: int
    omitted: str


Decoded = (
    DataFrame
    | ControlFrame
    | ReconcileQueryFrame
    | EmaReplyFrame
    | InvalidFrame
    | UnknownFrame
    | OmittedDecode
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One raw frame the service relayed, with its decode."""

    seq: int = field(metadata=meta(description="Frames since the service started"))
    received_at: datetime
    port: int
    direction: Direction
    peer: str
    size: int = field(metadata=meta(description="Bytes of the whole frame"))
    truncated: bool = field(metadata=meta(description="raw holds only its start"))
    raw: str = field(
        metadata=meta(description="ASCII text; other bytes appear as \\xNN")
    )
    decoded: Decoded
