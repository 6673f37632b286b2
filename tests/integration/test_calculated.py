"""Peak power, energy this hour, the service's own entities, retired sensors."""

import copy
import dataclasses
from datetime import datetime
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.apsystems_ema_proxy.binary_sensor import ema_reachable
from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.contract.codec import decode
from custom_components.apsystems_ema_proxy.contract.state import Ecu, Upstream
from custom_components.apsystems_ema_proxy.models import empty_ecu

from .conftest import CAPTURE_ECU, YC600_ID, wait_for_seq
from .fake_service import UPSTREAM_KEYS, FakeService

HOUR_ENERGY = "sensor.ecu_r_216000064136_energy_this_hour"
ECU_PEAK_TODAY = "sensor.ecu_r_216000064136_peak_power_today"
ECU_PEAK_EVER = "sensor.ecu_r_216000064136_peak_power_ever"
YC600_PEAK_TODAY = "sensor.yc600_408000111178_peak_power_today"
ECUS_SEEN = "sensor.apsystems_ecu_proxy_ecus_seen"
VERSION = "sensor.apsystems_ecu_proxy_version"
EMA_REACHABLE = "binary_sensor.apsystems_ecu_proxy_ema_reachable"
BERLIN = "Europe/Berlin"  # the capture's ECU clock runs an hour ahead of UTC


def _state(hass: HomeAssistant, entity_id: str) -> Any:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state


def _upload(service: FakeService, **changes: Any) -> dict[str, Any]:
    ecu: dict[str, Any] = copy.deepcopy(service.state["ecus"][CAPTURE_ECU])
    ecu["last_seen"] = dt_util.utcnow().isoformat()
    ecu.update(changes)
    return ecu


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await hass.config.async_set_time_zone(BERLIN)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_energy_this_hour_starts_again_on_the_hour(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    service: FakeService,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A `total` with last_reset: the service's figure in its hour, then 0."""
    await _setup(hass, mock_config_entry)
    zone = dt_util.get_time_zone(BERLIN)
    state = _state(hass, HOUR_ENERGY)
    assert state.attributes["state_class"] == "total"
    assert float(state.state) == 0.015213
    eleven = datetime(2024, 2, 6, 11, 0, tzinfo=zone)
    assert state.attributes["last_reset"] == eleven.isoformat()

    # The hour ends without a record (evening): a new cycle starts at 0.
    frozen_now.move_to(datetime(2024, 2, 6, 12, 0, 1, tzinfo=zone))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    state = _state(hass, HOUR_ENERGY)
    assert float(state.state) == 0
    noon = datetime(2024, 2, 6, 12, 0, tzinfo=zone)
    assert state.attributes["last_reset"] == noon.isoformat()

    # The first record of the new hour counts on in the same cycle.
    coordinator = mock_config_entry.runtime_data
    record = _upload(
        service, energy_this_hour_kwh=0.004, hour_start="2024-02-06T12:00:00"
    )
    await wait_for_seq(coordinator, await service.record(record))
    state = _state(hass, HOUR_ENERGY)
    assert float(state.state) == 0.004
    assert state.attributes["last_reset"] == noon.isoformat()


async def test_peak_power_sensors_follow_the_service(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, service: FakeService
) -> None:
    """Peaks of the ECU and its inverters, in W, as the service computes them."""
    await _setup(hass, mock_config_entry)
    assert _state(hass, ECU_PEAK_TODAY).state == "190.0"
    assert _state(hass, ECU_PEAK_EVER).state == "190.0"
    assert _state(hass, ECU_PEAK_TODAY).attributes["unit_of_measurement"] == "W"
    assert _state(hass, YC600_PEAK_TODAY).state == "35.0"

    ecu = _upload(service, peak_power_today_w=420, peak_power_ever_w=1200)
    ecu["inverters"][YC600_ID]["peak_power_today_w"] = 99
    await wait_for_seq(mock_config_entry.runtime_data, await service.record(ecu))
    assert _state(hass, ECU_PEAK_TODAY).state == "420.0"
    assert _state(hass, ECU_PEAK_EVER).state == "1200.0"
    assert _state(hass, YC600_PEAK_TODAY).state == "99.0"


async def test_service_device_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    entity_registry: er.EntityRegistry,
) -> None:
    """The service's device shows its version, the ECUs seen and EMA reachability."""
    assert _state(hass, ECUS_SEEN).state == "1"
    assert _state(hass, VERSION).state == "0.1.0"
    assert _state(hass, EMA_REACHABLE).state == STATE_ON
    version = entity_registry.async_get(VERSION)
    assert version is not None
    assert version.entity_category is EntityCategory.DIAGNOSTIC

    at = dt_util.utcnow().isoformat()
    seq = await service.ecu_status(
        CAPTURE_ECU, {"result": "unreachable", "at": at, "rtt_ms": None}
    )
    await wait_for_seq(init_integration.runtime_data, seq)
    assert _state(hass, EMA_REACHABLE).state == STATE_OFF


def test_ema_reachable_judges_by_the_newest_upload() -> None:
    """Cloudless or no upload yet: unknown; else the newest result decides."""
    older = {"result": "ok", "at": "2024-02-06T10:00:00+00:00"}
    newer = {"result": "timeout", "at": "2024-02-06T10:05:00+00:00"}

    def ecus(*uploads: dict[str, Any] | None) -> dict[str, Ecu]:
        return {
            str(n): dataclasses.replace(
                empty_ecu(str(n)),
                upstream=decode(
                    Upstream, dict.fromkeys(UPSTREAM_KEYS) | (upload or {})
                ),
            )
            for n, upload in enumerate(uploads)
        }

    assert ema_reachable(ecus()) is None
    assert ema_reachable(ecus(None, {"result": "cloudless", "at": None})) is None
    assert ema_reachable(ecus(older)) is True
    assert ema_reachable(ecus(older, newer)) is False
    assert ema_reachable(
        ecus(newer | {"result": "ok"}, older | {"result": "unreachable"})
    )


async def test_retired_last_report_sensor_is_removed(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """An installed "Last report" sensor goes; its time is now an attribute."""
    mock_config_entry.add_to_hass(hass)
    old = entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        f"{CAPTURE_ECU}_last_report",
        config_entry=mock_config_entry,
        suggested_object_id="ecu_r_216000064136_last_report",
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert entity_registry.async_get(old.entity_id) is None
    assert hass.states.get(old.entity_id) is None
    reporting = _state(hass, "binary_sensor.ecu_r_216000064136_reporting")
    assert reporting.attributes["last_report"] == "2024-02-06T10:22:20+00:00"
    assert reporting.state == STATE_ON
