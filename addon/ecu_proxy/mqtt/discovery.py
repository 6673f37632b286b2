"""Home Assistant device-based discovery payloads: the service, each ECU and inverter.

Each payload lists the entities of ``entities`` as components, with the value
templates that apply the night/stale rule, and unique ids like the integration's,
prefixed with ``mqtt_`` so both can exist side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..contract.constants import EMA_URL
from .availability import STALE_AFTER
from .entities import (
    AC_VOLTAGE,
    CHANNEL_ENTITIES,
    ECU_ENTITIES,
    INVERTER_ENTITIES,
    INVERTER_ONLINE,
    RETIRED_ECU_ENTITIES,
    SERVICE_ENTITIES,
    EntitySpec,
    WhenStale,
    phase_voltage,
)
from .topics import OFFLINE, ONLINE

if TYPE_CHECKING:
    from datetime import timedelta

    from .topics import Topics

UNIQUE_ID_PREFIX = "mqtt_"
MANUFACTURER = "APsystems"
ORIGIN_NAME = "APsystems ECU Proxy"
SERVICE_MANUFACTURER = "APsystems ECU Proxy project"
SERVICE_MODEL = "ECU Proxy"
PROJECT_URL = "https://github.com/apsystems-ecu-proxy/apsystems-ecu-proxy"


def ecu_shape(ecu: dict[str, Any]) -> tuple[Any, ...]:
    """Return everything ``ecu_config`` depends on in an ECU's state."""
    return (ecu["ecu_id"], ecu.get("model"))


def inverter_shape(ecu_id: str, inverter: dict[str, Any]) -> tuple[Any, ...]:
    """Return everything ``inverter_config`` depends on in an inverter's state.

    Comparing this is far cheaper than building and comparing the config on every
    record.
    """
    phases = inverter.get("phase_voltages_v")
    return (
        ecu_id,
        inverter["id"],
        inverter.get("family"),
        inverter.get("type_code"),
        None if phases is None else len(phases),
        tuple(c["channel"] for c in inverter.get("channels") or ()),
    )


def _fresh_test(stale_after: timedelta, *, inverter: bool) -> str:
    """Return a Jinja test of the night/stale rule (see availability.is_fresh)."""
    seconds = int(stale_after.total_seconds())
    test = (
        "value_json.last_seen and (now() - as_datetime(value_json.last_seen))"
        f".total_seconds() <= {seconds}"
    )
    return f"value_json.online and {test}" if inverter else test


# The hour of ``energy_this_hour_kwh`` is the ECU's wall clock, read in Home
# Assistant's time zone like the integration does; once that hour is over the
# meter shows 0 and its cycle starts on the current hour.
_HOUR = (
    "{% set s = value_json.hour_start %}"
    "{% set start = as_datetime(s).replace(tzinfo=now().tzinfo) if s else none %}"
    "{% set hour = now().replace(minute=0, second=0, microsecond=0) %}"
    "{% set current = start is not none and start >= hour %}"
)


def _template(spec: EntitySpec, path: str, fresh: str) -> str:
    """Return the value template of an entity whose value is at ``path``."""
    if spec.key == "ema_upload":
        # Unknown before the first upload and in cloudless mode, like the integration.
        return (
            "{% set r = value_json.upstream.result %}"
            "{{ 'None' if r in (none, 'cloudless') "
            "else ('ON' if r == 'ok' else 'OFF') }}"
        )
    if spec.key == "reporting":
        return f"{{{{ 'ON' if {fresh} else 'OFF' }}}}"
    if spec.key == "energy_this_hour":
        return f"{_HOUR}{{{{ value_json.{path} if current else 0 }}}}"
    if spec.platform == "binary_sensor":  # true, false or null
        return (
            f"{{% set v = value_json.{path} %}}"
            "{{ 'None' if v is none else ('ON' if v else 'OFF') }}"
        )
    if spec.when_stale is WhenStale.ZERO:
        return f"{{{{ value_json.{path} if {fresh} else 0 }}}}"
    return f"{{{{ value_json.{path} }}}}"


def _extras(spec: EntitySpec, state_topic: str) -> dict[str, str]:
    """Return what an entity needs beyond its value (attributes, meter resets)."""
    if spec.key == "reporting":
        return {
            "json_attributes_topic": state_topic,
            "json_attributes_template": (
                "{{ {'last_report': value_json.last_seen} | tojson }}"
            ),
        }
    if spec.key == "energy_this_hour":
        return {
            "last_reset_value_template": (
                f"{_HOUR}{{{{ (start if current else hour).isoformat() }}}}"
            )
        }
    return {}


