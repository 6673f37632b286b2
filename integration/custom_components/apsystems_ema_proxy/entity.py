"""Base entities of the APsystems ECU Proxy integration and how they are added."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, NamedTuple, override

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EmaProxyCoordinator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from homeassistant.helpers.entity import EntityDescription
    from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

    from .contract.state import Channel, Ecu, Inverter
    from .models import ProxyState


class EntitySpec(NamedTuple):
    """One entity a platform can provide: enough to know its unique id."""

    cls: type[EmaProxyEntity]
    description: EntityDescription
    ecu_id: str
    inverter_id: str | None = None
    channel: int | None = None

    @property
    def unique_id(self) -> str:
        """Return the unique id: device id, description key and channel."""
        suffix = f"_{self.channel}" if self.channel is not None else ""
        return f"{self.inverter_id or self.ecu_id}_{self.description.key}{suffix}"


@callback
def async_add_dynamic_entities(
    coordinator: EmaProxyCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
    specs: Callable[[ProxyState], Iterable[EntitySpec]],
) -> None:
    """Add a platform's entities now and those the service reports later.

    The platform remembers the unique ids it added and creates entities only for
    new ones. An entity removed from the entity registry (its device was deleted)
    is forgotten, so it comes back with its device; one renamed or disabled stays
    known (Home Assistant re-adds or keeps that same entity).
    """
    entry = coordinator.config_entry
    known: set[str] = set()

    @callback
    def add_new_entities() -> None:
        if entry.state is ConfigEntryState.UNLOAD_IN_PROGRESS:
            return  # an event while the platforms unload must not add entities
        new: list[EntitySpec] = []
        for spec in specs(coordinator.data):
            # Known as it is taken: after an ECU swap the service lists an inverter
            # under both ECUs, and one batch must not hold a unique id twice.
            if spec.unique_id not in known:
                known.add(spec.unique_id)
                new.append(spec)
        if new:
            async_add_entities(
                spec.cls(coordinator, spec, known.discard) for spec in new
            )

    add_new_entities()
    entry.async_on_unload(coordinator.async_add_listener(add_new_entities))


class EmaProxyEntity(CoordinatorEntity[EmaProxyCoordinator]):
    """An entity fed by the proxy's pushed state for one ECU, inverter or channel."""

    _attr_has_entity_name = True

    def __init__(
        self,
        coordinator: EmaProxyCoordinator,
        spec: EntitySpec,
        forget: Callable[[str], None],
    ) -> None:
        """Identify the entity by the ids of what it measures."""
        super().__init__(coordinator)
        self._forget = partial(forget, spec.unique_id)
        self.entity_description = spec.description
        self.ecu_id = spec.ecu_id
        self.inverter_id = spec.inverter_id
        self.channel = spec.channel
        self._attr_unique_id = spec.unique_id
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, spec.inverter_id or spec.ecu_id)}
        )

    @property
    def ecu(self) -> Ecu | None:
        """Return the state of the entity's ECU."""
        return self.coordinator.ecu(self.ecu_id)

    @property
    def inverter_state(self) -> Inverter | None:
        """Return the state of the entity's inverter.

        An inverter may move to a replacement ECU: see EmaProxyCoordinator.inverter.
        """
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

    @property
    @override
    def available(self) -> bool:
        """Return True while connected and the service reports the source."""
        return super().available and self.source_present

    @override
    async def async_removed_from_registry(self) -> None:
        """Let the platform add the entity again if its device comes back.

        Not on every removal from Home Assistant: a new entity id or disabling
        removes the entity too, but the same object is added again (or stays off).
        """
        await super().async_removed_from_registry()
        self._forget()


class EmaProxyServiceEntity(CoordinatorEntity[EmaProxyCoordinator]):
    """An entity of the proxy service itself, on the service's device."""

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: EmaProxyCoordinator, description: EntityDescription
    ) -> None:
        """Identify the entity by its config entry, which outlives server ids."""
        super().__init__(coordinator)
        self.entity_description = description
        entry = coordinator.config_entry
        assert entry.unique_id is not None
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, entry.unique_id)})
