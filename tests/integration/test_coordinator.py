"""Live behaviour: reconnects, night, restarts, new devices and status events."""

import asyncio
import copy
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import CoreState, HomeAssistant, State
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)

from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.coordinator import (
    EmaProxyCoordinator,
    backoff_delay,
)
from custom_components.apsystems_ema_proxy.devices import async_get_entry_device
from custom_components.apsystems_ema_proxy.models import ProxyState

from .conftest import CAPTURE_ECU, QS1_ID, YC600_ID, load_state, wait_for_seq
from .fake_service import SERVER_ID, FakeService

type WaitForState = Callable[[str, Callable[[str | None], bool]], Any]

ECU_POWER = "sensor.ecu_r_216000064136_power"
ECU_LIFETIME = "sensor.ecu_r_216000064136_lifetime_energy"
ECU_TODAY = "sensor.ecu_r_216000064136_energy_today"
ECU_ONLINE_COUNT = "sensor.ecu_r_216000064136_inverters_online"
ECU_REPORTING = "binary_sensor.ecu_r_216000064136_reporting"
ECU_UPLOAD = "binary_sensor.ecu_r_216000064136_ema_upload"
YC600_POWER = "sensor.yc600_408000111178_power"
YC600_ENERGY = "sensor.yc600_408000111178_energy"
YC600_FREQUENCY = "sensor.yc600_408000111178_frequency"
YC600_TEMPERATURE = "sensor.yc600_408000111178_temperature"
YC600_AC_VOLTAGE = "sensor.yc600_408000111178_ac_voltage"
YC600_ONLINE = "binary_sensor.yc600_408000111178_online"
YC600_CH1_POWER = "sensor.yc600_408000111178_power_channel_1"
YC600_CH1_VOLTAGE = "sensor.yc600_408000111178_dc_voltage_channel_1"
YC600_CH1_CURRENT = "sensor.yc600_408000111178_dc_current_channel_1"
YC600_CH1_ENERGY = "sensor.yc600_408000111178_energy_channel_1"
QS1_ENERGY = "sensor.qs1_806000011223_energy"


