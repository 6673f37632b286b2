"""Sensors of ECUs, inverters and their DC channels."""

import enum
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import override

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_track_time_change
from homeassistant.util import dt as dt_util

from .const import LOGGER
from .contract.state import Channel, Ecu, Inverter
from .coordinator import EmaProxyConfigEntry, EmaProxyCoordinator
from .entity import (
    EmaProxyEntity,
    EmaProxyServiceEntity,
    EntitySpec,
    async_add_dynamic_entities,
)
from .models import ProxyState

# The "Last report" sensor changed with every upload and filled the logbook; the
# time of the last report is now an attribute of the ECU's "Reporting" sensor.
RETIRED_SENSOR_KEYS = ("last_report",)

# Push platform: nothing to poll, no limit needed.
PARALLEL_UPDATES = 0

type SensorValue = float | int | datetime | None


class WhenStale(enum.Enum):
    """What a sensor shows once its ECU or inverter has sent nothing for too long."""

    KEEP = enum.auto()  # last value (energy counters, timestamps)
    ZERO = enum.auto()  # 0 (power: the panels produce nothing at night)
    UNAVAILABLE = enum.auto()  # unavailable (voltage, current, frequency, temperature)


@dataclass(frozen=True, kw_only=True)
class EmaProxySensorEntityDescription(SensorEntityDescription):
    """Describes how a proxy sensor behaves at night and across restarts."""

    when_stale: WhenStale = WhenStale.KEEP
    # An energy counter: restored after a restart, keeps its value when none comes.
    counter: bool = False


@dataclass(frozen=True, kw_only=True)
class EcuSensorEntityDescription(EmaProxySensorEntityDescription):
    """Describes a sensor of an ECU."""

    value_fn: Callable[[Ecu], SensorValue]


@dataclass(frozen=True, kw_only=True)
class InverterSensorEntityDescription(EmaProxySensorEntityDescription):
    """Describes a sensor of an inverter."""

    value_fn: Callable[[Inverter], SensorValue]


@dataclass(frozen=True, kw_only=True)
class ChannelSensorEntityDescription(EmaProxySensorEntityDescription):
    """Describes a sensor of one DC channel of an inverter."""

    value_fn: Callable[[Channel], SensorValue]


ECU_SENSORS: tuple[EcuSensorEntityDescription, ...] = (
    EcuSensorEntityDescription(
        key="power",
        translation_key="power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        when_stale=WhenStale.ZERO,
        value_fn=lambda ecu: ecu.power_w,
    ),
    EcuSensorEntityDescription(
        key="energy_today",
        translation_key="energy_today",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        counter=True,
        value_fn=lambda ecu: ecu.energy_today_kwh,
    ),
    EcuSensorEntityDescription(
        key="lifetime_energy",
        translation_key="lifetime_energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=1,
        counter=True,
        value_fn=lambda ecu: ecu.lifetime_energy_kwh,
    ),
    EcuSensorEntityDescription(
        key="inverters_online",
        translation_key="inverters_online",
        state_class=SensorStateClass.MEASUREMENT,
        when_stale=WhenStale.ZERO,
        value_fn=lambda ecu: ecu.inverters_online,
    ),
    EcuSensorEntityDescription(
        key="peak_power_today",
        translation_key="peak_power_today",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        value_fn=lambda ecu: ecu.peak_power_today_w,
    ),
    EcuSensorEntityDescription(
        key="peak_power_ever",
        translation_key="peak_power_ever",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        value_fn=lambda ecu: ecu.peak_power_ever_w,
    ),
    EcuSensorEntityDescription(
        key="ema_round_trip",
        translation_key="ema_round_trip",
        device_class=SensorDeviceClass.DURATION,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda ecu: ecu.upstream.rtt_ms,
    ),
)

# Resets every hour: a `total` with `last_reset`, so statistics and the Energy
# dashboard see one meter cycle per hour rather than a counter that drops.
ENERGY_THIS_HOUR_SENSOR = EcuSensorEntityDescription(
    key="energy_this_hour",
    translation_key="energy_this_hour",
    device_class=SensorDeviceClass.ENERGY,
    state_class=SensorStateClass.TOTAL,
    native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
    suggested_display_precision=3,
    value_fn=lambda ecu: ecu.energy_this_hour_kwh,
)

INVERTER_SENSORS: tuple[InverterSensorEntityDescription, ...] = (
    InverterSensorEntityDescription(
        key="power",
        translation_key="power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        when_stale=WhenStale.ZERO,
        value_fn=lambda inverter: inverter.power_w,
    ),
    InverterSensorEntityDescription(
        key="energy_today",
        translation_key="energy_today",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        counter=True,
        value_fn=lambda inverter: inverter.energy_today_kwh,
    ),
    InverterSensorEntityDescription(
        key="energy",
        translation_key="energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        counter=True,
        value_fn=lambda inverter: inverter.energy_total_kwh,
    ),
    InverterSensorEntityDescription(
        key="frequency",
        translation_key="frequency",
        device_class=SensorDeviceClass.FREQUENCY,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        suggested_display_precision=1,
        when_stale=WhenStale.UNAVAILABLE,
        value_fn=lambda inverter: inverter.frequency_hz,
    ),
    InverterSensorEntityDescription(
        key="temperature",
        translation_key="temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        suggested_display_precision=0,
        when_stale=WhenStale.UNAVAILABLE,
        value_fn=lambda inverter: inverter.temperature_c,
    ),
    InverterSensorEntityDescription(
        key="peak_power_today",
        translation_key="peak_power_today",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        value_fn=lambda inverter: inverter.peak_power_today_w,
    ),
    InverterSensorEntityDescription(
        key="peak_power_ever",
        translation_key="peak_power_ever",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        value_fn=lambda inverter: inverter.peak_power_ever_w,
    ),
)


