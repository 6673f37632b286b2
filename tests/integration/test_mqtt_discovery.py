"""The service's MQTT discovery, seen by Home Assistant's real MQTT integration.

A real Mosquitto runs on loopback; the service's hub and MQTT publisher run in the
test's event loop and Home Assistant's ``mqtt`` integration connects to the same
broker. Also: the repair issue raised when both the integration and MQTT discovery
show the same devices.
"""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from homeassistant.components import mqtt
from homeassistant.const import (
    EVENT_STATE_CHANGED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from mqtt_broker import Mosquitto, data_record
from pytest_homeassistant_custom_component.common import MockConfigEntry
from records import ECU_ID, inverter, raw_inverter

from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.devices import async_get_entry_device
from ecu_proxy.hub import Hub
from ecu_proxy.models import FrameEvent, UpstreamReport, UpstreamResult
from ecu_proxy.mqtt import MqttPublisher
from ecu_proxy.options import Options

from .fake_service import FakeService

YC600 = "408000111178"
QS1 = "801000012345"
UNKNOWN = "999000000001"
SERVER_ID = "5e" * 16


@pytest.fixture(autouse=True)
def frozen_now() -> None:
    """Run on the real clock: two MQTT clients keep time with the event loop."""


@pytest.fixture
def broker(tmp_path: Path, socket_enabled: None) -> Iterator[Mosquitto]:
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    mosquitto = Mosquitto(folder)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(
        Options(data_dir=tmp_path / "data"),
        server_id=SERVER_ID,
        version="9.9.9",
        save_delay=0.01,
    )
    await h.start()
    yield h
    await h.stop()


async def wait_until(
    hass: HomeAssistant, condition: Callable[[], bool], within: float = 30.0
) -> None:
    """Wait until ``condition`` holds, checking at every state change."""
    changed = asyncio.Event()

    @callback
    def on_change(_event: Event[EventStateChangedData]) -> None:
        changed.set()

    unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, on_change)
    try:
        async with asyncio.timeout(within):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        unsub()


