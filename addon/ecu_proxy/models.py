"""Data classes exchanged between the decoder, the relay, the state and the API.

The JSON form of a decoded frame is defined by the contract (``contract/frames.py``,
built by ``document.decoded``): ``apsystems-ecu-proxy decode`` prints it and the
WebSocket API sends it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .contract.constants import UpstreamResult
from .contract.frames import Direction, FrameChannel, FrameInverter
from .control import ControlDetails

__all__ = [
    "Channel",
    "DecodedFrame",
    "Direction",
    "FrameEvent",
    "FrameKind",
    "Inverter",
    "RecordIndex",
    "RelayCounters",
    "RelayListener",
    "UpstreamReport",
    "UpstreamResult",
]


class FrameKind(enum.StrEnum):
    """What a frame is."""

    DATA = "data"
    RECONCILE_QUERY = "reconcile_query"
    CONTROL = "control"
    EMA_REPLY = "ema_reply"
    UNKNOWN = "unknown"
    INVALID = "invalid"


# A record's inverter blocks and their channels are the contract's frame types: the
# decoder builds them, and the API sends them as they are.
Channel = FrameChannel
Inverter = FrameInverter


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """The decode of one frame; which fields are set depends on ``kind``."""

    kind: FrameKind
    version: str | None
    length: int
    # data, control, reconcile_query
    ecu_id: str | None = None
    # data
    ecu_model: str | None = None
    timestamp: datetime | None = None  # ECU local wall clock, naive
    power_w: float | None = None
    round_energy_kwh: float | None = None
    lifetime_energy_kwh: float | None = None
    inverter_count: int | None = None
    more_records: bool | None = None
    inverters: tuple[Inverter, ...] = ()
    warnings: tuple[str, ...] = ()
    # control
    command: str | None = None
    control: ControlDetails | None = None
    # ema_reply
    status: str | None = None
    timestamps: tuple[str, ...] = ()
    # invalid
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """A frame seen by the relay, with where and when it was seen."""

    connection_id: int
    port: int
    peer: str
    direction: Direction
    raw: bytes
    frame: DecodedFrame
    received_at: datetime  # UTC, aware


@dataclass(frozen=True, slots=True)
class UpstreamReport:
    """How relaying an ECU's upload to EMA went."""

    ecu_id: str | None
    port: int
    result: UpstreamResult
    at: datetime  # UTC, aware
    rtt_ms: float | None = None
    detail: str | None = None


@dataclass(slots=True)
class RelayCounters:
    """Running totals kept by the relay for health reporting."""

    connections: int = 0
    active_connections: int = 0
    rejected_connections: int = 0
    bytes_from_ecu: int = 0
    bytes_from_ema: int = 0
    frames_relayed: int = 0
    frames_decoded: int = 0
    frames_invalid: int = 0
    listeners: dict[int, str] = field(default_factory=dict)  # port -> "listening"/error


class RelayListener(Protocol):
    """Receives what the relay sees. Calls are synchronous and must not block."""

    def frame_received(self, event: FrameEvent) -> None:
        """Handle one decoded frame (a copy; forwarding does not wait for this)."""

    def upstream_result(self, report: UpstreamReport) -> None:
        """Handle the outcome of one upload to EMA."""


class RecordIndex(Protocol):
    """What cloudless mode asks the state about records it has stored."""

    def stored_timestamps(self, ecu_id: str, limit: int = 99) -> list[str]:
        """Return wire timestamps (YYYYMMDDhhmmss) of stored records, newest first."""

    def is_stored(self, ecu_id: str, timestamp: str) -> bool:
        """Return whether the record with this wire timestamp is stored."""
