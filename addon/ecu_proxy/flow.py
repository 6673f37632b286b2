"""Flow control of one relayed connection: memory stays bounded, nothing is dropped.

When one side's write buffer passes its high-water mark, reading from the other side
pauses until it drains. Reading from the ECU also pauses while EMA's connection is
being opened. A side reads again only once no reason to pause is left.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

# A side's write buffer may grow to this before reading from the other side pauses.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024


class Pause(Enum):
    """Why reading from one side is paused (internal; never logged or shown)."""

    CONNECTING = auto()
    BACKPRESSURE = auto()


class FlowControl:
    """The pause reasons of both sides of one session."""

    def __init__(self, ecu: asyncio.Transport) -> None:
        self._ecu = ecu
        self._ema: asyncio.Transport | None = None
        self._ecu_pause: set[Pause] = set()
        self._ema_pause: set[Pause] = set()
        ecu.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def attach_ema(self, ema: asyncio.Transport) -> None:
        """Take EMA's new connection under flow control."""
        self._ema = ema
        ema.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def connecting(self, *, paused: bool) -> None:
        """Hold the ECU's bytes while EMA's connection is being opened."""
        _set(self._ecu, self._ecu_pause, Pause.CONNECTING, paused=paused)

    def write_paused(self, transport: asyncio.BaseTransport, *, paused: bool) -> None:
        """Stop (or restart) reading from the peer of a side whose buffer is full."""
        if transport is self._ecu:
            if self._ema is not None:
                _set(self._ema, self._ema_pause, Pause.BACKPRESSURE, paused=paused)
        else:
            _set(self._ecu, self._ecu_pause, Pause.BACKPRESSURE, paused=paused)

    @property
    def backpressured(self) -> bool:
        """Return True while reading from either side waits for a drain."""
        return (
            Pause.BACKPRESSURE in self._ecu_pause
            or Pause.BACKPRESSURE in self._ema_pause
        )

    def buffered_bytes(self) -> int:
        """Return the bytes waiting in both sides' write buffers."""
        total = self._ecu.get_write_buffer_size()
        if self._ema is not None:
            total += self._ema.get_write_buffer_size()
        return total


def _set(
    transport: asyncio.Transport, reasons: set[Pause], reason: Pause, *, paused: bool
) -> None:
    before = bool(reasons)
    if paused:
        reasons.add(reason)
    else:
        reasons.discard(reason)
    after = bool(reasons)
    if before == after or transport.is_closing():
        return
    if after:
        transport.pause_reading()
    else:
        transport.resume_reading()