def _component(
    spec: EntitySpec,
    unique_id: str,
    template: str | None,
    availability: list[dict[str, str]] | None,
    name: str | None = None,
) -> dict[str, Any]:
    """Return one component of a device discovery payload."""
    out: dict[str, Any] = {
        "platform": spec.platform,
        "unique_id": unique_id,
        "name": name or spec.name,
    }
    if template is not None:
        out["value_template"] = template
    optional = {
        "device_class": spec.device_class,
        "state_class": spec.state_class,
        "unit_of_measurement": spec.unit,
        "suggested_display_precision": spec.precision,
        "entity_category": spec.entity_category,
        "icon": spec.icon,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if not spec.enabled_by_default:
        out["enabled_by_default"] = False
    if availability is not None:
        out["availability"] = availability
        out["availability_mode"] = "all"
    return out


def _origin(version: str) -> dict[str, str]:
    return {"name": ORIGIN_NAME, "sw_version": version, "support_url": PROJECT_URL}


def ecu_config(
    topics: Topics,
    ecu: dict[str, Any],
    version: str,
    stale_after: timedelta = STALE_AFTER,
) -> dict[str, Any]:
    """Return the discovery payload of an ECU (a state dict of /api/state)."""
    ecu_id: str = ecu["ecu_id"]
    model = ecu.get("model") or "ECU"
    fresh = _fresh_test(stale_after, inverter=False)
    state_topic = topics.ecu_state(ecu_id)
    components: dict[str, Any] = {
        spec.key: _component(
            spec,
            f"{UNIQUE_ID_PREFIX}{ecu_id}_{spec.key}",
            _template(spec, spec.path, fresh),
            None,
        )
        | _extras(spec, state_topic)
        for spec in ECU_ENTITIES
    }
    components |= {k: {"platform": p} for k, p in RETIRED_ECU_ENTITIES.items()}
    return {
        "device": {
            "identifiers": [topics.object_id(ecu_id)],
            "name": f"{model} {ecu_id}",
            "manufacturer": MANUFACTURER,
            "model": model,
            "serial_number": ecu_id,
            "configuration_url": EMA_URL,
            "via_device": topics.object_id(topics.server_id),
        },
        "origin": _origin(version),
        "components": components,
        "state_topic": state_topic,
        "availability": [{"topic": topics.service_availability}],
        "qos": 1,
    }


def service_config(topics: Topics, version: str) -> dict[str, Any]:
    """Return the discovery payload of the service's own device."""
    server_id = topics.server_id
    components = {
        spec.key: _component(
            spec,
            f"{UNIQUE_ID_PREFIX}{server_id}_{spec.key}",
            _template(spec, spec.path, ""),
            None,
        )
        for spec in SERVICE_ENTITIES
    }
    return {
        "device": {
            "identifiers": [topics.object_id(server_id)],
            "name": ORIGIN_NAME,
            "manufacturer": SERVICE_MANUFACTURER,
            "model": SERVICE_MODEL,
            "sw_version": version,
        },
        "origin": _origin(version),
        "components": components,
        "state_topic": topics.service_state,
        "availability": [{"topic": topics.service_availability}],
        "qos": 1,
    }


def inverter_config(
    topics: Topics,
    ecu_id: str,
    inverter: dict[str, Any],
    version: str,
    stale_after: timedelta = STALE_AFTER,
) -> dict[str, Any]:
    """Return the discovery payload of an inverter reported by ``ecu_id``."""
    inv_id: str = inverter["id"]
    unknown = inverter.get("family") == "unknown"
    family = "Inverter" if unknown else str(inverter.get("family") or "Inverter")
    service = {"topic": topics.service_availability}
    own = {"topic": topics.inverter_availability(ecu_id, inv_id)}
    fresh = _fresh_test(stale_after, inverter=True)

    def uid(key: str) -> str:
        return f"{UNIQUE_ID_PREFIX}{inv_id}_{key}"

    def add(spec: EntitySpec, key: str, path: str, name: str | None = None) -> None:
        availability = (
            [service, own] if spec.when_stale is WhenStale.UNAVAILABLE else None
        )
        components[key] = _component(
            spec, uid(key), _template(spec, path, fresh), availability, name
        )

    # "Online" follows the availability rule: off at night and when left out.
    online = _component(INVERTER_ONLINE, uid("online"), None, None)
    online |= {
        "state_topic": topics.inverter_availability(ecu_id, inv_id),
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
    }
    components: dict[str, Any] = {"online": online}
    if not unknown:
        # Unknown layout: only the online sensor, as in the integration.
        for spec in INVERTER_ENTITIES:
            add(spec, spec.key, spec.path)
        phases = inverter.get("phase_voltages_v")
        if phases is not None:
            for phase in range(1, len(phases) + 1):
                spec = phase_voltage(phase)
                add(spec, spec.key, spec.path)
        else:
            add(AC_VOLTAGE, AC_VOLTAGE.key, AC_VOLTAGE.path)
        for index, channel in enumerate(inverter.get("channels") or ()):
            number = channel["channel"]
            for spec in CHANNEL_ENTITIES:
                add(
                    spec,
                    f"{spec.key}_{number}",
                    f"channels[{index}].{spec.path}",
                    spec.name.format(channel=number),
                )
    device: dict[str, Any] = {
        "identifiers": [topics.object_id(inv_id)],
        "name": f"{family} {inv_id}",
        "manufacturer": MANUFACTURER,
        "model": family,
        "serial_number": inv_id,
        "via_device": topics.object_id(ecu_id),
    }
    if inverter.get("type_code"):
        device["model_id"] = inverter["type_code"]
    return {
        "device": device,
        "origin": _origin(version),
        "components": components,
        "state_topic": topics.inverter_state(ecu_id, inv_id),
        "availability": [service],
        "qos": 1,
    }
