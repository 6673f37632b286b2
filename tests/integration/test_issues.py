"""Repair issues: raised when the user must act, cleared when fixed."""

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import CONF_TOKEN, CONF_URL, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.apsystems_ema_proxy.const import CONF_ADDON_SLUG, DOMAIN
from custom_components.apsystems_ema_proxy.devices import async_get_entry_device
from custom_components.apsystems_ema_proxy.issues import no_data_ever_due

from .conftest import CAPTURE_ECU, YC600_ID, load_state, wait_for_seq
from .fake_service import SERVER_ID, FakeService


def fresh_capture_ecu() -> dict[str, Any]:
    """Return the capture's ECU as if it had just uploaded."""
    ecu: dict[str, Any] = copy.deepcopy(
        load_state("state_capture")["ecus"][CAPTURE_ECU]
    )
    now = dt_util.utcnow().isoformat()
    ecu["last_seen"] = now
    for inverter in ecu["inverters"].values():
        inverter["last_seen"] = now
    return ecu


def test_no_data_ever_is_due_after_a_whole_daylight_window(
    hass: HomeAssistant,
) -> None:
    """Up before 10:00 local: due at 14:00 that day; later: 14:00 the next day."""
    zone = dt_util.get_default_time_zone()
    morning = datetime(2024, 2, 6, 9, 30, tzinfo=zone)
    noon = datetime(2024, 2, 6, 12, 0, tzinfo=zone)
    assert no_data_ever_due(morning) == datetime(2024, 2, 6, 14, 0, tzinfo=zone)
    assert no_data_ever_due(noon) == datetime(2024, 2, 7, 14, 0, tzinfo=zone)


@pytest.mark.parametrize("state_name", ["state_empty"])
@pytest.mark.parametrize(
    ("addon_slug", "translation_key"),
    [(None, "no_ecu_data_ever_remote"), ("abc_ecu_proxy", "no_ecu_data_ever")],
)
async def test_no_ecu_data_ever(
    hass: HomeAssistant,
    service: FakeService,
    issue_registry: ir.IssueRegistry,
    device_registry: dr.DeviceRegistry,
    frozen_now: FrozenDateTimeFactory,
    addon_slug: str | None,
    translation_key: str,
) -> None:
    """No data through a day's daylight: explain the DNS rewrite for where it runs."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        data={CONF_URL: service.url, CONF_TOKEN: None, CONF_ADDON_SLUG: addon_slug},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    issue_id = f"no_ecu_data_{entry.entry_id}"
    # Not at once: the ECU may simply not have uploaded yet (night, a restart).
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None
    due = no_data_ever_due(dt_util.utcnow())
    assert due - dt_util.utcnow() > timedelta(hours=4)

    frozen_now.move_to(due - timedelta(minutes=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None

    frozen_now.move_to(due + timedelta(seconds=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == translation_key
    assert issue.severity is ir.IssueSeverity.WARNING
    assert issue.translation_placeholders == {
        "hours": "24",
        "ema_host": "ecu.apsystemsema.com",
        "host": "127.0.0.1",
    }
    # Only the service's own entities: no ECU yet.
    assert all(
        "216000064136" not in entity_id for entity_id in hass.states.async_entity_ids()
    )

    coordinator = entry.runtime_data
    await wait_for_seq(coordinator, await service.record(fresh_capture_ecu()))
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None
    assert async_get_entry_device(
        device_registry, (DOMAIN, CAPTURE_ECU), entry.entry_id
    )
    state = hass.states.get("sensor.ecu_r_216000064136_power")
    assert state is not None
    assert state.state == "190.0"


async def test_no_ecu_data_for_a_day(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    issue_registry: ir.IssueRegistry,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """No upload for more than 24 hours raises an issue; the next one clears it."""
    issue_id = f"no_ecu_data_{init_integration.entry_id}"
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None

    frozen_now.tick(timedelta(hours=23))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None

    frozen_now.tick(timedelta(hours=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    # The entry was set up by hand: the service runs on another host.
    assert issue.translation_key == "no_ecu_data_remote"

    coordinator = init_integration.runtime_data
    await wait_for_seq(coordinator, await service.record(fresh_capture_ecu()))
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None


async def test_unknown_inverter_type(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """An undecodable inverter asks for its raw block, until it decodes."""
    ecu = service.state["ecus"][CAPTURE_ECU]
    raw_block = "END40800011117809ZZZZ0123456789"
    unknown = ecu["inverters"][YC600_ID]
    unknown.update(
        type_code="09",
        family="unknown",
        raw=raw_block,
        ac_voltage_v=None,
        frequency_hz=None,
        temperature_c=None,
        power_w=None,
        channels=[],
    )
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    issue_id = f"unknown_inverter_{mock_config_entry.entry_id}_{YC600_ID}"
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "unknown_inverter"
    assert issue.learn_more_url is not None
    assert issue.translation_placeholders == {
        "inverter_id": YC600_ID,
        "type_code": "09",
        "ecu_id": CAPTURE_ECU,
        "raw": raw_block,
    }
    device = async_get_entry_device(
        device_registry, (DOMAIN, YC600_ID), mock_config_entry.entry_id
    )
    assert device is not None
    assert device.model == "Inverter"
    online = hass.states.get("binary_sensor.inverter_408000111178_online")
    assert online is not None
    assert online.state == STATE_ON
    assert hass.states.get("sensor.inverter_408000111178_power") is None

    # A newer service decodes it: the issue goes and the sensors appear.
    decoded = fresh_capture_ecu()
    coordinator = mock_config_entry.runtime_data
    await wait_for_seq(coordinator, await service.record(decoded))
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None
    power = hass.states.get("sensor.inverter_408000111178_power")
    assert power is not None
    assert power.state == "35.0"


async def test_unreadable_block_of_a_known_type_raises_no_issue(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """A YC600 block the service could not read once is not an 'unknown type'."""
    ecu = service.state["ecus"][CAPTURE_ECU]
    ecu["inverters"][YC600_ID].update(
        raw="40800011117807ZZZZEND", power_w=None, channels=[]
    )
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    issue_id = f"unknown_inverter_{mock_config_entry.entry_id}_{YC600_ID}"
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None
    device = async_get_entry_device(
        device_registry, (DOMAIN, YC600_ID), mock_config_entry.entry_id
    )
    assert device is not None
    assert device.model == "YC600"
    assert hass.states.get("sensor.yc600_408000111178_power") is not None
