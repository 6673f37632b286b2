"""The interface between the relay and its sessions, and a session's modes.

A ``Session`` is given its framers (``FrameTap``) and the command guard's gate when
the relay accepts its connection; beyond that it may ask of the relay only what
``SessionHost`` lists. ``Relay`` implements it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from ecu_proxy.admission import Admission
    from ecu_proxy.durability import AckGate
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

    # -- settings and shared state --------------------------------------------

    @property
    def admission(self) -> Admission:
        """Return the limits, frame budgets and trusted addresses."""

    @property
    def counters(self) -> RelayCounters:
        """Return the running totals the session adds its bytes to."""

    @property
    def connect_timeout(self) -> float:
        """Return the seconds EMA has to accept a connection and to answer."""

    def ack_gate(self, write: Callable[[bytes], None]) -> AckGate:
        """Return a gate holding acknowledgements until the record is durable."""

    def track_buffer(self, transport: asyncio.WriteTransport) -> None:
        """Note a write buffer's size after a write."""

    # -- upstream ---------------------------------------------------------------

    async def open_upstream(self, session: Session) -> str:
        """Open EMA's side of a session; say how it went.

        Raise ``EmaUnreachableError`` saying why when EMA cannot be reached.
        """

    def cloudless_reply(self, frame: DecodedFrame) -> bytes | None:
        """Return the responder's reply to a frame, or None for no reply."""

    # -- what the session saw ---------------------------------------------------

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

    def session_closed(self, session: Session) -> None:
        """Forget a session whose connections are both closed."""
