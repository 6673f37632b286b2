"""Describe the EMA commands in the logbook in plain words."""

from collections.abc import Callable
from typing import Any

from homeassistant.components.logbook.const import (
    LOGBOOK_ENTRY_MESSAGE,
    LOGBOOK_ENTRY_NAME,
)
from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN
from .ema_commands import EVENT_EMA_COMMAND, describe


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the ``ema_command`` bus event."""

    @callback
    def describe_ema_command(event: Event) -> dict[str, str]:
        data: dict[str, Any] = dict(event.data)
        parameters = data.get("parameters")
        return {
            LOGBOOK_ENTRY_NAME: "EMA",
            LOGBOOK_ENTRY_MESSAGE: describe(
                str(data.get("ecu_name") or f"ECU {data.get('ecu_id')}"),
                str(data.get("action") or "unknown"),
                parameters if isinstance(parameters, dict) else {},
                blocked=data.get("blocked") is True,
            ),
        }

    async_describe_event(DOMAIN, EVENT_EMA_COMMAND, describe_ema_command)
