"""Register the proxy, its ECUs and their inverters in the device registry."""

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import (
    CONF_ADDON_SLUG,
    DEFAULT_NAME,
    DOMAIN,
    EMA_URL,
    MANUFACTURER,
    SERVICE_MANUFACTURER,
    addon_page_url,
)
from .contract.messages import ServerInfo
from .contract.state import Ecu, Inverter


def via_device_kwargs(
    hass: HomeAssistant, entry: ConfigEntry, parent: str
) -> dict[str, Any]:
    """Return the keyword linking a device to its parent, for this Core version.

    Core 2026.8 and later link by registry id (``via_device_id``) and deprecate the
    identifier tuple (``via_device``) that older versions need; this is the only
    place that knows which one to pass.
    """
    if hasattr(dr, "async_get_device_id_by_identifier"):
        return {
            "via_device_id": dr.async_get_device_id_by_identifier(
                hass, (DOMAIN, parent), config_entry_id=entry.entry_id
            )
        }
    return {"via_device": (DOMAIN, parent)}


@callback
def async_get_entry_device(
    registry: dr.DeviceRegistry, identifier: tuple[str, str], config_entry_id: str
) -> dr.DeviceEntry | None:
    """Return the config entry's device with the identifier, for this Core version.

    Newer Cores look a device up per config entry (``async_get_device_by_identifier``)
    and deprecate ``async_get_device``, the only lookup the oldest Core we admit
    (2025.12) has; this is the only place that knows which one to call.
    """
    if hasattr(registry, "async_get_device_by_identifier"):
        return registry.async_get_device_by_identifier(identifier, config_entry_id)
    return registry.async_get_device(identifiers={identifier})


@callback
def async_register_hub(
    hass: HomeAssistant, entry: ConfigEntry, info: ServerInfo
) -> dr.DeviceEntry:
    """Register (or update) the device of the proxy service itself."""
    slug = entry.data.get(CONF_ADDON_SLUG)
    return dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, info.server_id)},
        entry_type=dr.DeviceEntryType.SERVICE,
        manufacturer=SERVICE_MANUFACTURER,
        name=DEFAULT_NAME,
        model="ECU Proxy",
        sw_version=info.version,
        configuration_url=addon_page_url(slug) if slug else None,
    )


@callback
def async_register_ecu(
    hass: HomeAssistant, entry: ConfigEntry, ecu: Ecu
) -> dr.DeviceEntry:
    """Register an ECU, linked to the proxy."""
    assert entry.unique_id is not None
    model = ecu.model or "ECU"
    return dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, ecu.ecu_id)},
        manufacturer=MANUFACTURER,
        model=model,
        name=f"{model} {ecu.ecu_id}",
        serial_number=ecu.ecu_id,
        configuration_url=EMA_URL,
        **via_device_kwargs(hass, entry, entry.unique_id),
    )


@callback
def async_register_inverter(
    hass: HomeAssistant, entry: ConfigEntry, ecu_id: str, inverter: Inverter
) -> dr.DeviceEntry:
    """Register an inverter, linked to its ECU."""
    family = "Inverter" if inverter.unknown_type else inverter.family
    return dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, inverter.id)},
        manufacturer=MANUFACTURER,
        model=family,
        # The device page shows a model id next to the model ("QS1 (08)"); the
        # type code means nothing to a user and is in the diagnostics instead.
        model_id=None,
        name=f"{family} {inverter.id}",
        serial_number=inverter.id,
        **via_device_kwargs(hass, entry, ecu_id),
    )
