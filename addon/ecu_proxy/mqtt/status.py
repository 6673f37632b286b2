"""Where the MQTT output stands, as /api/health shows it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class MqttState(enum.StrEnum):
    """Where the MQTT connection stands, as /api/health shows it."""

    DISABLED = "disabled"
    NOT_CONFIGURED = "not_configured"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_FAILED = "auth_failed"


@dataclass(slots=True)
class MqttStatus:
    """The publisher's state for /api/health."""

    enabled: bool
    discovery: bool
    state: MqttState
    broker: str | None = None
    error: str | None = None
    published: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form of docs/api.md."""
        return {
            "enabled": self.enabled,
            "discovery": self.discovery,
            "state": self.state.value,
            "broker": self.broker,
            "error": self.error,
            "published": self.published,
            "dropped": self.dropped,
        }
