"""Time the ECU's uploads to EMA: EMA's answer, its silence, or a close without one.

The ECU waits about 10 s for EMA's answer to a data record, a query or a control
frame; the first upload of a connection starts the clock and the first bytes back
from EMA stop it. The outcome goes to the session's ``report`` callback, and a one-line
note of it to ``note`` (for the connection's closing log line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecu_proxy.models import FrameKind, UpstreamResult

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

# Frames whose upload we time (the ECU waits for EMA's answer to these).
UPLOAD_KINDS = frozenset({FrameKind.DATA, FrameKind.RECONCILE_QUERY, FrameKind.CONTROL})

type Report = Callable[[UpstreamResult, float | None, str | None], None]


class UploadTimer:
    """The upload of one connection waiting for EMA's answer, if any."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        window: float,
        report: Report,
        note: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._window = window
        self._report = report
        self._note = note
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False

    def sent(self) -> None:
        """Start the clock for an upload, unless one is waiting already."""
        if self._since is not None:
            return
        self._since = self._loop.time()
        self._timed_out = False
        self._timer = self._loop.call_later(self._window, self._expired)

    def answered(self, now: float) -> None:
        """EMA sent bytes: report the waiting upload as answered."""
        if self._since is None:
            return
        rtt_ms = (now - self._since) * 1000
        self._since = None
        self.cancel()
        self._note(f"ok ({rtt_ms:.1f} ms)")
        self._report(UpstreamResult.OK, rtt_ms, None)

    def unanswered(self, detail: str) -> None:
        """EMA's side ended: report a waiting upload, unless its window already did."""
        if self._since is None or self._timed_out:
            return
        self._since = None
        self.cancel()
        self._note(detail)
        self._report(UpstreamResult.TIMEOUT, None, detail)

    def cancel(self) -> None:
        """Stop the clock without a report (the connection is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._since is None:
            return
        self._timed_out = True
        self._note(f"no reply within {self._window:g} s")
        self._report(
            UpstreamResult.TIMEOUT,
            None,
            f"EMA did not answer within {self._window:g} s",
        )
