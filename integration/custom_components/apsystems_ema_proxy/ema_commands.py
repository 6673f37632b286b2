"""Commands EMA sent the ECU: fire them on the bus, to the event entity, and warn.

The service publishes one ``ema_command`` event per command with what the proxy did
with it. Here each becomes a bus event (described in the logbook in plain words), a
signal for the ECU's "EMA command" event entity, and, the first time a command that
changes the plant passes while the guard is off, a repair issue explaining the guard.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .const import DOMAIN, ISSUE_EMA_COMMAND_GUARD_OFF
from .contract.messages import EmaCommandEvent
from .models import command_name

if TYPE_CHECKING:
    from .coordinator import EmaProxyCoordinator

EVENT_EMA_COMMAND: Final = f"{DOMAIN}_ema_command"

# Every action the service names (docs/api.md, "EMA commands").
ACTIONS: Final = (
    "request_reports",
    "inverter_list_report",
    "set_inverter_list",
    "time_zone_report",
    "set_time_zone",
    "ema_server_report",
    "set_ema_server",
    "custom_command",
    "set_max_power",
    "max_power_report",
    "switch_inverters",
    "clear_gfdi",
    "set_reporting",
    "ird_report",
    "set_ird",
    "protection_report",
    "inverter_protection_report",
    "set_protection",
    "firmware_update",
    "power_factor_report",
    "set_power_factor",
    "report",
    "unknown",
)

_PLAIN: Final[dict[str, str]] = {
    "request_reports": "send all its reports",
    "inverter_list_report": "report its inverter list",
    "time_zone_report": "report its time zone",
    "ema_server_report": "report its EMA server settings",
    "set_ema_server": "change the EMA server it reports to",
    "set_max_power": "change the inverters' maximum power",
    "max_power_report": "report the inverters' maximum power",
    "clear_gfdi": "clear the inverters' ground-fault (GFDI) lock",
    "ird_report": "report its IRD setting",
    "set_ird": "change its IRD setting",
    "protection_report": "report its grid protection settings",
    "inverter_protection_report": "report the inverters' grid protection settings",
    "set_protection": "change the grid protection settings",
    "firmware_update": "set the inverters' firmware-update flag",
    "power_factor_report": "report the power factor",
    "set_power_factor": "change the power factor",
    "report": "send a report",
}


def signal_ema_command(entry_id: str, ecu_id: str) -> str:
    """Return the dispatcher signal for one ECU's commands."""
    return f"{DOMAIN}_{entry_id}_ema_command_{ecu_id}"


def _ids(parameters: Mapping[str, Any]) -> str:
    ids = parameters.get("inverter_ids")
    return ", ".join(str(i) for i in ids) if isinstance(ids, list) and ids else ""


def describe_request(action: str, parameters: Mapping[str, Any]) -> str:
    """Return what EMA asked for, as the end of "EMA asked the ECU to ..."."""
    match action:
        case "switch_inverters":
            scope = parameters.get("scope")
            if scope == "all_on":
                return "switch all inverters on"
            if scope == "all_off":
                return "switch all inverters off"
            ids = _ids(parameters)
            return f"switch inverters {ids} on or off" if ids else "switch inverters"
        case "set_time_zone":
            zone = parameters.get("time_zone")
            return f"set its time zone to {zone}" if zone else "set its time zone"
        case "set_inverter_list":
            ids = _ids(parameters)
            if parameters.get("mode") == "clear":
                return "clear its inverter list"
            return f"add inverters {ids} to its list" if ids else "change its inverters"
        case "custom_command":
            text = parameters.get("text")
            return f'run the command "{text}"' if text else "run a custom command"
        case "set_reporting":
            state = parameters.get("reporting")
            if state in ("on", "off"):
                return f"switch its reporting to EMA {state}"
            return "switch its reporting to EMA on or off"
        case "unknown":
            return "run a command this proxy does not know"
    return _PLAIN.get(action, action.replace("_", " "))


def describe(
    ecu_name: str, action: str, parameters: Mapping[str, Any], *, blocked: bool
) -> str:
    """Return the logbook line after "EMA": "asked ECU-R 2160… to …; blocked"."""
    outcome = "blocked" if blocked else "forwarded"
    return f"asked {ecu_name} to {describe_request(action, parameters)}; {outcome}"


def ecu_name(coordinator: "EmaProxyCoordinator", ecu_id: str) -> str:
    """Return "ECU-R 216000064136", or "ECU 216000064136" for an unknown model."""
    ecu = coordinator.ecu(ecu_id)
    model = ecu.model if ecu is not None and ecu.model else None
    return f"{model or 'ECU'} {ecu_id}"


@callback
def async_handle_ema_command(
    hass: HomeAssistant, coordinator: "EmaProxyCoordinator", event: EmaCommandEvent
) -> None:
    """Fire the bus event and the entity signal; raise or clear the guard issue."""
    command = event.data
    entry_id = coordinator.config_entry.entry_id
    name = ecu_name(coordinator, command.ecu_id)
    hass.bus.async_fire(
        EVENT_EMA_COMMAND,
        {
            "entry_id": entry_id,
            "ecu_id": command.ecu_id,
            "ecu_name": name,
            "action": command.action,
            "command": command_name(command),
            "blocked": command.blocked,
            "changes_plant": command.changes_plant,
            "parameters": dict(command.parameters),
            "message": describe(
                name, command.action, command.parameters, blocked=command.blocked
            ),
        },
    )
    async_dispatcher_send(hass, signal_ema_command(entry_id, command.ecu_id), command)
    issue_id = f"{ISSUE_EMA_COMMAND_GUARD_OFF}_{entry_id}"
    if command.guard != "off":
        ir.async_delete_issue(hass, DOMAIN, issue_id)
    elif command.changes_plant and not command.blocked:
        ir.async_create_issue(
            hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="ema_command_guard_off",
            translation_placeholders={
                "ecu": name,
                "request": describe_request(command.action, command.parameters),
            },
        )
