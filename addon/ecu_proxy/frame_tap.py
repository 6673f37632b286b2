"""Cut the copy of a session's bytes into frames, one framer per direction.

Both directions are paid from the LAN device's frame budget (``admission``): what EMA
answers on its connection is what that device asked for. Bytes past the budget are
relayed but not cut. A framer that fails is dropped, and its direction is relayed
undecoded from then on: framing can never stop forwarding.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ecu_proxy.framing import Framer
from ecu_proxy.models import Direction

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecu_proxy.admission import Admission

_LOGGER = logging.getLogger(__name__)


class FrameTap:
    """The framers of one session."""

    def __init__(
        self,
        admission: Admission,
        peer_host: str,
        conn_id: int,
        *,
        on_skipped: Callable[[int], None],
        on_failure: Callable[[], None],
    ) -> None:
        self._admission = admission
        self._peer_host = peer_host
        self._conn_id = conn_id
        self._on_skipped = on_skipped
        self._on_failure = on_failure
        self._framers: dict[Direction, Framer | None] = {
            Direction.ECU_TO_EMA: Framer(),
            Direction.EMA_TO_ECU: Framer(),
        }

    def cut(self, direction: Direction, data: bytes) -> tuple[list[bytes], int]:
        """Return the frames ``data`` completes and the bytes skipped undecoded."""
        framer = self._framers[direction]
        if framer is None:
            return [], 0
        try:
            frames, skipped = self._admission.cut(framer, data, self._peer_host)
        except Exception:  # noqa: BLE001 - a framer fault must not stop forwarding
            self._failed(direction)
            return [], 0
        if skipped:
            self._on_skipped(skipped)
        return frames, skipped

    def flush(self, direction: Direction) -> list[bytes]:
        """Return what is left of a direction at its end, as one last chunk."""
        framer = self._framers[direction]
        if framer is None:
            return []
        try:
            return framer.flush()
        except Exception:  # noqa: BLE001 - a framer fault must not stop forwarding
            self._failed(direction)
            return []

    def buffered(self, direction: Direction) -> int:
        """Return the bytes of a direction waiting for the rest of a frame."""
        framer = self._framers[direction]
        return 0 if framer is None else framer.buffered

    def _failed(self, direction: Direction) -> None:
        self._framers[direction] = None
        self._on_failure()
        _LOGGER.exception(
            "Framer failed on connection #%d (%s); relaying continues undecoded",
            self._conn_id,
            direction.value,
        )
