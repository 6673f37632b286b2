"""The APsystems ECU Proxy integration: live ECU and inverter data, pushed."""

from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from . import issues
from .client import Client
from .const import DOMAIN, PLATFORMS
from .coordinator import EmaProxyConfigEntry, EmaProxyCoordinator


async def async_setup_entry(hass: HomeAssistant, entry: EmaProxyConfigEntry) -> bool:
    """Connect to the service and set up the platforms."""
    client = Client(
        entry.data[CONF_URL], async_get_clientsession(hass), entry.data.get(CONF_TOKEN)
    )
    entry.runtime_data = EmaProxyCoordinator(hass, entry, client)
    await entry.runtime_data.async_config_entry_first_refresh()
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EmaProxyConfigEntry) -> bool:
    """Unload the platforms; the coordinator then closes the connection."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: EmaProxyConfigEntry) -> None:
    """Remove the entry's repair issues with it."""
    issues.async_clear_all(hass, entry.entry_id)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: EmaProxyConfigEntry, device_entry: dr.DeviceEntry
) -> bool:
    """Allow removing a device only once the service no longer reports it.

    Without its state (the entry is not set up, or setup is being retried) nothing
    is known to be reported: the device may go, and comes back if it is.
    """
    identifiers = {
        ident for domain, ident in device_entry.identifiers if domain == DOMAIN
    }
    coordinator: EmaProxyCoordinator | None = getattr(entry, "runtime_data", None)
    if coordinator is None or (state := coordinator.received_state) is None:
        return entry.unique_id not in identifiers
    reported = {entry.unique_id}
    for ecu in state.ecus.values():
        reported.add(ecu.ecu_id)
        reported.update(ecu.inverters)
    if identifiers & reported:
        return False
    for identifier in identifiers:
        coordinator.async_forget_device(identifier)
    return True
