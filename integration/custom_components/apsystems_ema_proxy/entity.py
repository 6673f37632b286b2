"""Base entity of the APsystems ECU Proxy integration."""

from typing import TYPE_CHECKING, override

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .contract.state import Channel, Ecu, Inverter
from .coordinator import EmaProxyCoordinator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


@callback
def async_add_dynamic_entities(
    coordinator: EmaProxyCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
    entities: "Callable[[EmaProxyCoordinator], Iterable[EmaProxyEntity]]",
) -> None:
    """Add a platform's entities now and whenever the service reports new devices."""

    @callback
    def add_new_entities() -> None:
        if not coordinator.accepting_entities:
            return
        new = [
            entity
            for entity in entities(coordinator)
            if entity.unique_id not in coordinator.added_unique_ids
        ]
        coordinator.added_unique_ids.update(e.unique_id for e in new if e.unique_id)
        if new:
            async_add_entities(new)

    add_new_entities()
    coordinator.async_add_new_entities_callback(add_new_entities)


class EmaProxyEntity(Entity):
    """An entity fed by the proxy's pushed state for one ECU, inverter or channel."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(
        self,
        coordinator: EmaProxyCoordinator,
        description: EntityDescription,
        ecu_id: str,
        inverter_id: str | None = None,
        channel: int | None = None,
    ) -> None:
        """Identify the entity by the ids of what it measures."""
        self.coordinator = coordinator
        self.entity_description = description
        self.ecu_id = ecu_id
        self.inverter_id = inverter_id
        self.channel = channel
        device_id = inverter_id or ecu_id
        suffix = f"_{channel}" if channel is not None else ""
        self._attr_unique_id = f"{device_id}_{description.key}{suffix}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, device_id)})

    @property
    def ecu(self) -> Ecu | None:
        """Return the state of the entity's ECU."""
        return self.coordinator.ecu(self.ecu_id)

    @property
    def inverter_state(self) -> Inverter | None:
        """Return the state of the entity's inverter."""
        if self.inverter_id is None:
            return None
        return self.coordinator.inverter(self.ecu_id, self.inverter_id)

    @property
    def channel_state(self) -> Channel | None:
        """Return the state of the entity's DC channel."""
        if (inverter := self.inverter_state) is None:
            return None
        for channel in inverter.channels:
            if channel.channel == self.channel:
                return channel
        return None

    @property
    def stale(self) -> bool:
        """Return True when the ECU or inverter sent nothing for too long.

        An inverter missing from the ECU's newest record (the service reports it
        offline) counts as stale at once: it is not producing right now.
        """
        if self.inverter_id is not None:
            inverter = self.inverter_state
            if inverter is not None and not inverter.online:
                return True
            return self.coordinator.is_stale(inverter.last_seen if inverter else None)
        ecu = self.ecu
        return self.coordinator.is_stale(ecu.last_seen if ecu else None)

    @property
    def source_present(self) -> bool:
        """Return True while the service still reports what this entity measures."""
        if self.channel is not None:
            return self.channel_state is not None
        if self.inverter_id is not None:
            return self.inverter_state is not None
        return self.ecu is not None

    @override
    async def async_added_to_hass(self) -> None:
        """Follow the coordinator's updates for this ECU."""
        await super().async_added_to_hass()
        self.async_on_remove(
            # An inverter may move to a replacement ECU: its entities follow every
            # ECU's updates (see EmaProxyCoordinator.inverter).
            self.coordinator.async_add_listener(
                self.ecu_id if self.inverter_id is None else None, self._handle_update
            )
        )
        self._update_from_state()

    @override
    async def async_will_remove_from_hass(self) -> None:
        """Allow the entity to be created again if its device comes back."""
        await super().async_will_remove_from_hass()
        if self.unique_id is not None:
            self.coordinator.added_unique_ids.discard(self.unique_id)

    @callback
    def _handle_update(self) -> None:
        """Recompute the state and write it."""
        self._update_from_state()
        self.async_write_ha_state()

    @callback
    def _update_from_state(self) -> None:
        """Recompute attributes from the coordinator's state."""
        self._attr_available = self.coordinator.connected and self.source_present


class EmaProxyServiceEntity(Entity):
    """An entity of the proxy service itself, on the service's device."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(
        self, coordinator: EmaProxyCoordinator, description: EntityDescription
    ) -> None:
        """Identify the entity by its config entry, which outlives server ids."""
        self.coordinator = coordinator
        self.entity_description = description
        entry = coordinator.entry
        assert entry.unique_id is not None
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, entry.unique_id)})

    @override
    async def async_added_to_hass(self) -> None:
        """Follow every update of the coordinator."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.coordinator.async_add_listener(None, self._handle_update)
        )
        self._update_from_state()

    @callback
    def _handle_update(self) -> None:
        """Recompute the state and write it."""
        self._update_from_state()
        self.async_write_ha_state()

    @callback
    def _update_from_state(self) -> None:
        """Recompute attributes from the coordinator's state."""
        self._attr_available = self.coordinator.connected
