"""MQTT options, the Supervisor's broker, the outbox and the entity table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from homeassistant.components.sensor import SensorEntityDescription

from custom_components.apsystems_ema_proxy import binary_sensor, sensor
from ecu_proxy.mqtt.availability import is_fresh, stale_at
from ecu_proxy.mqtt.config import BrokerService, resolve_settings
from ecu_proxy.mqtt.entities import (
    AC_VOLTAGE,
    CHANNEL_ENTITIES,
    ECU_ENTITIES,
    INVERTER_ENTITIES,
    INVERTER_ONLINE,
    RETIRED_ECU_ENTITIES,
    SERVICE_ENTITIES,
    EntitySpec,
    phase_voltage,
)
from ecu_proxy.mqtt.outbox import Message, Outbox
from ecu_proxy.mqtt.service_state import ema_reachable, service_state
from ecu_proxy.options import Options, OptionsError, options_from_mapping
from ecu_proxy.supervisor import SupervisorClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from homeassistant.helpers.entity import EntityDescription

TRANSLATIONS = json.loads(
    (
        Path(__file__).parents[2]
        / "integration/custom_components/apsystems_ema_proxy/translations/en.json"
    ).read_text()
)
SERVER_ID = "0123456789abcdef" * 2
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


# --- options ------------------------------------------------------------------------


def test_mqtt_options_from_the_addon_mapping() -> None:
    options = options_from_mapping(
        {
            "mqtt_enabled": True,
            "mqtt_host": "broker.lan",
            "mqtt_port": 8883,
            "mqtt_username": "proxy",
            "mqtt_password": "pw",
            "mqtt_tls": True,
            "mqtt_ca_file": "/ssl/ca.pem",
            "mqtt_client_id": "",
            "mqtt_topic_prefix": "solar/site1",
            "mqtt_retain": False,
            "mqtt_discovery": False,
            "mqtt_discovery_prefix": "ha",
        }
    ).validate()
    assert options.mqtt_enabled is True
    assert options.mqtt_port == 8883
    assert options.mqtt_ca_file == Path("/ssl/ca.pem")
    assert options.mqtt_client_id is None
    assert options.mqtt_topic_prefix == "solar/site1"
    assert options.mqtt_retain is False


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"mqtt_host": "not a host"}, "mqtt_host"),
        ({"mqtt_port": 0}, "mqtt_port"),
        ({"mqtt_port": 70000}, "mqtt_port"),
        ({"mqtt_topic_prefix": "a/#"}, "mqtt_topic_prefix"),
        ({"mqtt_topic_prefix": "/a"}, "mqtt_topic_prefix"),
        ({"mqtt_discovery_prefix": "home assistant"}, "mqtt_discovery_prefix"),
    ],
)
def test_bad_mqtt_options_are_named(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(OptionsError, match=problem):
        Options().replace(**changes).validate()


def test_mqtt_flags_must_be_booleans() -> None:
    with pytest.raises(OptionsError, match="mqtt_enabled"):
        options_from_mapping({"mqtt_enabled": "yes"})


def test_auto_takes_the_supervisors_broker_and_own_credentials_win() -> None:
    service = BrokerService("core-mosquitto", 1883, "addons", "secret", ssl=False)
    auto = resolve_settings(Options(mqtt_enabled=True), SERVER_ID, service)
    assert (auto.host, auto.port, auto.username, auto.password) == (
        "core-mosquitto",
        1883,
        "addons",
        "secret",
    )
    assert auto.client_id == f"apsystems_ecu_proxy_{SERVER_ID[:12]}"
    own = resolve_settings(
        Options(mqtt_enabled=True, mqtt_username="me", mqtt_password="mine"),
        SERVER_ID,
        service,
    )
    assert (own.username, own.password) == ("me", "mine")


def test_auto_without_a_broker_is_a_clear_error() -> None:
    with pytest.raises(OptionsError, match="Mosquitto"):
        resolve_settings(Options(mqtt_enabled=True), SERVER_ID, None)


def test_a_given_host_ignores_the_supervisor() -> None:
    options = Options(mqtt_enabled=True, mqtt_host="10.0.0.5", mqtt_port=1884)
    service = BrokerService("core-mosquitto", 1883, "addons", "secret", ssl=False)
    settings = resolve_settings(options, SERVER_ID, service)
    assert settings.broker == "10.0.0.5:1884"
    assert settings.username is None


# --- the Supervisor's MQTT service --------------------------------------------------


@pytest.fixture
async def supervisor() -> AsyncIterator[tuple[SupervisorClient, dict[str, Any]]]:
    answer: dict[str, Any] = {"status": 200, "body": {}}

    async def services_mqtt(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        return web.json_response(answer["body"], status=answer["status"])

    app = web.Application()
    app.router.add_get("/services/mqtt", services_mqtt)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield (
            SupervisorClient(session, token="tok", base_url=f"http://127.0.0.1:{port}"),
            answer,
        )
    await runner.cleanup()


async def test_supervisor_mqtt_service_is_read(
    supervisor: tuple[SupervisorClient, dict[str, Any]],
) -> None:
    client, answer = supervisor
    answer["body"] = {
        "result": "ok",
        "data": {
            "host": "core-mosquitto",
            "port": 1883,
            "ssl": False,
            "protocol": "3.1.1",
            "username": "addons",
            "password": "pw",
        },
    }
    assert await client.mqtt_service() == BrokerService(
        "core-mosquitto", 1883, "addons", "pw", ssl=False
    )


async def test_no_mqtt_service_means_none(
    supervisor: tuple[SupervisorClient, dict[str, Any]],
) -> None:
    client, answer = supervisor
    answer["status"] = 400
    answer["body"] = {"result": "error", "message": "No MQTT service"}
    assert await client.mqtt_service() is None


# --- outbox -------------------------------------------------------------------------


def test_outbox_keeps_the_latest_value_per_topic_and_stays_bounded() -> None:
    outbox = Outbox(limit=3)
    for value in ("1", "2", "3"):
        outbox.put(Message("a", value, True))
    outbox.put(Message("b", "x", True))
    outbox.put(Message("c", "y", True))
    outbox.put(Message("d", "z", True))  # full: the oldest topic ("a") goes
    assert outbox.dropped == 3
    assert [(m.topic, m.payload) for m in outbox.take(10)] == [
        ("b", "x"),
        ("c", "y"),
        ("d", "z"),
    ]
    assert len(outbox) == 0


# --- the night/stale rule -----------------------------------------------------------


def test_fresh_means_reported_recently_and_in_the_newest_record() -> None:
    limit = timedelta(minutes=15)
    seen = (NOW - timedelta(minutes=14)).isoformat()
    assert is_fresh({"online": True, "last_seen": seen}, NOW, limit)
    assert not is_fresh({"online": False, "last_seen": seen}, NOW, limit)
    old = (NOW - timedelta(minutes=16)).isoformat()
    assert not is_fresh({"online": True, "last_seen": old}, NOW, limit)
    assert not is_fresh({"online": True, "last_seen": None}, NOW, limit)
    assert is_fresh({"last_seen": seen}, NOW, limit)  # an ECU has no "online"
    assert stale_at({"online": True, "last_seen": seen}, limit) == NOW + timedelta(
        minutes=1
    )


def test_ema_reachable_follows_the_newest_upload_of_any_ecu() -> None:
    def ecu(result: str | None, minute: int) -> dict[str, Any]:
        at = (NOW + timedelta(minutes=minute)).isoformat()
        return {"upstream": {"result": result, "at": at}}

    assert service_state("1.2.3", {}) == {
        "ecus_seen": 0,
        "version": "1.2.3",
        "ema_reachable": None,
    }
    assert ema_reachable({"a": ecu(None, 0), "b": ecu("cloudless", 5)}) is None
    assert ema_reachable({"a": ecu("ok", 0), "b": ecu("timeout", 5)}) is False
    assert ema_reachable({"a": ecu("ok", 10), "b": ecu("timeout", 5)}) is True
    # Cloudless uploads say nothing about EMA, however new.
    assert ema_reachable({"a": ecu("ok", 0), "b": ecu("cloudless", 5)}) is True


# --- the table mirrors the integration ---------------------------------------------


def _name(description: EntityDescription, platform: str) -> str:
    key = description.translation_key
    assert key is not None
    return str(TRANSLATIONS["entity"][platform][key]["name"])


def _check(spec: EntitySpec, description: EntityDescription, platform: str) -> None:
    assert spec.key == description.key
    assert spec.platform == platform
    assert spec.name == _name(description, platform).replace(
        "{phase}", spec.key.rsplit("_", 1)[-1]
    )
    assert spec.device_class == (
        str(description.device_class) if description.device_class else None
    )
    assert spec.entity_category == (
        str(description.entity_category) if description.entity_category else None
    )
    assert spec.enabled_by_default == description.entity_registry_enabled_default
    if platform == "sensor":
        assert isinstance(description, SensorEntityDescription)
        assert spec.state_class == (
            str(description.state_class) if description.state_class else None
        )
        assert spec.unit == description.native_unit_of_measurement
        assert spec.precision == description.suggested_display_precision
        when_stale = getattr(description, "when_stale", sensor.WhenStale.KEEP)
        assert spec.when_stale.name == when_stale.name


def test_entity_table_mirrors_the_integrations_descriptions() -> None:
    ecu_sensors = [s for s in ECU_ENTITIES if s.platform == "sensor"]
    descriptions = (*sensor.ECU_SENSORS, sensor.ENERGY_THIS_HOUR_SENSOR)
    for spec, description in zip(ecu_sensors, descriptions, strict=True):
        _check(spec, description, "sensor")
    ecu_binary = [s for s in ECU_ENTITIES if s.platform == "binary_sensor"]
    binaries = (*binary_sensor.ECU_BINARY_SENSORS, binary_sensor.REPORTING_SENSOR)
    for spec, bdesc in zip(ecu_binary, binaries, strict=True):
        _check(spec, bdesc, "binary_sensor")
    # What the integration retired is what discovery withdraws.
    assert set(RETIRED_ECU_ENTITIES) == set(sensor.RETIRED_SENSOR_KEYS)
    assert not {s.key for s in ECU_ENTITIES} & set(RETIRED_ECU_ENTITIES)
    service_sensors = [s for s in SERVICE_ENTITIES if s.platform == "sensor"]
    for spec, sdesc in zip(service_sensors, sensor.SERVICE_SENSORS, strict=True):
        _check(spec, sdesc, "sensor")
    (reachable,) = [s for s in SERVICE_ENTITIES if s.platform == "binary_sensor"]
    _check(reachable, binary_sensor.EMA_REACHABLE_SENSOR, "binary_sensor")
    for spec, inv in zip(INVERTER_ENTITIES, sensor.INVERTER_SENSORS, strict=True):
        _check(spec, inv, "sensor")
    _check(AC_VOLTAGE, sensor.AC_VOLTAGE_SENSOR, "sensor")
    _check(phase_voltage(2), sensor.phase_voltage_description(2), "sensor")
    (online,) = binary_sensor.INVERTER_BINARY_SENSORS
    _check(INVERTER_ONLINE, online, "binary_sensor")
    for spec, chan in zip(CHANNEL_ENTITIES, sensor.CHANNEL_SENSORS, strict=True):
        _check(spec, chan, "sensor")  # names keep their {channel}
