"""The topic layout (see docs/mqtt.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"
HA_ONLINE = "online"
_NOT_OBJECT_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the service publishes or listens to."""

    prefix: str
    discovery_prefix: str
    server_id: str

    @property
    def service_availability(self) -> str:
        """Return the service's availability topic (last will ``offline``)."""
        return f"{self.prefix}/service/{self.server_id}/availability"

    @property
    def service_state(self) -> str:
        """Return the service's own state topic (ECUs seen, version, EMA reachable)."""
        return f"{self.prefix}/service/{self.server_id}/state"

    @property
    def sync(self) -> str:
        """Return the topic the service sends itself to mark "retained all read"."""
        return f"{self.prefix}/service/{self.server_id}/sync"

    @property
    def discovery_configs(self) -> str:
        """Return the filter matching every device-discovery config."""
        return f"{self.discovery_prefix}/device/+/config"

    def ecu_state(self, ecu_id: str) -> str:
        """Return the ECU's state topic."""
        return f"{self.prefix}/{ecu_id}/state"

    def ema_command(self, ecu_id: str) -> str:
        """Return the topic of the ECU's EMA command events."""
        return f"{self.prefix}/{ecu_id}/ema_command"

    def inverter_state(self, ecu_id: str, inverter_id: str) -> str:
        """Return an inverter's state topic under the ECU that reported it."""
        return f"{self.prefix}/{ecu_id}/{inverter_id}/state"

    def inverter_availability(self, ecu_id: str, inverter_id: str) -> str:
        """Return an inverter's availability topic under the ECU that reported it."""
        return f"{self.prefix}/{ecu_id}/{inverter_id}/availability"

    @property
    def ha_status(self) -> str:
        """Return Home Assistant's birth/last-will topic."""
        return f"{self.discovery_prefix}/status"

    def discovery(self, device_id: str) -> str:
        """Return the device-discovery config topic of a device."""
        return f"{self.discovery_prefix}/device/{self.object_id(device_id)}/config"

    def object_id(self, device_id: str) -> str:
        """Return the discovery object id of the service, an ECU or an inverter."""
        return _NOT_OBJECT_ID.sub("_", f"{self.prefix}_{device_id}")