@dataclass(frozen=True, kw_only=True)
class ServiceSensorEntityDescription(SensorEntityDescription):
    """Describes a sensor of the proxy service itself."""

    value_fn: Callable[[EmaProxyCoordinator], str | int | None]


def _version(coordinator: EmaProxyCoordinator) -> str | None:
    info = coordinator.client.server_info
    return info.version if info is not None else coordinator.data.version


SERVICE_SENSORS: tuple[ServiceSensorEntityDescription, ...] = (
    ServiceSensorEntityDescription(
        key="ecus_seen",
        translation_key="ecus_seen",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda coordinator: len(coordinator.data.ecus),
    ),
    ServiceSensorEntityDescription(
        key="version",
        translation_key="version",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_version,
    ),
)

AC_VOLTAGE_SENSOR = InverterSensorEntityDescription(
    key="ac_voltage",
    translation_key="ac_voltage",
    device_class=SensorDeviceClass.VOLTAGE,
    state_class=SensorStateClass.MEASUREMENT,
    native_unit_of_measurement=UnitOfElectricPotential.VOLT,
    suggested_display_precision=0,
    when_stale=WhenStale.UNAVAILABLE,
    value_fn=lambda inverter: inverter.ac_voltage_v,
)

CHANNEL_SENSORS: tuple[ChannelSensorEntityDescription, ...] = (
    ChannelSensorEntityDescription(
        key="channel_power",
        translation_key="channel_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        when_stale=WhenStale.ZERO,
        value_fn=lambda channel: channel.power_w,
    ),
    ChannelSensorEntityDescription(
        key="channel_voltage",
        translation_key="channel_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=1,
        when_stale=WhenStale.UNAVAILABLE,
        value_fn=lambda channel: channel.dc_voltage_v,
    ),
    ChannelSensorEntityDescription(
        key="channel_current",
        translation_key="channel_current",
        device_class=SensorDeviceClass.CURRENT,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        suggested_display_precision=1,
        when_stale=WhenStale.UNAVAILABLE,
        value_fn=lambda channel: channel.dc_current_a,
    ),
    ChannelSensorEntityDescription(
        key="channel_energy",
        translation_key="channel_energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        counter=True,
        value_fn=lambda channel: channel.energy_total_kwh,
    ),
)


def _phase_voltage(phase: int, inverter: Inverter) -> float | None:
    """Return the voltage of one grid phase (1-based), if reported."""
    phases = inverter.phase_voltages_v or ()
    return phases[phase - 1] if len(phases) >= phase else None