async def setup_mqtt(hass: HomeAssistant, broker: Mosquitto) -> MockConfigEntry:
    """Set up Home Assistant's real MQTT integration against the broker."""
    mqtt_entry = MockConfigEntry(
        domain="mqtt",
        data={"broker": "127.0.0.1", "port": broker.port},
        version=1,
        minor_version=2,
    )
    mqtt_entry.add_to_hass(hass)
    # The harness has no configuration.yaml, which MQTT reads for YAML entities.
    with patch("homeassistant.config.load_yaml_config_file", return_value={}):
        assert await hass.config_entries.async_setup(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    return mqtt_entry


def state_of(hass: HomeAssistant, platform: str, unique_id: str) -> str | None:
    """Return the state of the MQTT entity with this unique id, if it exists."""
    found = er.async_get(hass).async_get_entity_id(platform, "mqtt", unique_id)
    state = hass.states.get(found) if found else None
    return state.state if state else None


def attribute_of(
    hass: HomeAssistant, platform: str, unique_id: str, name: str
) -> object:
    """Return an attribute of the MQTT entity with this unique id, if it exists."""
    found = er.async_get(hass).async_get_entity_id(platform, "mqtt", unique_id)
    state = hass.states.get(found) if found else None
    return state.attributes.get(name) if state else None


def stamped_now(event: FrameEvent) -> FrameEvent:
    """Return the record stamped with the ECU's clock showing Home Assistant's now."""
    frame = event.frame
    local = dt_util.now().replace(tzinfo=None, microsecond=0)
    return dataclasses.replace(event, frame=dataclasses.replace(frame, timestamp=local))


def this_hour() -> str:
    """Return the start of the current hour in Home Assistant's time zone."""
    return dt_util.now().replace(minute=0, second=0, microsecond=0).isoformat()


async def test_discovery_creates_the_entities_with_values(
    hass: HomeAssistant, broker: Mosquitto, hub: Hub
) -> None:
    mqtt_entry = await setup_mqtt(hass, broker)

    publisher = MqttPublisher(
        hub, Options(mqtt_enabled=True, mqtt_host="127.0.0.1", mqtt_port=broker.port)
    )
    publisher.start()
    try:
        hub.frame_received(
            stamped_now(
                data_record(
                    inverter("07", YC600),
                    inverter("08", QS1),
                    raw_inverter("77", "0" * 40, UNKNOWN),
                    at=dt_util.utcnow(),
                )
            )
        )
        hub.upstream_result(
            UpstreamReport(ECU_ID, 8995, UpstreamResult.OK, dt_util.utcnow(), 40.0)
        )
        entities = er.async_get(hass)

        def entity_id(platform: str, unique_id: str) -> str | None:
            return entities.async_get_entity_id(platform, "mqtt", unique_id)

        ecu = hub.snapshot()["ecus"][ECU_ID]
        yc600, qs1 = ecu["inverters"][YC600], ecu["inverters"][QS1]
        wanted = {
            ("sensor", f"mqtt_{YC600}_power"): str(yc600["power_w"]),
            ("sensor", f"mqtt_{YC600}_channel_voltage_2"): str(
                yc600["channels"][1]["dc_voltage_v"]
            ),
            ("sensor", f"mqtt_{QS1}_frequency"): str(qs1["frequency_hz"]),
            ("sensor", f"mqtt_{ECU_ID}_lifetime_energy"): str(
                ecu["lifetime_energy_kwh"]
            ),
            ("binary_sensor", f"mqtt_{YC600}_online"): STATE_ON,
            ("binary_sensor", f"mqtt_{UNKNOWN}_online"): STATE_ON,
            ("sensor", f"mqtt_{ECU_ID}_peak_power_today"): str(
                ecu["peak_power_today_w"]
            ),
            ("sensor", f"mqtt_{ECU_ID}_peak_power_ever"): str(ecu["peak_power_ever_w"]),
            ("sensor", f"mqtt_{YC600}_peak_power_today"): str(
                yc600["peak_power_today_w"]
            ),
            ("sensor", f"mqtt_{QS1}_peak_power_ever"): str(qs1["peak_power_ever_w"]),
            ("sensor", f"mqtt_{ECU_ID}_energy_this_hour"): str(
                ecu["energy_this_hour_kwh"]
            ),
            ("binary_sensor", f"mqtt_{ECU_ID}_reporting"): STATE_ON,
            ("binary_sensor", f"mqtt_{ECU_ID}_ema_upload"): STATE_ON,
            ("sensor", f"mqtt_{SERVER_ID}_ecus_seen"): "1",
            ("sensor", f"mqtt_{SERVER_ID}_version"): "9.9.9",
            ("binary_sensor", f"mqtt_{SERVER_ID}_ema_reachable"): STATE_ON,
        }
        # The ECU's wall clock, read in Home Assistant's zone like the integration.
        hour_start = datetime.fromisoformat(ecu["hour_start"]).replace(
            tzinfo=dt_util.get_default_time_zone()
        )
        # Its hour is current: the service's figure, not the 0 of an hour gone by.
        assert ecu["energy_this_hour_kwh"] > 0, ecu["energy_this_hour_kwh"]
        await wait_until(
            hass,
            lambda: (
                all(state_of(hass, *key) == value for key, value in wanted.items())
                and attribute_of(
                    hass, "binary_sensor", f"mqtt_{ECU_ID}_reporting", "last_report"
                )
                == ecu["last_seen"]
                and attribute_of(
                    hass, "sensor", f"mqtt_{ECU_ID}_energy_this_hour", "last_reset"
                )
                == hour_start.isoformat()
            ),
        )
    finally:
        await publisher.stop()
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)

    power = entities.async_get(entity_id("sensor", f"mqtt_{YC600}_power") or "")
    assert power is not None
    assert power.original_device_class == "power"
    assert power.unit_of_measurement == "W"
    assert power.original_name == "Power"
    hourly = entities.async_get(
        entity_id("sensor", f"mqtt_{ECU_ID}_energy_this_hour") or ""
    )
    assert hourly is not None
    assert hourly.capabilities == {"state_class": "total"}
    version = entities.async_get(entity_id("sensor", f"mqtt_{SERVER_ID}_version") or "")
    assert version is not None
    assert version.entity_category == "diagnostic"
    # The retired "Last report" sensor is not created.
    assert entity_id("sensor", f"mqtt_{ECU_ID}_last_report") is None
    # The unknown inverter gets its online sensor only, as in the integration.
    assert entity_id("sensor", f"mqtt_{UNKNOWN}_power") is None
    devices = dr.async_get(hass)
    ecu_device = async_get_entry_device(
        devices, ("mqtt", f"apsystems_ecu_proxy_{ECU_ID}"), mqtt_entry.entry_id
    )
    yc600_device = async_get_entry_device(
        devices, ("mqtt", f"apsystems_ecu_proxy_{YC600}"), mqtt_entry.entry_id
    )
    assert ecu_device is not None
    assert yc600_device is not None
    assert ecu_device.name == f"ECU-R {ECU_ID}"
    assert yc600_device.name == f"YC600 {YC600}"
    assert yc600_device.via_device_id == ecu_device.id
    service_device = async_get_entry_device(
        devices, ("mqtt", f"apsystems_ecu_proxy_{SERVER_ID}"), mqtt_entry.entry_id
    )
    assert service_device is not None
    assert service_device.name == "APsystems ECU Proxy"
    assert service_device.sw_version == "9.9.9"
    assert ecu_device.via_device_id == service_device.id


