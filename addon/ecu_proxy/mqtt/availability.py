"""The night/stale rule of the integration, for MQTT availability.

The integration treats an ECU or inverter as *stale* when nothing was received from
it for longer than its "no data" timeout (15 minutes by default), and an inverter as
stale at once when the ECU's newest record left it out (``online`` false). Stale
power values show 0, stale voltages, currents, frequencies and temperatures are
unavailable, energy counters and timestamps keep their value, and the inverter's
"Online" sensor turns off. MQTT reproduces this: the inverter's availability topic
says ``offline`` while it is stale, and the service publishes again at the moment a
device turns stale so Home Assistant re-evaluates its templates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

# The integration's default "no data" timeout.
STALE_AFTER = timedelta(minutes=15)


def last_seen(item: dict[str, Any]) -> datetime | None:
    """Return when the service last received the ECU or inverter of a state dict."""
    text = item.get("last_seen")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def is_fresh(item: dict[str, Any], now: datetime, stale_after: timedelta) -> bool:
    """Return whether an ECU or inverter (state dict) counts as live now.

    Live means: received within ``stale_after`` and, for an inverter, present in
    its ECU's newest record.
    """
    if item.get("online") is False:
        return False
    seen = last_seen(item)
    return seen is not None and now - seen <= stale_after


def stale_at(item: dict[str, Any], stale_after: timedelta) -> datetime | None:
    """Return when a live ECU or inverter turns stale (None if it never was live)."""
    if item.get("online") is False:
        return None
    seen = last_seen(item)
    return None if seen is None else seen + stale_after
