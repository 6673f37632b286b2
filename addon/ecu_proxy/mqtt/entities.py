"""The entities MQTT discovery announces: the integration's sensors, as a table.

The entities mirror the integration's sensors (sensor.py and binary_sensor.py of
``apsystems_ema_proxy``): the same names, device classes, state classes, units and
entity categories. The table is kept by hand because the service must not import
Home Assistant; tests compare it with the integration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WhenStale(enum.Enum):
    """What an entity shows once its ECU or inverter sent nothing for too long."""

    KEEP = enum.auto()  # last value (energy counters, timestamps)
    ZERO = enum.auto()  # 0 (power: the panels produce nothing at night)
    UNAVAILABLE = enum.auto()  # unavailable (voltage, current, ...)


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One entity of the integration, as MQTT discovery describes it."""

    key: str
    name: str
    path: str  # where the value is in the device's state payload (Jinja)
    platform: str = "sensor"
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    precision: int | None = None
    entity_category: str | None = None
    enabled_by_default: bool = True
    icon: str | None = None
    when_stale: WhenStale = WhenStale.KEEP


ECU_ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec(
        "power", "Power", "power_w", device_class="power",
        state_class="measurement", unit="W", precision=0, when_stale=WhenStale.ZERO,
    ),
    EntitySpec(
        "energy_today", "Energy today", "energy_today_kwh", device_class="energy",
        state_class="total_increasing", unit="kWh", precision=2,
        icon="mdi:solar-power-variant",
    ),
    EntitySpec(
        "lifetime_energy", "Lifetime energy", "lifetime_energy_kwh",
        device_class="energy", state_class="total_increasing", unit="kWh",
        precision=1, icon="mdi:solar-power-variant-outline",
    ),
    EntitySpec(
        "inverters_online", "Inverters online", "inverters_online",
        state_class="measurement", icon="mdi:counter", when_stale=WhenStale.ZERO,
    ),
    EntitySpec(
        "peak_power_today", "Peak power today", "peak_power_today_w",
        device_class="power", state_class="measurement", unit="W", precision=0,
        icon="mdi:chart-bell-curve",
    ),
    EntitySpec(
        "peak_power_ever", "Peak power ever", "peak_power_ever_w",
        device_class="power", unit="W", precision=0, icon="mdi:trophy-outline",
    ),
    EntitySpec(
        "ema_round_trip", "EMA round-trip time", "upstream.rtt_ms",
        device_class="duration", state_class="measurement", unit="ms", precision=0,
        entity_category="diagnostic", enabled_by_default=False,
        icon="mdi:timer-sand",
    ),
    EntitySpec(
        "ema_upload", "EMA upload", "upstream.result", platform="binary_sensor",
        device_class="connectivity", entity_category="diagnostic",
        icon="mdi:cloud-check-outline",
    ),
    # On while the ECU uploads; the time of its last report is an attribute.
    EntitySpec(
        "reporting", "Reporting", "last_seen", platform="binary_sensor",
        device_class="connectivity", icon="mdi:clock-check-outline",
    ),
    # A meter that starts again every hour: `total` with `last_reset`.
    EntitySpec(
        "energy_this_hour", "Energy this hour", "energy_this_hour_kwh",
        device_class="energy", state_class="total", unit="kWh", precision=3,
        icon="mdi:clock-outline",
    ),
)  # fmt: skip

# Entities the integration no longer has, by key -> platform. Every ECU config
# lists them with their platform only, which makes Home Assistant remove an entity
# discovered from an older config (MQTT device discovery's way to withdraw one
# component); for an entity it never had, the entry does nothing.
RETIRED_ECU_ENTITIES: dict[str, str] = {"last_report": "sensor"}

# The service itself: its state is on the service state topic.
SERVICE_ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec(
        "ecus_seen", "ECUs seen", "ecus_seen", state_class="measurement",
        icon="mdi:counter",
    ),
    EntitySpec(
        "version", "Version", "version", entity_category="diagnostic",
        icon="mdi:tag-outline",
    ),
    EntitySpec(
        "ema_reachable", "EMA reachable", "ema_reachable", platform="binary_sensor",
        device_class="connectivity", icon="mdi:cloud-check-outline",
    ),
)  # fmt: skip

INVERTER_ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec(
        "power", "Power", "power_w", device_class="power",
        state_class="measurement", unit="W", precision=0, when_stale=WhenStale.ZERO,
    ),
    EntitySpec(
        "energy_today", "Energy today", "energy_today_kwh", device_class="energy",
        state_class="total_increasing", unit="kWh", precision=3,
        icon="mdi:solar-power-variant",
    ),
    EntitySpec(
        "energy", "Energy", "energy_total_kwh", device_class="energy",
        state_class="total_increasing", unit="kWh", precision=3,
    ),
    EntitySpec(
        "frequency", "Frequency", "frequency_hz", device_class="frequency",
        state_class="measurement", unit="Hz", precision=1,
        when_stale=WhenStale.UNAVAILABLE,
    ),
    EntitySpec(
        "temperature", "Temperature", "temperature_c", device_class="temperature",
        state_class="measurement", unit="°C", precision=0,
        when_stale=WhenStale.UNAVAILABLE,
    ),
    EntitySpec(
        "peak_power_today", "Peak power today", "peak_power_today_w",
        device_class="power", state_class="measurement", unit="W", precision=0,
        icon="mdi:chart-bell-curve",
    ),
    EntitySpec(
        "peak_power_ever", "Peak power ever", "peak_power_ever_w",
        device_class="power", unit="W", precision=0, icon="mdi:trophy-outline",
    ),
)  # fmt: skip

AC_VOLTAGE = EntitySpec(
    "ac_voltage", "AC voltage", "ac_voltage_v", device_class="voltage",
    state_class="measurement", unit="V", precision=0,
    when_stale=WhenStale.UNAVAILABLE,
)  # fmt: skip

INVERTER_ONLINE = EntitySpec(
    "online", "Online", "online", platform="binary_sensor",
    device_class="connectivity", icon="mdi:solar-panel",
)  # fmt: skip

# Channel entities: ``path`` is the field inside the channel's object.
CHANNEL_ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec(
        "channel_power", "Power channel {channel}", "power_w", device_class="power",
        state_class="measurement", unit="W", precision=0, icon="mdi:solar-panel",
        when_stale=WhenStale.ZERO,
    ),
    EntitySpec(
        "channel_voltage", "DC voltage channel {channel}", "dc_voltage_v",
        device_class="voltage", state_class="measurement", unit="V", precision=1,
        when_stale=WhenStale.UNAVAILABLE,
    ),
    EntitySpec(
        "channel_current", "DC current channel {channel}", "dc_current_a",
        device_class="current", state_class="measurement", unit="A", precision=1,
        when_stale=WhenStale.UNAVAILABLE,
    ),
    EntitySpec(
        "channel_energy", "Energy channel {channel}", "energy_total_kwh",
        device_class="energy", state_class="total_increasing", unit="kWh",
        precision=3,
    ),
)  # fmt: skip


def phase_voltage(phase: int) -> EntitySpec:
    """Return the AC voltage entity of one grid phase (1-based)."""
    return EntitySpec(
        f"ac_voltage_phase_{phase}",
        f"AC voltage phase {phase}",
        f"phase_voltages_v[{phase - 1}]",
        device_class="voltage",
        state_class="measurement",
        unit="V",
        precision=0,
        when_stale=WhenStale.UNAVAILABLE,
    )