async def test_entities_follow_the_integrations_night_rules(
    hass: HomeAssistant, broker: Mosquitto, hub: Hub
) -> None:
    mqtt_entry = await setup_mqtt(hass, broker)
    # A short "no data" timeout stands in for the night's 15 minutes.
    publisher = MqttPublisher(
        hub,
        Options(mqtt_enabled=True, mqtt_host="127.0.0.1", mqtt_port=broker.port),
        stale_after=timedelta(seconds=6),  # room for a slow start
    )
    publisher.start()
    try:
        hub.frame_received(data_record(inverter("07", YC600), at=dt_util.utcnow()))
        reported = hub.snapshot()["ecus"][ECU_ID]["inverters"][YC600]
        day = {
            ("sensor", f"mqtt_{YC600}_power"): str(reported["power_w"]),
            ("binary_sensor", f"mqtt_{YC600}_online"): STATE_ON,
        }
        await wait_until(
            hass, lambda: all(state_of(hass, *k) == v for k, v in day.items())
        )
        # No more records: once stale, the integration's rules apply.
        night = {
            ("sensor", f"mqtt_{YC600}_power"): "0",
            ("sensor", f"mqtt_{YC600}_frequency"): STATE_UNAVAILABLE,
            ("sensor", f"mqtt_{YC600}_channel_voltage_1"): STATE_UNAVAILABLE,
            ("sensor", f"mqtt_{YC600}_energy"): str(reported["energy_total_kwh"]),
            ("binary_sensor", f"mqtt_{YC600}_online"): STATE_OFF,
            ("binary_sensor", f"mqtt_{ECU_ID}_reporting"): STATE_OFF,
            # The record's hour (an old ECU clock) is over: the meter shows 0.
            ("sensor", f"mqtt_{ECU_ID}_energy_this_hour"): "0",
        }
        await wait_until(
            hass,
            lambda: (
                all(state_of(hass, *k) == v for k, v in night.items())
                and attribute_of(
                    hass, "sensor", f"mqtt_{ECU_ID}_energy_this_hour", "last_reset"
                )
                == this_hour()
            ),
        )
    finally:
        await publisher.stop()
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)


async def test_retired_last_report_sensor_is_withdrawn(
    hass: HomeAssistant, broker: Mosquitto, hub: Hub
) -> None:
    mqtt_entry = await setup_mqtt(hass, broker)
    prefix = "apsystems_ecu_proxy"
    last_report = ("sensor", f"mqtt_{ECU_ID}_last_report")
    # The retained config an older version of the service left on the broker.
    older = {
        "device": {"identifiers": [f"{prefix}_{ECU_ID}"], "name": f"ECU-R {ECU_ID}"},
        "origin": {"name": "APsystems ECU Proxy"},
        "components": {
            "last_report": {
                "platform": "sensor",
                "unique_id": last_report[1],
                "name": "Last report",
                "value_template": "{{ value_json.last_seen }}",
                "device_class": "timestamp",
            }
        },
        "state_topic": f"{prefix}/{ECU_ID}/state",
        "availability": [{"topic": f"{prefix}/service/{SERVER_ID}/availability"}],
    }
    await mqtt.async_publish(
        hass,
        f"homeassistant/device/{prefix}_{ECU_ID}/config",
        json.dumps(older),
        qos=1,
        retain=True,
    )
    entities = er.async_get(hass)
    await wait_until(
        hass,
        lambda: (
            entities.async_get_entity_id(*last_report[:1], "mqtt", last_report[1])
            is not None
        ),
    )
    publisher = MqttPublisher(
        hub, Options(mqtt_enabled=True, mqtt_host="127.0.0.1", mqtt_port=broker.port)
    )
    publisher.start()
    try:
        hub.frame_received(data_record(inverter("07", YC600), at=dt_util.utcnow()))
        await wait_until(
            hass,
            lambda: (
                entities.async_get_entity_id(*last_report[:1], "mqtt", last_report[1])
                is None
                and state_of(hass, "binary_sensor", f"mqtt_{ECU_ID}_reporting")
                == STATE_ON
            ),
        )
    finally:
        await publisher.stop()
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)


@pytest.mark.parametrize("mqtt_discovery", [True, False])
async def test_repair_issue_when_mqtt_discovery_shows_the_same_devices(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    mqtt_discovery: bool,
) -> None:
    service.mqtt_discovery = mqtt_discovery
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"mqtt_discovery_duplicates_{mock_config_entry.entry_id}"
    )
    assert (issue is not None) is mqtt_discovery
    if issue is not None:
        assert issue.translation_key == "mqtt_discovery_duplicates"
        assert issue.severity is ir.IssueSeverity.WARNING
