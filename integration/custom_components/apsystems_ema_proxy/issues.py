"""Repair issues: raise them when the user must act, clear them when fixed."""

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from .const import (
    CONF_ADDON_SLUG,
    DOMAIN,
    ISSUE_EMA_COMMAND_GUARD_OFF,
    ISSUE_INCOMPATIBLE_SCHEMA,
    ISSUE_NO_ECU_DATA,
    ISSUE_TRACKER_URL,
    ISSUE_UNKNOWN_INVERTER_PREFIX,
    NO_ECU_DATA_ISSUE_AFTER_HOURS,
)
from .contract.constants import EMA_HOST
from .exceptions import IncompatibleSchema

if TYPE_CHECKING:
    from .coordinator import EmaProxyCoordinator

ISSUE_MQTT_DISCOVERY_DUPLICATES = "mqtt_discovery_duplicates"
# An ECU uploads every 5 minutes in daylight. A service that has been reachable
# through these local hours of one day without any ECU data is not being fed.
DAYLIGHT_START = time(10, 0)
DAYLIGHT_END = time(14, 0)


def no_data_ever_due(connected_since: datetime) -> datetime:
    """Return when a service reachable since then has been up through daylight."""
    local = dt_util.as_local(connected_since)
    day = local.date()
    if local.time() > DAYLIGHT_START:
        day += timedelta(days=1)
    return datetime.combine(day, DAYLIGHT_END, tzinfo=dt_util.get_default_time_zone())


@callback
def async_raise_incompatible_schema(
    hass: HomeAssistant, entry_id: str, err: IncompatibleSchema
) -> None:
    """Tell the user which side (app or integration) to update."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        f"{ISSUE_INCOMPATIBLE_SCHEMA}_{entry_id}",
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=(
            "service_too_old" if err.service_too_old else "integration_too_old"
        ),
        translation_placeholders={
            "service_schema": f"{err.server_min_schema}-{err.server_schema}",
            "integration_schema": f"{err.client_min_schema}-{err.client_max_schema}",
        },
    )


@callback
def async_clear_incompatible_schema(hass: HomeAssistant, entry_id: str) -> None:
    """Remove the schema issue once a connection succeeded."""
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_INCOMPATIBLE_SCHEMA}_{entry_id}")


@callback
def async_update_state_issues(
    hass: HomeAssistant, coordinator: "EmaProxyCoordinator"
) -> None:
    """Raise or clear the issues that depend on the service's state."""
    if not coordinator.last_update_success:
        return
    entry_id = coordinator.config_entry.entry_id
    now = dt_util.utcnow()
    newest = coordinator.newest_data()
    if newest is None:
        since = coordinator.connected_since
        due = since is not None and now >= no_data_ever_due(since)
        key = "no_ecu_data_ever"
    else:
        due = now - newest > timedelta(hours=NO_ECU_DATA_ISSUE_AFTER_HOURS)
        key = "no_ecu_data"
    if due:
        # Where the ECU's DNS must point depends on where the service runs.
        addon = bool(coordinator.config_entry.data.get(CONF_ADDON_SLUG))
        ir.async_create_issue(
            hass,
            DOMAIN,
            f"{ISSUE_NO_ECU_DATA}_{entry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=key if addon else f"{key}_remote",
            translation_placeholders={
                "hours": str(NO_ECU_DATA_ISSUE_AFTER_HOURS),
                "ema_host": EMA_HOST,
                "host": urlsplit(coordinator.client.url).hostname or "?",
            },
        )
    else:
        ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_NO_ECU_DATA}_{entry_id}")

    _async_update_mqtt_duplicates(hass, coordinator)

    wanted: set[str] = set()
    for ecu in coordinator.data.ecus.values():
        for inverter in ecu.inverters.values():
            if not inverter.unknown_type:
                continue
            issue_id = f"{ISSUE_UNKNOWN_INVERTER_PREFIX}{entry_id}_{inverter.id}"
            wanted.add(issue_id)
            ir.async_create_issue(
                hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                learn_more_url=ISSUE_TRACKER_URL,
                severity=ir.IssueSeverity.WARNING,
                translation_key="unknown_inverter",
                translation_placeholders={
                    "inverter_id": inverter.id,
                    "type_code": inverter.type_code or "?",
                    "ecu_id": ecu.ecu_id,
                    "raw": inverter.raw or "",
                },
            )
    for issue_id in _unknown_inverter_issues(hass, entry_id) - wanted:
        ir.async_delete_issue(hass, DOMAIN, issue_id)


@callback
def _async_update_mqtt_duplicates(
    hass: HomeAssistant, coordinator: "EmaProxyCoordinator"
) -> None:
    """Warn while the service also announces its entities through MQTT discovery."""
    issue_id = f"{ISSUE_MQTT_DISCOVERY_DUPLICATES}_{coordinator.config_entry.entry_id}"
    info = coordinator.client.server_info
    if info is None or not info.mqtt_discovery:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_MQTT_DISCOVERY_DUPLICATES,
    )


@callback
def async_clear_all(hass: HomeAssistant, entry_id: str) -> None:
    """Remove every issue of an entry that is being removed."""
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_NO_ECU_DATA}_{entry_id}")
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_MQTT_DISCOVERY_DUPLICATES}_{entry_id}")
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_INCOMPATIBLE_SCHEMA}_{entry_id}")
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_EMA_COMMAND_GUARD_OFF}_{entry_id}")
    for issue_id in _unknown_inverter_issues(hass, entry_id):
        ir.async_delete_issue(hass, DOMAIN, issue_id)


def _unknown_inverter_issues(hass: HomeAssistant, entry_id: str) -> set[str]:
    """Return the ids of the entry's unknown-inverter issues that exist now."""
    prefix = f"{ISSUE_UNKNOWN_INVERTER_PREFIX}{entry_id}_"
    return {
        issue_id
        for domain, issue_id in ir.async_get(hass).issues
        if domain == DOMAIN and issue_id.startswith(prefix)
    }
