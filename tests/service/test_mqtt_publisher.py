"""MQTT output against a real Mosquitto: topics, discovery, availability, reconnects."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from homeassistant.components.mqtt import binary_sensor as ha_binary_sensor
from homeassistant.components.mqtt import sensor as ha_sensor
from homeassistant.components.mqtt.schemas import DEVICE_DISCOVERY_SCHEMA
from homeassistant.core import HomeAssistant
from mqtt_broker import (
    PASSWORD,
    USERNAME,
    Mosquitto,
    Received,
    data_record,
    subscriber,
    watch_log,
)
from records import CAPTURE, ECU_ID, inverter, raw_inverter
from stand_ins import FakeEcu, free_port

from ecu_proxy.contract.constants import CommandOutcome, GuardMode
from ecu_proxy.contract.messages import EmaCommandData, EmaCommandEvent
from ecu_proxy.hub import Hub
from ecu_proxy.models import UpstreamReport, UpstreamResult
from ecu_proxy.mqtt.entities import RETIRED_ECU_ENTITIES
from ecu_proxy.mqtt.publisher import MqttPublisher
from ecu_proxy.mqtt.status import MqttState
from ecu_proxy.options import Mode, Options
from ecu_proxy.service import Service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from ecu_proxy.models import FrameEvent, Inverter

PREFIX = "apsystems_ecu_proxy"
SERVER_ID = "5e" * 16
SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "state.schema.json").read_text()
)
YC600 = "408000111178"
QS1 = "801000012345"
YC1000 = "501000054321"
UNKNOWN = "999000000001"
ADDON = Path(__file__).parents[2] / "addon"


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    # One broker per test: retained messages must not leak between tests.
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(
        Options(data_dir=tmp_path, capture_frames=False),
        server_id=SERVER_ID,
        version="9.9.9",
        save_delay=0.01,
    )
    await h.start()
    yield h
    await h.stop()


def mqtt_options(port: int, **changes: Any) -> Options:
    return Options(mqtt_enabled=True, mqtt_host="127.0.0.1", mqtt_port=port, **changes)


def record(*inverters: Inverter, minute: int = 0) -> FrameEvent:
    """Return a data record of ECU_ID received now."""
    return data_record(*inverters, minute=minute)


def fleet() -> tuple[Inverter, ...]:
    return (
        inverter("07", YC600),
        inverter("08", QS1),
        inverter("04", YC1000, phases=(229.0, 230.0, 231.0)),
        raw_inverter("77", "0" * 40, UNKNOWN),
    )


@pytest.fixture
async def publisher(hub: Hub, broker: Mosquitto) -> AsyncIterator[MqttPublisher]:
    pub = MqttPublisher(hub, mqtt_options(broker.port), min_delay=0.05)
    pub.start()
    yield pub
    await pub.stop()


def discovery_topic(device_id: str) -> str:
    return f"homeassistant/device/{PREFIX}_{device_id}/config"


def state_topic(*ids: str) -> str:
    return "/".join((PREFIX, *ids, "state"))


def config_of(received: Received, device_id: str) -> dict[str, Any]:
    text = received.text(discovery_topic(device_id))
    assert text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def schema_of(name: str, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return one definition of docs/state.schema.json, resolvable on its own."""
    piece = dict(SCHEMA["$defs"][name])
    piece["$defs"] = SCHEMA["$defs"]
    if drop:
        piece["required"] = [k for k in piece["required"] if k not in drop]
        piece["properties"] = {
            k: v for k, v in piece["properties"].items() if k not in drop
        }
    return piece


# --- discovery and state ----------------------------------------------------------


@pytest.fixture
async def ha_templates(tmp_path: Path) -> AsyncIterator[HomeAssistant]:
    """Let Home Assistant's validators check templates (they need an instance)."""
    hass = HomeAssistant(str(tmp_path))
    yield hass
    await hass.async_stop(force=True)


