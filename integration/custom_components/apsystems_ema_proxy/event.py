"""An "EMA command" event entity per ECU: fires for every command EMA sends it."""

from collections.abc import Iterator
from typing import override

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .contract.messages import EmaCommandData
from .coordinator import EmaProxyConfigEntry
from .ema_commands import ACTIONS, describe, ecu_name, signal_ema_command
from .entity import EmaProxyEntity, EntitySpec, async_add_dynamic_entities
from .models import ProxyState, answer_text, command_name

PARALLEL_UPDATES = 0

EMA_COMMAND = EventEntityDescription(
    key="ema_command",
    translation_key="ema_command",
    event_types=list(ACTIONS),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EmaProxyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add an event entity for every ECU now and for ECUs that appear later."""
    async_add_dynamic_entities(entry.runtime_data, async_add_entities, _specs)


def _specs(state: ProxyState) -> Iterator[EntitySpec]:
    for ecu in state.ecus.values():
        yield EntitySpec(EmaCommandEntity, EMA_COMMAND, ecu.ecu_id)


class EmaCommandEntity(EmaProxyEntity, EventEntity):
    """Fires with the action EMA asked for and whether the guard blocked it."""

    entity_description: EventEntityDescription

    @override
    async def async_added_to_hass(self) -> None:
        """Listen for this ECU's commands."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                signal_ema_command(self.coordinator.config_entry.entry_id, self.ecu_id),
                self._async_command,
            )
        )

    @callback
    def _async_command(self, command: EmaCommandData) -> None:
        action = command.action if command.action in ACTIONS else "unknown"
        self._trigger_event(
            action,
            {
                "blocked": command.blocked,
                "changes_plant": command.changes_plant,
                "command": command_name(command),
                "parameters": dict(command.parameters),
                "answer": answer_text(command),
                "blocked_count": command.blocked_count,
                "description": describe(
                    ecu_name(self.coordinator, self.ecu_id),
                    command.action,
                    command.parameters,
                    blocked=command.blocked,
                ),
            },
        )
        self.async_write_ha_state()
