"""The interface between the relay and its sessions, and a session's modes.

A ``Session`` may ask of the relay that accepted it only what ``SessionHost``
lists; ``Relay`` implements it. It is given the shared limits and totals, asks for
its two gates, hands over frames and upload results, and says when it is closed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from ecu_proxy.admission import Admission
    from ecu_proxy.durability import AckGate
    from ecu_proxy.guard import CommandGate
    from ecu_proxy.models import (
        DecodedFrame,
        Direction,
        RelayCounters,
        UpstreamResult,
    )
    from ecu_proxy.session import Session


class SessionMode(StrEnum):
    """Where a session sends the ECU's bytes (logged per connection)."""

    FORWARD = "forward"
    UNREACHABLE = "unreachable"
    CLOUDLESS = "cloudless"


class SessionHost(Protocol):
    """What a session may ask of the relay that accepted it."""

    @property
    def admission(self) -> Admission:
        """Return the limits, frame budgets and trusted addresses."""

    @property
    def counters(self) -> RelayCounters:
        """Return the running totals the session adds its bytes to."""

    @property
    def connect_timeout(self) -> float:
        """Return the seconds EMA has to accept a connection and to answer."""

    def publish(
        self, session: Session, raw: bytes, direction: Direction
    ) -> DecodedFrame:
        """Decode a frame, count it, hand it to the listener and return it."""

    def report(
        self,
        session: Session,
        result: UpstreamResult,
        *,
        rtt_ms: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Report how the upstream answered an upload."""

    async def upstream_address(self) -> str:
        """Resolve EMA's address."""

    def ema_reachable(self) -> None:
        """Note that a connection to EMA succeeded."""

    def ema_unreachable(self, reason: str) -> None:
        """Note that EMA could not be reached."""

    def cloudless_reply(self, frame: DecodedFrame) -> bytes | None:
        """Return the responder's reply to a frame, or None for no reply."""

    def ack_gate(self, write: Callable[[bytes], None]) -> AckGate:
        """Return a gate holding acknowledgements until the record is durable."""

    def command_gate(self, conn_id: int) -> CommandGate | None:
        """Return the guard's gate for EMA's commands, None when it is off."""

    def track_buffer(self, transport: asyncio.WriteTransport) -> None:
        """Note a write buffer's size after a write."""

    def skipped(self, session: Session, count: int) -> None:
        """Note bytes relayed without decoding (frame budget spent)."""

    def framer_failed(self) -> None:
        """Count a framer that failed and was dropped."""

    def session_closed(self, session: Session) -> None:
        """Forget a session whose connections are both closed."""