async def test_discovery_validates_against_home_assistant_schemas(
    hub: Hub,
    broker: Mosquitto,
    publisher: MqttPublisher,
    ha_templates: HomeAssistant,
) -> None:
    async with subscriber(broker.port) as (_client, received):
        hub.frame_received(record(*fleet()))
        devices = (SERVER_ID, ECU_ID, YC600, QS1, YC1000, UNKNOWN)
        await received.wait_for(
            lambda: all(received.text(discovery_topic(d)) for d in devices)
        )
    platforms: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "sensor": ha_sensor.PLATFORM_SCHEMA_MODERN,
        "binary_sensor": ha_binary_sensor.PLATFORM_SCHEMA_MODERN,
    }
    shared = ("state_topic", "availability", "qos")
    for device_id in devices:
        payload = config_of(received, device_id)
        DEVICE_DISCOVERY_SCHEMA(payload)
        assert payload["origin"]["name"] == "APsystems ECU Proxy"
        for key, component in payload["components"].items():
            if key in RETIRED_ECU_ENTITIES:
                # Platform only: Home Assistant's way to withdraw one component.
                assert component == {"platform": RETIRED_ECU_ENTITIES[key]}
                continue
            # Home Assistant merges the device's shared options into each one.
            merged = {k: payload[k] for k in shared if k not in component}
            merged |= {k: v for k, v in component.items() if k != "platform"}
            validated = platforms[component["platform"]](merged)
            # Nothing we send is silently dropped (a misspelt key would be).
            assert set(merged) <= set(validated), component["unique_id"]