def state(hass: HomeAssistant, entity_id: str) -> str:
    """Return an entity's state, failing when it does not exist."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def fresh_ecu(service: FakeService, **changes: Any) -> dict[str, Any]:
    """Return the capture ECU as just received now, with some values changed."""
    ecu: dict[str, Any] = copy.deepcopy(service.state["ecus"][CAPTURE_ECU])
    now = dt_util.utcnow().isoformat()
    ecu["last_seen"] = now
    for inverter in ecu["inverters"].values():
        inverter["last_seen"] = now
    ecu.update(changes)
    return ecu


def count_connects(
    coordinator: EmaProxyCoordinator, monkeypatch: pytest.MonkeyPatch
) -> asyncio.Queue[None]:
    """Put an item in the returned queue after every connection attempt."""
    attempts: asyncio.Queue[None] = asyncio.Queue()
    connect = coordinator.client.connect

    async def counting() -> Any:
        try:
            return await connect()
        finally:
            attempts.put_nowait(None)

    monkeypatch.setattr(coordinator.client, "connect", counting)
    return attempts


async def next_attempt(hass: HomeAssistant, attempts: asyncio.Queue[None]) -> None:
    """Let 10 s pass (the backoff's cap) and wait for the reconnect attempt."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=10.001))
    async with asyncio.timeout(10):
        await attempts.get()


def test_backoff_grows_with_jitter_and_caps() -> None:
    """Delays double from 1 s, are jittered down by at most a quarter, cap at 10."""
    for attempt, base in ((1, 1.0), (2, 2.0), (4, 8.0), (5, 10.0), (30, 10.0)):
        delays = {backoff_delay(attempt) for _ in range(20)}
        assert all(0.75 * base <= d <= base for d in delays)
        assert len(delays) > 1


async def test_reconnect_replays_missed_events(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Entities go unavailable, and come back with what was missed (via since)."""
    caplog.set_level(logging.INFO, logger="custom_components.apsystems_ema_proxy")
    coordinator = init_integration.runtime_data
    attempts = count_connects(coordinator, monkeypatch)
    assert state(hass, ECU_POWER) == "190.0"

    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    assert state(hass, ECU_LIFETIME) == STATE_UNAVAILABLE
    assert state(hass, YC600_ONLINE) == STATE_UNAVAILABLE

    # Data arrives at the service while Home Assistant is not connected.
    missed = await service.record(
        fresh_ecu(service, power_w=250, lifetime_energy_kwh=2128.1)
    )

    # A long outage: the backoff grows to its cap, and no further.
    for _ in range(8):
        await next_attempt(hass, attempts)  # the service is still down
    assert state(hass, ECU_POWER) == STATE_UNAVAILABLE

    await service.start()
    await next_attempt(hass, attempts)
    await wait_for_state(ECU_POWER, lambda s: s == "250.0")
    assert state(hass, ECU_LIFETIME) == "2128.1"
    assert state(hass, YC600_ONLINE) == STATE_ON
    assert coordinator.last_seq == missed

    starts = [c for c in service.commands if c["command"] == "start_listening"]
    assert starts[-1]["since"] == 0

    lost = [r for r in caplog.records if "Lost connection" in r.getMessage()]
    restored = [r for r in caplog.records if "restored" in r.getMessage()]
    # One line each, at the default log level (warning); retries stay quiet.
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING
    assert len(restored) == 1
    assert restored[0].levelno == logging.WARNING
    assert not [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r not in (lost[0], restored[0])
    ]

    # Events after the reconnect keep flowing.
    await wait_for_seq(coordinator, await service.record(fresh_ecu(service, power_w=5)))
    assert state(hass, ECU_POWER) == "5.0"


async def test_reconnect_takes_full_state_when_history_is_gone(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the service forgot the missed events it sends the whole state."""
    coordinator = init_integration.runtime_data
    attempts = count_connects(coordinator, monkeypatch)
    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)

    ecu = fresh_ecu(service, power_w=321)
    service.state["ecus"][CAPTURE_ECU] = ecu
    service.seq = 50
    service.history_floor = 40
    await service.start()
    await next_attempt(hass, attempts)
    await wait_for_state(ECU_POWER, lambda s: s == "321.0")
    assert coordinator.last_seq == 50


async def test_reconnect_with_rejected_token_starts_reauth(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token changed on the service while disconnected leads to reauth."""
    attempts = count_connects(init_integration.runtime_data, monkeypatch)
    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    service.token = "changed"
    await service.start()
    await next_attempt(hass, attempts)
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]
    assert state(hass, ECU_POWER) == STATE_UNAVAILABLE


async def test_reconnect_to_incompatible_service_raises_issue(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
    issue_registry: ir.IssueRegistry,
) -> None:
    """An add-on downgraded while running gets an issue until it is fixed."""
    attempts = count_connects(init_integration.runtime_data, monkeypatch)
    issue_id = f"incompatible_schema_{init_integration.entry_id}"
    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    service.schema_version = service.min_schema_version = 0
    await service.start()
    await next_attempt(hass, attempts)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is not None

    await service.stop()
    service.schema_version = service.min_schema_version = 1
    await service.start()
    await next_attempt(hass, attempts)
    await wait_for_state(ECU_POWER, lambda s: s == "190.0")
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None


async def test_night_power_zero_energy_kept(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """After 20 minutes without data: 0 W, energy unchanged, live values gone."""
    before = {e: state(hass, e) for e in (ECU_LIFETIME, ECU_TODAY, YC600_ENERGY)}
    assert state(hass, ECU_POWER) == "190.0"

    frozen_now.tick(timedelta(minutes=20))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()

    assert state(hass, ECU_POWER) == "0"
    assert state(hass, YC600_POWER) == "0"
    assert state(hass, YC600_CH1_POWER) == "0"
    assert state(hass, ECU_ONLINE_COUNT) == "0"
    for entity_id, value in before.items():
        assert state(hass, entity_id) == value
    assert state(hass, YC600_CH1_ENERGY) == "0.001409"
    for entity_id in (
        YC600_FREQUENCY,
        YC600_TEMPERATURE,
        YC600_AC_VOLTAGE,
        YC600_CH1_VOLTAGE,
        YC600_CH1_CURRENT,
    ):
        assert state(hass, entity_id) == STATE_UNAVAILABLE
    assert state(hass, YC600_ONLINE) == STATE_OFF
    reporting = hass.states.get(ECU_REPORTING)
    assert reporting is not None
    assert reporting.state == STATE_OFF
    assert reporting.attributes["last_report"] == "2024-02-06T10:22:20+00:00"

    # Morning: the first record brings everything back.
    coordinator = init_integration.runtime_data
    await wait_for_seq(coordinator, await service.record(fresh_ecu(service)))
    assert state(hass, ECU_POWER) == "190.0"
    assert state(hass, YC600_CH1_VOLTAGE) == "33.8"
    assert state(hass, YC600_ONLINE) == STATE_ON


@pytest.mark.parametrize("state_name", ["state_capture"])
async def test_night_timeout_follows_options(
    hass: HomeAssistant,
    service: FakeService,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A 60 minute timeout keeps values through a 20 minute gap."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        data={"url": service.url, "token": None},
        options={"no_data_timeout": 60},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    frozen_now.tick(timedelta(minutes=20))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert state(hass, ECU_POWER) == "190.0"
    assert state(hass, YC600_FREQUENCY) == "50.0"

    frozen_now.tick(timedelta(minutes=41))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert state(hass, ECU_POWER) == "0"


async def test_restart_restores_energy_without_spikes(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
) -> None:
    """Restored energy never replaces the service's values (the contract always
    carries inverter energy; a lifetime counter the ECU lacks is null)."""

    def restored(entity_id: str, value: float) -> tuple[State, dict[str, Any]]:
        return (
            State(entity_id, str(value)),
            {"native_value": value, "native_unit_of_measurement": "kWh"},
        )

    mock_restore_cache_with_extra_data(
        hass,
        [
            restored(ECU_LIFETIME, 2200.5),  # higher than the service's 2127.9
            restored(YC600_ENERGY, 0.001),  # lower than the service's 0.002828
        ],
    )
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert state(hass, ECU_LIFETIME) == "2127.9"  # the service's counter
    assert state(hass, YC600_ENERGY) == "0.002828"

    coordinator = mock_config_entry.runtime_data
    ecu = fresh_ecu(service, lifetime_energy_kwh=2128.0)
    await wait_for_seq(coordinator, await service.record(ecu))
    assert state(hass, ECU_LIFETIME) == "2128.0"

    ecu = fresh_ecu(service, lifetime_energy_kwh=2201.0)
    ecu["inverters"][QS1_ID]["energy_total_kwh"] = 0.6
    await wait_for_seq(coordinator, await service.record(ecu))
    assert state(hass, ECU_LIFETIME) == "2201.0"
    assert state(hass, QS1_ENERGY) == "0.6"


async def test_energy_follows_the_service_and_keeps_its_value_without_one(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """Energy today follows the service (which owns the day); never becomes unknown."""
    coordinator = init_integration.runtime_data
    seq = await service.record(fresh_ecu(service, energy_today_kwh=0.01))
    await wait_for_seq(coordinator, seq)
    assert state(hass, ECU_TODAY) == "0.01"  # lower (the service restarted empty)

    seq = await service.record(fresh_ecu(service, energy_today_kwh=0.5))
    await wait_for_seq(coordinator, seq)
    assert state(hass, ECU_TODAY) == "0.5"

    seq = await service.record(
        fresh_ecu(service, energy_today_kwh=0.002, today="2024-02-07")
    )
    await wait_for_seq(coordinator, seq)
    assert state(hass, ECU_TODAY) == "0.002"


async def test_new_inverter_and_ecu_appear_without_reload(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    device_registry: dr.DeviceRegistry,
) -> None:
    """inverter_added and a record of a new ECU create devices and entities."""
    coordinator = init_integration.runtime_data
    mixed = load_state("state_mixed")["ecus"]["215000000001"]
    yc1000 = copy.deepcopy(mixed["inverters"]["502000006223"])
    await wait_for_seq(coordinator, await service.inverter_added(CAPTURE_ECU, yc1000))
    await hass.async_block_till_done()

    ecu = async_get_entry_device(
        device_registry, (DOMAIN, CAPTURE_ECU), init_integration.entry_id
    )
    inverter = async_get_entry_device(
        device_registry, (DOMAIN, "502000006223"), init_integration.entry_id
    )
    assert ecu is not None
    assert inverter is not None
    assert inverter.via_device_id == ecu.id
    assert inverter.model == "YC1000"
    assert state(hass, "sensor.yc1000_502000006223_ac_voltage_phase_2") == "231.0"
    assert hass.states.get("sensor.yc1000_502000006223_ac_voltage") is None

    await wait_for_seq(coordinator, await service.record(mixed))
    await hass.async_block_till_done()
    hub = async_get_entry_device(
        device_registry, (DOMAIN, SERVER_ID), init_integration.entry_id
    )
    ecu_c = async_get_entry_device(
        device_registry, (DOMAIN, "215000000001"), init_integration.entry_id
    )
    assert hub is not None
    assert ecu_c is not None
    assert ecu_c.via_device_id == hub.id
    assert state(hass, "sensor.ecu_c_215000000001_power") == "749.0"
    assert state(hass, "sensor.qs1_801000012345_power_channel_4") == "59.0"


async def test_inverter_added_for_unknown_ecu_waits_for_its_record(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """An unknown ECU's inverter waits for its record; its status makes it known."""
    coordinator = init_integration.runtime_data
    inverter = copy.deepcopy(service.state["ecus"][CAPTURE_ECU]["inverters"][YC600_ID])
    inverter["id"] = "408000999999"
    service.state["ecus"]["216000000002"] = {"inverters": {}}
    seq = await service.inverter_added("216000000002", inverter)
    await wait_for_seq(coordinator, seq)
    seq = await service.ecu_status("216000000002", {"result": "ok"})
    await wait_for_seq(coordinator, seq)
    ecu = coordinator.data.ecus["216000000002"]
    assert ecu.upstream.result == "ok"
    assert ecu.inverters == {}
    assert ecu.power_w is None
    assert hass.states.get("sensor.yc600_408000999999_power") is None


async def test_ecu_status_updates_upload_sensor(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """The EMA upload sensor follows ecu_status events."""
    coordinator = init_integration.runtime_data
    assert state(hass, ECU_UPLOAD) == STATE_ON
    at = "2024-02-06T10:27:20+00:00"
    seq = await service.ecu_status(CAPTURE_ECU, {"result": "timeout", "at": at})
    await wait_for_seq(coordinator, seq)
    assert state(hass, ECU_UPLOAD) == STATE_OFF

    seq = await service.ecu_status(CAPTURE_ECU, {"result": None, "at": None})
    await wait_for_seq(coordinator, seq)
    assert state(hass, ECU_UPLOAD) == STATE_UNKNOWN

    # Cloudless mode uploads nothing: neither connected nor disconnected.
    seq = await service.ecu_status(CAPTURE_ECU, {"result": "cloudless", "at": at})
    await wait_for_seq(coordinator, seq)
    assert state(hass, ECU_UPLOAD) == STATE_UNKNOWN


async def test_late_record_updates_counters(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """A late (re-sent) record still moves the energy counters."""
    coordinator = init_integration.runtime_data
    ecu = fresh_ecu(service, lifetime_energy_kwh=2128.4)
    await wait_for_seq(coordinator, await service.record(ecu, late=True))
    assert state(hass, ECU_LIFETIME) == "2128.4"


async def test_event_while_unloading_adds_no_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record that arrives while the platforms unload does not bring them back."""
    coordinator = init_integration.runtime_data
    unload_platforms = hass.config_entries.async_unload_platforms

    async def unload_then_event(*args: Any) -> bool:
        result = await unload_platforms(*args)
        # The listener still runs until shutdown: an event lands now.
        await wait_for_seq(coordinator, await service.record(fresh_ecu(service)))
        await hass.async_block_till_done()
        return result

    monkeypatch.setattr(
        hass.config_entries, "async_unload_platforms", unload_then_event
    )
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    power = hass.states.get("sensor.ecu_r_216000064136_power")
    assert power is None or power.state == STATE_UNAVAILABLE


async def test_inverter_missing_from_the_newest_record_reads_zero(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """An inverter the service reports offline shows 0 W, keeps its energy."""
    coordinator = init_integration.runtime_data
    energy_before = state(hass, YC600_ENERGY)
    ecu = fresh_ecu(service)
    ecu["inverters"][YC600_ID]["online"] = False
    await wait_for_seq(coordinator, await service.record(ecu))
    await hass.async_block_till_done()
    assert state(hass, YC600_POWER) == "0"
    assert state(hass, YC600_CH1_POWER) == "0"
    assert state(hass, YC600_CH1_VOLTAGE) == STATE_UNAVAILABLE
    assert state(hass, YC600_FREQUENCY) == STATE_UNAVAILABLE
    assert state(hass, YC600_ENERGY) == energy_before
    assert state(hass, YC600_ONLINE) == STATE_OFF
    assert state(hass, "sensor.qs1_806000011223_power") != "0"  # still reporting


async def test_reinstalled_service_is_taken_up_by_a_reload(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service that comes back with a new server id is set up afresh."""
    coordinator = init_integration.runtime_data
    attempts = count_connects(coordinator, monkeypatch)
    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    new_id = "0" * 32
    service.server_id = new_id
    service.state["server_id"] = new_id
    await service.start()
    await next_attempt(hass, attempts)
    await hass.async_block_till_done()
    assert init_integration.unique_id == new_id
    await wait_for_state(ECU_POWER, lambda s: s == "190.0")
    listens = [c for c in service.commands if c["command"] == "start_listening"]
    assert "since" not in listens[-1]  # the new service sends its full state


async def test_inverter_follows_a_replacement_ecu(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    device_registry: dr.DeviceRegistry,
) -> None:
    """After an ECU swap the service lists the inverter twice; the newer one wins."""
    coordinator = init_integration.runtime_data
    new_ecu = fresh_ecu(service, ecu_id="216000099999", model="ECU-R")
    new_ecu["inverters"] = {YC600_ID: new_ecu["inverters"][YC600_ID]}
    new_ecu["inverters"][YC600_ID]["power_w"] = 321
    await wait_for_seq(coordinator, await service.record(new_ecu))
    await hass.async_block_till_done()
    assert state(hass, YC600_POWER) == "321.0"
    inverter = async_get_entry_device(
        device_registry, (DOMAIN, YC600_ID), init_integration.entry_id
    )
    parent = async_get_entry_device(
        device_registry, (DOMAIN, "216000099999"), init_integration.entry_id
    )
    assert inverter is not None
    assert parent is not None
    assert inverter.via_device_id == parent.id


async def test_update_entity_keeps_the_connection(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """Asking for an update of a pushed entity neither reconnects nor fails."""
    await async_setup_component(hass, "homeassistant", {})
    await hass.services.async_call(
        "homeassistant", "update_entity", {"entity_id": ECU_POWER}, blocking=True
    )
    await hass.async_block_till_done()
    assert state(hass, ECU_POWER) == "190.0"
    starts = [c for c in service.commands if c["command"] == "start_listening"]
    assert len(starts) == 1
    assert init_integration.runtime_data.last_update_success


async def test_update_entity_while_disconnected_keeps_one_retry(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An update asked for during an outage tries once more, then backs off."""
    attempts = count_connects(init_integration.runtime_data, monkeypatch)
    await async_setup_component(hass, "homeassistant", {})
    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    await hass.services.async_call(
        "homeassistant", "update_entity", {"entity_id": ECU_POWER}, blocking=True
    )
    await attempts.get()
    await next_attempt(hass, attempts)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert attempts.empty()  # one retry pending, not one per request

    await service.start()
    await next_attempt(hass, attempts)
    await wait_for_state(ECU_POWER, lambda s: s == "190.0")


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the messages logged at error level or above."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("lost_while_stopping", [False, True])
async def test_no_reconnect_once_home_assistant_stops(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
    lost_while_stopping: bool,
) -> None:
    """A stopping Home Assistant closes its HTTP session: no attempt uses it."""
    attempts = count_connects(init_integration.runtime_data, monkeypatch)
    if lost_while_stopping:
        hass.set_state(CoreState.stopping)
    await service.stop()
    await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    hass.set_state(CoreState.stopping)  # after the reconnect was planned
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=10.001))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert attempts.empty()
    hass.set_state(CoreState.running)


async def test_unexpected_error_while_listening_reconnects(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    wait_for_state: WaitForState,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug while applying an event is logged; the entities do not freeze."""
    coordinator = init_integration.runtime_data
    attempts = count_connects(coordinator, monkeypatch)

    def broken(self: ProxyState, event: Any) -> ProxyState:
        raise KeyError("a bug")

    with monkeypatch.context() as patched:
        patched.setattr(ProxyState, "apply", broken)
        await service.record(fresh_ecu(service, power_w=250))
        await wait_for_state(ECU_POWER, lambda s: s == STATE_UNAVAILABLE)
    assert not coordinator.last_update_success
    [logged] = [r for r in caplog.records if "Unexpected error" in r.getMessage()]
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None

    await next_attempt(hass, attempts)
    await wait_for_state(ECU_POWER, lambda s: s not in (STATE_UNAVAILABLE, None))
    await wait_for_seq(coordinator, await service.record(fresh_ecu(service, power_w=5)))
    assert state(hass, ECU_POWER) == "5.0"


async def test_replacement_ecu_keeps_unique_ids_unique_after_a_reload(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An inverter listed under two ECUs gets one set of entities at setup."""
    coordinator = init_integration.runtime_data
    new_ecu = fresh_ecu(service, ecu_id="216000099999", model="ECU-R")
    new_ecu["inverters"] = {YC600_ID: new_ecu["inverters"][YC600_ID]}
    new_ecu["inverters"][YC600_ID]["power_w"] = 321
    await wait_for_seq(coordinator, await service.record(new_ecu))
    await hass.async_block_till_done()
    caplog.clear()

    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert not errors(caplog)
    assert state(hass, YC600_POWER) == "321.0"


async def test_renamed_entity_is_not_added_again(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    entity_registry: er.EntityRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A new entity id re-adds the same entity; the next event adds no twin."""
    entity_registry.async_update_entity(YC600_POWER, new_entity_id="sensor.my_power")
    await hass.async_block_till_done()
    assert state(hass, "sensor.my_power") == "35.0"
    caplog.clear()

    coordinator = init_integration.runtime_data
    record = fresh_ecu(service)
    record["inverters"][YC600_ID]["power_w"] = 40
    await wait_for_seq(coordinator, await service.record(record))
    await hass.async_block_till_done()
    assert not errors(caplog)
    assert state(hass, "sensor.my_power") == "40.0"
    assert hass.states.get(YC600_POWER) is None
