"""Binary sensors: EMA upload status of an ECU, online state of an inverter."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import override

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import EmaProxyConfigEntry, EmaProxyCoordinator
from .entity import EmaProxyEntity, async_add_dynamic_entities
from .models import EcuState, InverterState

# Push platform: nothing to poll, no limit needed.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class EcuBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a binary sensor of an ECU."""

    value_fn: Callable[[EcuState], bool | None]


@dataclass(frozen=True, kw_only=True)
class InverterBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a binary sensor of an inverter."""

    value_fn: Callable[[InverterState], bool | None]


def _upload_ok(ecu: EcuState) -> bool | None:
    """Return whether the last upload reached EMA; None before the first one.

    In cloudless mode nothing is uploaded, so there is nothing to judge either.
    """
    if ecu.upstream.result in (None, "cloudless"):
        return None
    return ecu.upstream.result == "ok"


ECU_BINARY_SENSORS: tuple[EcuBinarySensorEntityDescription, ...] = (
    EcuBinarySensorEntityDescription(
        key="ema_upload",
        translation_key="ema_upload",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_upload_ok,
    ),
)

INVERTER_BINARY_SENSORS: tuple[InverterBinarySensorEntityDescription, ...] = (
    InverterBinarySensorEntityDescription(
        key="online",
        translation_key="online",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        value_fn=lambda inverter: inverter.online,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EmaProxyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add binary sensors now and for whatever appears later."""
    async_add_dynamic_entities(entry.runtime_data, async_add_entities, _entities)


def _entities(coordinator: EmaProxyCoordinator) -> Iterator[EmaProxyEntity]:
    """Yield a binary sensor for every ECU and inverter in the state."""
    for ecu in coordinator.state.ecus.values():
        for ecu_description in ECU_BINARY_SENSORS:
            yield EcuBinarySensor(coordinator, ecu_description, ecu.ecu_id)
        for inverter in ecu.inverters.values():
            for description in INVERTER_BINARY_SENSORS:
                yield InverterBinarySensor(
                    coordinator, description, ecu.ecu_id, inverter.id
                )


class EcuBinarySensor(EmaProxyEntity, BinarySensorEntity):
    """A binary sensor of an ECU."""

    entity_description: EcuBinarySensorEntityDescription

    @callback
    @override
    def _update_from_state(self) -> None:
        """Read the ECU's value."""
        super()._update_from_state()
        ecu = self.ecu
        self._attr_is_on = self.entity_description.value_fn(ecu) if ecu else None


class InverterBinarySensor(EmaProxyEntity, BinarySensorEntity):
    """A binary sensor of an inverter; off once the inverter stops reporting."""

    entity_description: InverterBinarySensorEntityDescription

    @callback
    @override
    def _update_from_state(self) -> None:
        """Read the inverter's value; stale inverters are offline."""
        super()._update_from_state()
        inverter = self.inverter_state
        if inverter is None:
            self._attr_is_on = None
            return
        self._attr_is_on = (
            self.entity_description.value_fn(inverter) is True and not self.stale
        )