async def test_entities_follow_the_integrations_ids_and_devices(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    async with subscriber(broker.port) as (_client, received):
        hub.frame_received(record(*fleet()))
        await received.wait_for(
            lambda: all(
                received.text(discovery_topic(d))
                for d in (SERVER_ID, ECU_ID, YC600, UNKNOWN)
            )
        )
        service = config_of(received, SERVER_ID)
        ecu = config_of(received, ECU_ID)
        yc600 = config_of(received, YC600)
        yc1000 = config_of(received, YC1000)
        unknown = config_of(received, UNKNOWN)
    assert ecu["device"]["name"] == f"ECU-R {ECU_ID}"
    assert {c.get("unique_id") for c in ecu["components"].values()} - {None} == {
        f"mqtt_{ECU_ID}_{key}"
        for key in (
            "power",
            "energy_today",
            "lifetime_energy",
            "inverters_online",
            "peak_power_today",
            "peak_power_ever",
            "ema_round_trip",
            "ema_upload",
            "reporting",
            "energy_this_hour",
        )
    }
    # The retired "Last report" sensor is withdrawn from older configs.
    assert ecu["components"]["last_report"] == {"platform": "sensor"}
    reporting = ecu["components"]["reporting"]
    assert reporting["json_attributes_topic"] == state_topic(ECU_ID)
    assert "last_reset_value_template" in ecu["components"]["energy_this_hour"]
    assert ecu["device"]["via_device"] == service["device"]["identifiers"][0]
    assert {c["unique_id"] for c in service["components"].values()} == {
        f"mqtt_{SERVER_ID}_{key}" for key in ("ecus_seen", "version", "ema_reachable")
    }
    assert service["state_topic"] == f"{PREFIX}/service/{SERVER_ID}/state"
    assert yc600["device"]["name"] == f"YC600 {YC600}"
    assert yc600["device"]["via_device"] == ecu["device"]["identifiers"][0]
    assert yc600["components"]["channel_power_2"]["name"] == "Power channel 2"
    assert yc600["components"]["channel_power_2"]["unique_id"] == (
        f"mqtt_{YC600}_channel_power_2"
    )
    assert "ac_voltage" in yc600["components"]
    assert "ac_voltage_phase_3" in yc1000["components"]
    assert "ac_voltage" not in yc1000["components"]
    # Unknown inverter layout: only whether it is online, like the integration.
    assert list(unknown["components"]) == ["online"]


async def test_state_payloads_match_the_state_schema(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    async with subscriber(broker.port) as (_client, received):
        hub.frame_received(record(*fleet()))
        await received.wait_for(
            lambda: (
                all(
                    received.text(f"{PREFIX}/{ECU_ID}/{i}/availability")
                    for i in (YC600, QS1, YC1000, UNKNOWN)
                )
                and received.text(state_topic(ECU_ID)) is not None
            )
        )
    snapshot = hub.snapshot()["ecus"][ECU_ID]
    ecu_payload = json.loads(received.text(state_topic(ECU_ID)) or "")
    jsonschema.validate(ecu_payload, schema_of("Ecu", drop=("inverters", "commands")))
    assert ecu_payload == {
        k: v for k, v in snapshot.items() if k not in ("inverters", "commands")
    }
    for inv_id in (YC600, QS1, YC1000, UNKNOWN):
        payload = json.loads(received.text(state_topic(ECU_ID, inv_id)) or "")
        jsonschema.validate(payload, schema_of("Inverter"))
        assert payload == snapshot["inverters"][inv_id]
        availability = received.text(f"{PREFIX}/{ECU_ID}/{inv_id}/availability")
        assert availability == "online"
    assert received.text(f"{PREFIX}/service/{SERVER_ID}/availability") == "online"


async def test_service_state_topic_carries_ecus_version_and_ema_reachable(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    topic = f"{PREFIX}/service/{SERVER_ID}/state"
    async with subscriber(broker.port) as (_client, received):
        await received.wait_for(lambda: received.text(topic) is not None)
        assert json.loads(received.text(topic) or "") == {
            "ecus_seen": 0,
            "version": "9.9.9",
            "ema_reachable": None,
        }
        hub.frame_received(record(inverter("07", YC600)))
        await received.wait_for(
            lambda: json.loads(received.text(topic) or "{}").get("ecus_seen") == 1
        )
        now = datetime.now(UTC)
        hub.upstream_result(
            UpstreamReport(ECU_ID, 8995, UpstreamResult.OK, now, rtt_ms=42.0)
        )
        await received.wait_for(
            lambda: (
                json.loads(received.text(topic) or "{}").get("ema_reachable") is True
            )
        )
        later = now + timedelta(minutes=5)
        hub.upstream_result(
            UpstreamReport(ECU_ID, 8995, UpstreamResult.UNREACHABLE, later)
        )
        await received.wait_for(
            lambda: (
                json.loads(received.text(topic) or "{}").get("ema_reachable") is False
            )
        )
    # Retained: a later subscriber gets it at once.
    async with subscriber(broker.port, topic) as (_client, fresh):
        await fresh.wait_for(lambda: fresh.text(topic) is not None)
    assert json.loads(fresh.text(topic) or "") == {
        "ecus_seen": 1,
        "version": "9.9.9",
        "ema_reachable": False,
    }


async def test_inverter_turns_offline_when_it_goes_stale(
    hub: Hub, broker: Mosquitto
) -> None:
    pub = MqttPublisher(
        hub, mqtt_options(broker.port), stale_after=timedelta(seconds=2)
    )
    pub.start()
    topic = f"{PREFIX}/{ECU_ID}/{YC600}/availability"
    try:
        async with subscriber(broker.port) as (_client, received):
            hub.frame_received(record(inverter("07", YC600)))
            await received.wait_for(lambda: received.text(topic) == "online")
            # No new record: the publisher's own timer flips it, nobody nudges it.
            await received.wait_for(lambda: received.text(topic) == "offline")
    finally:
        await pub.stop()


async def test_inverter_left_out_of_the_newest_record_is_offline(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    topic = f"{PREFIX}/{ECU_ID}/{QS1}/availability"
    async with subscriber(broker.port) as (_client, received):
        hub.frame_received(record(inverter("07", YC600), inverter("08", QS1)))
        await received.wait_for(lambda: received.text(topic) == "online")
        hub.frame_received(record(inverter("07", YC600), minute=5))
        await received.wait_for(lambda: received.text(topic) == "offline")


async def test_ema_command_events_reach_their_topic(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    topic = f"{PREFIX}/{ECU_ID}/ema_command"
    async with subscriber(broker.port) as (_client, received):
        await publisher.connected.wait()
        command = EmaCommandData(
            at=datetime(2024, 2, 6, 10, 0, tzinfo=UTC),
            ecu_id=ECU_ID,
            command="A110",
            inner_command="A110",
            action="set_max_power",
            changes_plant=True,
            parameters={},
            raw_text=None,
            outcome=CommandOutcome.FORWARDED,
            blocked=False,
            guard=GuardMode.OFF,
            answer=None,
            blocked_count=0,
        )
        hub._publish(EmaCommandEvent(seq=hub.last_seq + 1, data=command))
        await received.wait_for(lambda: received.text(topic) is not None)
    message = json.loads(received.text(topic) or "")
    assert message["event"] == "ema_command"
    assert message["action"] == "set_max_power"
    assert message["ecu_id"] == ECU_ID


async def test_vanished_inverter_loses_its_discovery_config(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    async with subscriber(broker.port) as (_client, received):
        hub.frame_received(record(inverter("07", YC600), inverter("08", QS1)))
        await received.wait_for(lambda: bool(received.text(discovery_topic(QS1))))
        # The state forgets the inverter (a lost state file, a cleanup).
        del hub.state.ecus[ECU_ID].inverters[QS1]
        hub.frame_received(record(inverter("07", YC600), minute=5))
        await received.wait_for(lambda: received.text(discovery_topic(QS1)) == "")
        await received.wait_for(lambda: received.text(state_topic(ECU_ID, QS1)) == "")
    assert received.text(discovery_topic(YC600))
    # Retained configs: a fresh subscriber sees the inverter gone for good.
    async with subscriber(broker.port, "homeassistant/device/+/config") as (
        _c,
        fresh,
    ):
        await fresh.wait_for(lambda: bool(fresh.text(discovery_topic(YC600))))
    assert discovery_topic(QS1) not in fresh.latest


async def test_home_assistant_birth_sends_discovery_again(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    topic = discovery_topic(YC600)
    async with subscriber(broker.port) as (client, received):
        hub.frame_received(record(inverter("07", YC600)))
        await received.wait_for(lambda: bool(received.text(topic)))

        def count() -> int:
            return sum(1 for m in received.messages if str(m.topic) == topic)

        before = count()
        await client.publish("homeassistant/status", "online", qos=1)
        await received.wait_for(lambda: count() > before)


async def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, hub: Hub
) -> None:
    (tmp_path / "restart").mkdir()
    broker = Mosquitto(tmp_path / "restart")
    broker.start()
    pub = MqttPublisher(hub, mqtt_options(broker.port), min_delay=0.05)
    pub.start()
    try:
        hub.frame_received(record(inverter("07", YC600), minute=0))
        await pub.connected.wait()
        with watch_log("ecu_proxy.mqtt", "reconnecting with backoff") as lost:
            broker.stop()
            await lost.wait_count(1)  # noticed while idle, nothing to send
        assert not pub.connected.is_set()
        # Records keep coming while the broker is away; the hub takes them all.
        for minute in (5, 10, 15):
            hub.frame_received(record(inverter("07", YC600), minute=minute))
        assert hub.state.ecus[ECU_ID].lifetime_energy_kwh == pytest.approx(2142.9)
        await asyncio.to_thread(broker.start)
        async with subscriber(broker.port) as (_client, received):
            await received.wait_for(
                lambda: (
                    '"lifetime_energy_kwh":2142.9'
                    in (received.text(state_topic(ECU_ID)) or "")
                )
            )
        assert pub.status.state is MqttState.CONNECTED
    finally:
        await pub.stop()
        broker.stop()


async def test_unreachable_broker_at_start_is_retried(
    tmp_path: Path, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "late"
    folder.mkdir()
    broker = Mosquitto(
        folder, port=free_port(), auth_port=free_port(), tls_port=free_port()
    )
    pub = MqttPublisher(hub, mqtt_options(broker.port), min_delay=0.05, max_delay=0.2)
    caplog.set_level(logging.DEBUG, logger="ecu_proxy.mqtt")
    with watch_log("ecu_proxy.mqtt", "still failing") as retries:
        pub.start()
        try:
            hub.frame_received(record(inverter("07", YC600)))
            # Several attempts fail (nothing listens yet), one warning line only.
            await retries.wait_count(2)
            assert pub.status.state is MqttState.DISCONNECTED
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1
            await asyncio.to_thread(broker.start)
            await pub.connected.wait()
            async with subscriber(broker.port) as (_client, received):
                await received.wait_for(
                    lambda: received.text(state_topic(ECU_ID, YC600)) is not None
                )
        finally:
            await pub.stop()
            broker.stop()


async def test_bad_credentials_log_once_show_in_health_and_back_off(
    hub: Hub, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    options = mqtt_options(
        broker.auth_port, mqtt_username=USERNAME, mqtt_password="wrong"
    )
    pub = MqttPublisher(hub, options, min_delay=0.05, max_delay=0.2)
    caplog.set_level(logging.DEBUG, logger="ecu_proxy.mqtt")
    with watch_log("ecu_proxy.mqtt", "still failing") as retries:
        pub.start()
        try:
            await retries.wait_count(3)
        finally:
            await pub.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert "refused the username or password" in errors[0].getMessage()
    assert "wrong" not in errors[0].getMessage()
    status = pub.status.as_dict()
    assert status["state"] == "auth_failed"
    assert status["error"]


async def test_password_and_tls_listeners(hub: Hub, broker: Mosquitto) -> None:
    for options in (
        mqtt_options(broker.auth_port, mqtt_username=USERNAME, mqtt_password=PASSWORD),
        mqtt_options(broker.tls_port, mqtt_tls=True, mqtt_ca_file=broker.ca_file),
    ):
        pub = MqttPublisher(hub, options, min_delay=0.05)
        pub.start()
        try:
            async with asyncio.timeout(20):
                await pub.connected.wait()
        finally:
            await pub.stop()


async def test_tls_with_an_unknown_ca_is_refused(hub: Hub, broker: Mosquitto) -> None:
    # Without the test CA the system CAs cannot verify the broker.
    pub = MqttPublisher(
        hub, mqtt_options(broker.tls_port, mqtt_tls=True), min_delay=0.05
    )
    with watch_log("ecu_proxy.mqtt", "reconnecting with backoff") as failures:
        pub.start()
        try:
            await failures.wait_count(1)
            assert "CERTIFICATE_VERIFY_FAILED" in (pub.status.error or "")
            assert not pub.connected.is_set()
            assert pub.status.state is MqttState.DISCONNECTED
        finally:
            await pub.stop()


# --- the whole service --------------------------------------------------------------


async def test_service_reports_mqtt_in_health_and_hello(
    tmp_path: Path, broker: Mosquitto
) -> None:
    options = mqtt_options(
        broker.port,
        listen="127.0.0.1",
        ports=(free_port(),),
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path,
        mode=Mode.CLOUDLESS,
    )
    service = Service(options)
    await service.start()
    try:
        await service.mqtt.connected.wait()
        base = f"http://127.0.0.1:{service.api_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/health") as response:
                health = await response.json()
            async with http.ws_connect(f"{base}/ws") as ws:
                hello = await ws.receive_json(timeout=5)
    finally:
        await service.stop()
    assert health["mqtt"]["state"] == "connected"
    assert health["mqtt"]["broker"] == f"127.0.0.1:{broker.port}"
    assert health["mqtt"]["discovery"] is True
    assert hello["mqtt_discovery"] is True


CHILD = """
import sys
from ecu_proxy.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_last_will_on_kill_9(tmp_path: Path, broker: Mosquitto) -> None:
    options = {"mode": "cloudless", "mqtt_enabled": True, "mqtt_host": "127.0.0.1"}
    options |= {"mqtt_port": broker.port, "capture_frames": False}
    (tmp_path / "options.json").write_text(json.dumps(options))
    topic = f"{PREFIX}/service/+/availability"
    async with subscriber(broker.port, topic) as (_client, received):

        def states() -> list[str]:
            return [bytes(m.payload).decode() for m in received.messages]

        process = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-c",
                CHILD,
                "serve",
                "--options",
                str(tmp_path / "options.json"),
                "--listen",
                "127.0.0.1",
                "--ports",
                str(free_port()),
                "--api-host",
                "127.0.0.1",
                "--api-port",
                str(free_port()),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            env={**os.environ, "PYTHONPATH": str(ADDON)},
        )
        try:
            await received.wait_for(lambda: "online" in states())
            process.send_signal(signal.SIGKILL)
            await received.wait_for(lambda: states()[-1:] == ["offline"])
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_auto_uses_the_supervisors_broker_and_credentials(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def services_mqtt(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer supervisor-token"
        data = {"host": "127.0.0.1", "port": broker.auth_port, "ssl": False}
        data |= {"username": USERNAME, "password": PASSWORD, "protocol": "3.1.1"}
        return web.json_response({"result": "ok", "data": data})

    async def discovery(_request: web.Request) -> web.Response:
        return web.json_response({"result": "ok", "data": {"uuid": "x"}})

    app = web.Application()
    app.router.add_get("/services/mqtt", services_mqtt)
    app.router.add_post("/discovery", discovery)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    monkeypatch.setenv("SUPERVISOR_TOKEN", "supervisor-token")
    monkeypatch.setenv("SUPERVISOR_URL", f"http://127.0.0.1:{runner.addresses[0][1]}")
    options = Options(
        mqtt_enabled=True,  # mqtt_host stays "auto"
        listen="127.0.0.1",
        ports=(free_port(),),
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path,
        mode=Mode.CLOUDLESS,
        install_integration=False,
    )
    service = Service(options)
    await service.start()
    try:
        async with asyncio.timeout(20):
            await service.mqtt.connected.wait()
        assert service.mqtt.status.broker == f"127.0.0.1:{broker.auth_port}"
    finally:
        await service.stop()
        await runner.cleanup()


async def test_clean_stop_says_offline(
    hub: Hub, broker: Mosquitto, publisher: MqttPublisher
) -> None:
    topic = f"{PREFIX}/service/{SERVER_ID}/availability"
    async with subscriber(broker.port, topic) as (_client, received):
        await received.wait_for(lambda: received.text(topic) == "online")
        await publisher.stop()
        await received.wait_for(lambda: received.text(topic) == "offline")


async def test_devices_lost_across_a_restart_are_withdrawn(
    tmp_path: Path, broker: Mosquitto
) -> None:
    options = mqtt_options(broker.port)

    async def run_once(folder: str, *inverters: Inverter) -> None:
        hub = Hub(
            Options(data_dir=tmp_path / folder), server_id=SERVER_ID, version="9.9.9"
        )
        await hub.start()
        pub = MqttPublisher(hub, options)
        pub.start()
        try:
            async with subscriber(broker.port) as (_client, received):
                hub.frame_received(record(*inverters))
                await received.wait_for(
                    lambda: all(received.text(discovery_topic(i.id)) for i in inverters)
                )
                if folder == "after":  # the restart with a lost state file
                    await received.wait_for(
                        lambda: received.text(discovery_topic(QS1)) == ""
                    )
        finally:
            await pub.stop()
            await hub.stop()

    await run_once("before", inverter("07", YC600), inverter("08", QS1))
    # A device of another proxy instance sharing the broker and the prefix.
    other = discovery_topic("801000099999")
    foreign = {"availability": [{"topic": f"{PREFIX}/service/{'0' * 32}/availability"}]}
    async with subscriber(broker.port, other) as (client, _received):
        await client.publish(other, json.dumps(foreign), qos=1, retain=True)
    await run_once("after", inverter("07", YC600))
    async with subscriber(broker.port) as (_client, fresh):
        await fresh.wait_for(
            lambda: bool(fresh.text(discovery_topic(YC600)) and fresh.text(other))
        )
    assert discovery_topic(QS1) not in fresh.latest
    assert state_topic(ECU_ID, QS1) not in fresh.latest
    assert json.loads(fresh.text(other) or "") == foreign  # not ours: left alone
    # The service's own device is always present, so never swept away.
    assert config_of(fresh, SERVER_ID)["device"]["name"] == "APsystems ECU Proxy"


async def test_relay_and_state_carry_on_while_the_broker_is_away(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "late"
    folder.mkdir()
    broker = Mosquitto(
        folder, port=free_port(), auth_port=free_port(), tls_port=free_port()
    )
    options = mqtt_options(
        broker.port,
        listen="127.0.0.1",
        ports=(free_port(),),
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path / "data",
        mode=Mode.CLOUDLESS,
    )
    service = Service(options)
    await service.start()
    try:
        ecu = await FakeEcu.connect(service.relay_ports[options.ports[0]], "127.0.0.1")
        await ecu.send(CAPTURE)
        # The ECU is answered and the state updated with no broker at all.
        assert await ecu.read_exactly(17) == b"10120240206112214"
        await ecu.close()
        assert service.hub.state.ecus[ECU_ID].last_seen is not None
        assert not service.mqtt.connected.is_set()
        await asyncio.to_thread(broker.start)
        async with subscriber(broker.port) as (_client, received):
            await received.wait_for(
                lambda: received.text(state_topic(ECU_ID, YC600)) is not None,
                within=60,  # reconnect backoff has grown meanwhile
            )
    finally:
        await service.stop()
        broker.stop()


async def test_missing_ca_file_is_reported_and_retried(
    tmp_path: Path, hub: Hub, broker: Mosquitto
) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    options = mqtt_options(broker.tls_port, mqtt_tls=True, mqtt_ca_file=missing)
    pub = MqttPublisher(hub, options, min_delay=0.05, max_delay=0.1)
    with watch_log("ecu_proxy.mqtt", "still failing") as retries:
        pub.start()
        try:
            await retries.wait_count(2)  # the task keeps going after the error
        finally:
            await pub.stop()
    assert pub.status.state is MqttState.DISCONNECTED
    assert f"cannot use mqtt_ca_file {missing}" in (pub.status.error or "")


async def test_auto_waits_for_the_broker_app_to_appear(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked_again = asyncio.Event()  # the first answer was handled by then
    asks = 0
    offered = False

    async def services_mqtt(_request: web.Request) -> web.Response:
        nonlocal asks
        asks += 1
        if asks >= 2:
            asked_again.set()
        if not offered:  # the Mosquitto app is not running yet
            return web.json_response({"result": "error"}, status=400)
        data = {"host": "127.0.0.1", "port": broker.port, "ssl": False}
        return web.json_response({"result": "ok", "data": data})

    app = web.Application()
    app.router.add_get("/services/mqtt", services_mqtt)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    monkeypatch.setenv("SUPERVISOR_TOKEN", "supervisor-token")
    monkeypatch.setenv("SUPERVISOR_URL", f"http://127.0.0.1:{runner.addresses[0][1]}")
    monkeypatch.setattr("ecu_proxy.service.MQTT_LOOKUP_DELAY", 0.05)
    options = Options(
        mqtt_enabled=True,
        listen="127.0.0.1",
        ports=(free_port(),),
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path,
        mode=Mode.CLOUDLESS,
        install_integration=False,
    )
    service = Service(options)
    await service.start()
    try:
        await asked_again.wait()
        assert service.mqtt.status.state is MqttState.NOT_CONFIGURED
        assert "Mosquitto" in (service.mqtt.status.error or "")
        offered = True
        async with asyncio.timeout(20):
            await service.mqtt.connected.wait()
    finally:
        await service.stop()
        await runner.cleanup()