def phase_voltage_description(phase: int) -> InverterSensorEntityDescription:
    """Describe the AC voltage sensor of one grid phase of a three-phase inverter."""
    return InverterSensorEntityDescription(
        key=f"ac_voltage_phase_{phase}",
        translation_key="ac_voltage_phase",
        translation_placeholders={"phase": str(phase)},
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=0,
        when_stale=WhenStale.UNAVAILABLE,
        value_fn=partial(_phase_voltage, phase),
    )


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EmaProxyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add sensors for what the service reports now and whatever appears later."""
    _async_remove_retired_sensors(hass, entry)
    coordinator = entry.runtime_data
    async_add_entities(
        ServiceSensor(coordinator, description) for description in SERVICE_SENSORS
    )
    async_add_dynamic_entities(coordinator, async_add_entities, _specs)


@callback
def _async_remove_retired_sensors(
    hass: HomeAssistant, entry: EmaProxyConfigEntry
) -> None:
    """Remove registry entries of sensors this integration no longer provides."""
    registry = er.async_get(hass)
    for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
        if entity.domain == "sensor" and entity.unique_id.endswith(
            tuple(f"_{key}" for key in RETIRED_SENSOR_KEYS)
        ):
            LOGGER.info(
                "Removing %s, which this integration no longer provides",
                entity.entity_id,
            )
            registry.async_remove(entity.entity_id)


def _specs(state: ProxyState) -> Iterator[EntitySpec]:
    """Yield a sensor for every value the current state can provide."""
    for ecu in state.ecus.values():
        for ecu_description in ECU_SENSORS:
            yield EntitySpec(EcuSensor, ecu_description, ecu.ecu_id)
        yield EntitySpec(EcuHourEnergySensor, ENERGY_THIS_HOUR_SENSOR, ecu.ecu_id)
        for inverter in ecu.inverters.values():
            if inverter.unknown_type:
                # Unknown layout: only the online sensor and a repair issue.
                continue
            descriptions = list(INVERTER_SENSORS)
            if inverter.three_phase:
                descriptions.extend(
                    phase_voltage_description(phase)
                    for phase in range(1, len(inverter.phase_voltages_v or ()) + 1)
                )
            else:
                descriptions.append(AC_VOLTAGE_SENSOR)
            for description in descriptions:
                yield EntitySpec(InverterSensor, description, ecu.ecu_id, inverter.id)
            for channel in inverter.channels:
                for channel_description in CHANNEL_SENSORS:
                    yield EntitySpec(
                        ChannelSensor,
                        channel_description,
                        ecu.ecu_id,
                        inverter.id,
                        channel.channel,
                    )


class EmaProxySensor(EmaProxyEntity, RestoreSensor):
    """A sensor that goes to 0, unavailable or holds its value when data stops."""

    entity_description: EmaProxySensorEntityDescription

    @abstractmethod
    def _value(self) -> SensorValue:
        """Return the value the service reports now."""

    @property
    @override
    def available(self) -> bool:
        """Return False also for a live value (voltage, ...) that went stale."""
        return super().available and not (
            self.entity_description.when_stale is WhenStale.UNAVAILABLE and self.stale
        )

    @override
    async def async_added_to_hass(self) -> None:
        """Restore energy counters, then compute the first state."""
        if self.entity_description.counter and (
            last := await self.async_get_last_sensor_data()
        ):
            value = last.native_value
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._attr_native_value = value
        await super().async_added_to_hass()
        self._update_value()

    @callback
    @override
    def _handle_coordinator_update(self) -> None:
        """Recompute the value and write the state."""
        self._update_value()
        super()._handle_coordinator_update()

    @callback
    def _update_value(self) -> None:
        """Apply the night, outage and restart rules to the reported value.

        While unavailable the value is kept for when the entity comes back.
        """
        description = self.entity_description
        if not self.available:
            return
        if description.when_stale is WhenStale.ZERO and self.stale:
            self._attr_native_value = 0
            return
        value = self._value()
        if not description.counter or isinstance(value, int | float):
            # The service already ignores glitches and re-sent old records, so a
            # lower counter is a real reset (a new ECU counter, a lost state file)
            # and Home Assistant's statistics treat it as a new meter cycle.
            self._attr_native_value = value
        # else: an energy counter without a value keeps its last one (no gaps)


class EcuSensor(EmaProxySensor):
    """A sensor of an ECU."""

    entity_description: EcuSensorEntityDescription

    @override
    def _value(self) -> SensorValue:
        """Return the ECU's value."""
        ecu = self.ecu
        return self.entity_description.value_fn(ecu) if ecu else None


class EcuHourEnergySensor(EcuSensor):
    """The ECU's energy this hour: 0 once the hour of the service's figure is over."""

    @override
    async def async_added_to_hass(self) -> None:
        """Also update on the hour, when no record may come (at night)."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_track_time_change(self.hass, self._on_the_hour, minute=0, second=0)
        )

    @callback
    def _on_the_hour(self, _now: datetime) -> None:
        self._handle_coordinator_update()

    @callback
    @override
    def _update_value(self) -> None:
        """Take the service's figure while its hour lasts, else start at 0."""
        super()._update_value()
        if not self.available:
            return
        this_hour = dt_util.now().replace(minute=0, second=0, microsecond=0)
        ecu = self.ecu
        # The hour is the ECU's wall clock: read it in Home Assistant's time zone.
        start = (
            ecu.hour_start.replace(tzinfo=dt_util.get_default_time_zone())
            if ecu is not None and ecu.hour_start is not None
            else None
        )
        if start is None or start < this_hour:
            self._attr_native_value = 0
            self._attr_last_reset = this_hour
        else:
            self._attr_last_reset = start


class InverterSensor(EmaProxySensor):
    """A sensor of an inverter."""

    entity_description: InverterSensorEntityDescription

    @override
    def _value(self) -> SensorValue:
        """Return the inverter's value."""
        inverter = self.inverter_state
        return self.entity_description.value_fn(inverter) if inverter else None


class ChannelSensor(EmaProxySensor):
    """A sensor of one DC channel, on its inverter's device."""

    entity_description: ChannelSensorEntityDescription

    def __init__(
        self,
        coordinator: EmaProxyCoordinator,
        spec: EntitySpec,
        forget: Callable[[str], None],
    ) -> None:
        """Name the sensor after its channel number."""
        super().__init__(coordinator, spec, forget)
        self._attr_translation_placeholders = {"channel": str(spec.channel)}

    @override
    def _value(self) -> SensorValue:
        """Return the channel's value."""
        channel = self.channel_state
        return self.entity_description.value_fn(channel) if channel else None


class ServiceSensor(EmaProxyServiceEntity, SensorEntity):
    """A sensor of the proxy service itself."""

    entity_description: ServiceSensorEntityDescription

    @property
    @override
    def native_value(self) -> str | int | None:
        """Read the value from the coordinator."""
        return self.entity_description.value_fn(self.coordinator)
