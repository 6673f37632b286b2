"""The ECU's lifetime energy counter: it never goes backwards, except on a reset."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

_LOGGER = logging.getLogger("ecu_proxy.state")

# A lifetime counter below ours is a glitch or a re-sent old value, unless this many
# newer records in a row (an hour of uploads) agree: then the ECU counter was reset.
LIFETIME_RESET_RECORDS = 12


def next_lifetime(
    ecu_id: str, current: float | None, streak: int, value: float | None, at: datetime
) -> tuple[float | None, int]:
    """Return the ECU's lifetime counter and lower-streak after a newest record."""
    if value is None or not math.isfinite(value):
        return current, streak
    if current is None or value >= current:
        return value, 0
    if streak + 1 >= LIFETIME_RESET_RECORDS:
        _LOGGER.warning(
            "ECU %s: lifetime energy has read %.1f kWh, below the %.1f kWh "
            "seen before, for %d new records in a row; taking it as a "
            "counter reset",
            ecu_id,
            value,
            current,
            LIFETIME_RESET_RECORDS,
        )
        return value, 0
    _LOGGER.warning(
        "ECU %s: ignoring lifetime energy %.1f kWh of record %s, lower "
        "than the %.1f kWh already seen",
        ecu_id,
        value,
        at.isoformat(),
        current,
    )
    return current, streak + 1
