"""The asyncio protocols at both ends of a relayed connection.

Each hands every event of its connection to its ``Session``; ``EcuSide`` first asks
the relay to accept the connection, which gives it a session (or aborts it), and
``connect_ema`` opens the ``EmaSide`` of a session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, cast

from ecu_proxy.upstream import UpstreamError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ecu_proxy.session import Session

_LOGGER = logging.getLogger(__name__)


class Side(asyncio.Protocol):
    """One end of a relayed connection."""

    session: Session | None = None
    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # A stream transport (other event loops' do not subclass asyncio.Transport).
        self.transport = cast("asyncio.Transport", transport)

    def pause_writing(self) -> None:
        """Pause reading from the other side while this side's buffer is full."""
        if self.session is not None and self.transport is not None:
            self.session.flow.write_paused(self.transport, paused=True)

    def resume_writing(self) -> None:
        """Resume reading from the other side once this side's buffer drained."""
        if self.session is not None and self.transport is not None:
            self.session.flow.write_paused(self.transport, paused=False)


class EcuSide(Side):
    """The ECU's connection to us."""

    def __init__(self, accept: Callable[[Side, asyncio.Transport], None]) -> None:
        self._accept = accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Ask the relay to accept the connection."""
        super().connection_made(transport)
        assert self.transport is not None
        self._accept(self, self.transport)

    def data_received(self, data: bytes) -> None:
        """Hand received bytes to the session."""
        if self.session is not None:
            self.session.from_ecu(data)

    def eof_received(self) -> bool | None:
        """Hand the half-close to the session."""
        if self.session is not None:
            return self.session.ecu_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the session the connection ended."""
        if self.session is not None:
            self.session.ecu_lost(exc)


class EmaSide(Side):
    """Our connection to EMA for one ECU connection."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Hand the new connection to the session."""
        super().connection_made(transport)
        if self.session is not None and self.transport is not None:
            self.session.ema_made(self.transport)

    def data_received(self, data: bytes) -> None:
        """Hand received bytes to the session."""
        if self.session is not None:
            self.session.from_ema(data)

    def eof_received(self) -> bool | None:
        """Hand the half-close to the session."""
        if self.session is not None:
            return self.session.ema_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the session the connection ended."""
        if self.session is not None:
            self.session.ema_lost(exc)


class EmaUnreachableError(Exception):
    """EMA's side of a session could not be opened; the message says why."""


async def connect_ema(
    session: Session, address: Callable[[], Awaitable[str]], window: float
) -> str:
    """Open EMA's side of ``session`` on its port; return a note of how it went.

    Finding the address and connecting share one ``window`` of seconds, so the ECU
    (which waits about 10 s for an answer) is never kept longer.
    """
    started = time.monotonic()
    host: str | None = None
    try:
        async with asyncio.timeout(window):
            host = await address()
            await session.loop.create_connection(
                partial(EmaSide, session), host, session.port
            )
    except UpstreamError as err:
        raise EmaUnreachableError(str(err)) from err
    except TimeoutError as err:
        target = f"{host}:{session.port}" if host else "EMA's address"
        reason = f"no connection to {target} within {window:g} s"
        raise EmaUnreachableError(reason) from err
    except OSError as err:
        reason = f"cannot connect to {host}:{session.port}: {err.strerror or err}"
        raise EmaUnreachableError(reason) from err
    except Exception as err:  # never leave the ECU paused on a surprise
        _LOGGER.exception("Unexpected error while connecting to EMA")
        raise EmaUnreachableError(f"unexpected error: {err!r}") from err
    elapsed_ms = (time.monotonic() - started) * 1000
    return f"connected to {host}:{session.port} in {elapsed_ms:.0f} ms"
