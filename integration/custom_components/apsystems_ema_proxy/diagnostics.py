"""Diagnostics: connection, server info, decoded state and the last raw frames."""

import dataclasses
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr

from .const import DIAGNOSTICS_FRAMES, DOMAIN
from .coordinator import EmaProxyConfigEntry, EmaProxyCoordinator
from .exceptions import ProxyClientError

TO_REDACT = {CONF_TOKEN}


async def _async_frames(
    coordinator: EmaProxyCoordinator, ids: set[str] | None = None
) -> list[dict[str, Any]] | dict[str, str]:
    """Return the service's last raw frames, only those naming ``ids`` if given."""
    try:
        frames = await coordinator.client.get_frames(limit=DIAGNOSTICS_FRAMES)
    except ProxyClientError as err:
        return {"error": str(err)}
    return [
        dataclasses.asdict(frame)
        for frame in frames
        if ids is None or any(ident in frame.raw for ident in ids)
    ]


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EmaProxyConfigEntry
) -> dict[str, Any]:
    """Return diagnostics of the whole entry."""
    coordinator = entry.runtime_data
    state = coordinator.received_state  # None while setup is retried
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "connection": coordinator.diagnostics(),
        "state": None if state is None else dataclasses.asdict(state),
        "frames": await _async_frames(coordinator),
        "guard": await _async_guard(coordinator),
    }


async def _async_guard(coordinator: EmaProxyCoordinator) -> dict[str, Any] | None:
    """Return the service's EMA command guard: options and blocked counts."""
    try:
        result = await coordinator.client.async_send_command("get_state")
    except ProxyClientError as err:
        return {"error": str(err)}
    state = result.get("state")
    guard = state.get("guard") if isinstance(state, dict) else None
    return dict(guard) if isinstance(guard, dict) else None


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: EmaProxyConfigEntry, device: dr.DeviceEntry
) -> dict[str, Any]:
    """Return diagnostics of one ECU or inverter (or the proxy itself)."""
    coordinator = entry.runtime_data
    ids = {ident for domain, ident in device.identifiers if domain == DOMAIN}
    result: dict[str, Any] = {"connection": coordinator.diagnostics()}
    state = coordinator.received_state  # None while setup is retried
    for ecu in state.ecus.values() if state is not None else ():
        if ecu.ecu_id in ids:
            result["ecu"] = dataclasses.asdict(ecu)
        for inverter in ecu.inverters.values():
            if inverter.id in ids:
                result["ecu_id"] = ecu.ecu_id
                result["inverter"] = dataclasses.asdict(inverter)
    result["frames"] = await _async_frames(
        coordinator, None if entry.unique_id in ids else ids
    )
    return result
