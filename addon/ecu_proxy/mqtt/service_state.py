"""The payload of the service's own state topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_NEVER = datetime.min.replace(tzinfo=UTC)


def _upload_time(upstream: dict[str, Any]) -> datetime:
    at = upstream.get("at")
    if not isinstance(at, str):
        return _NEVER
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        return _NEVER
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def ema_reachable(ecus: dict[str, dict[str, Any]]) -> bool | None:
    """Return whether the newest upload of any ECU reached EMA.

    None before any upload and in cloudless mode, where nothing is uploaded (the
    integration's "EMA reachable" rule).
    """
    uploads = [
        upstream
        for ecu in ecus.values()
        if isinstance(upstream := ecu.get("upstream"), dict)
        and upstream.get("result") not in (None, "cloudless")
    ]
    if not uploads:
        return None
    return bool(max(uploads, key=_upload_time).get("result") == "ok")


def service_state(version: str, ecus: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return what the service's state topic carries."""
    return {
        "ecus_seen": len(ecus),
        "version": version,
        "ema_reachable": ema_reachable(ecus),
    }
