"""The logbook: steady uploads add nothing; going offline and back does."""

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.logbook.helpers import async_determine_event_types
from homeassistant.components.logbook.processor import EventProcessor
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_component,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from .conftest import CAPTURE_ECU, wait_for_seq
from .fake_service import FakeService

UPLOAD_EVERY = timedelta(minutes=5)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """Start the recorder before Home Assistant, then allow custom integrations."""


def _upload(service: FakeService, step: int) -> dict[str, Any]:
    """Return the capture's ECU as just uploaded, with values that move."""
    ecu: dict[str, Any] = copy.deepcopy(service.state["ecus"][CAPTURE_ECU])
    now = dt_util.utcnow().isoformat()
    ecu["last_seen"] = now
    ecu["power_w"] = 190 + 10 * step
    ecu["energy_today_kwh"] = 0.1 * step
    ecu["lifetime_energy_kwh"] = 2127.9 + 0.1 * step
    ecu["peak_power_today_w"] = 190 + 10 * step
    ecu["energy_this_hour_kwh"] = 0.01 * step
    for inverter in ecu["inverters"].values():
        inverter["last_seen"] = now
        inverter["power_w"] = 50 + step
    return ecu


async def _entries(
    hass: HomeAssistant, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Return what the logbook shows for the integration's entities.

    The same query as the logbook's ``logbook/get_events`` WebSocket command (its
    access token would expire in the hour of frozen time the test covers).
    """
    await async_wait_recording_done(hass)
    end += timedelta(seconds=1)  # the query's end is exclusive; time is frozen
    processor = EventProcessor(
        hass,
        async_determine_event_types(hass, None, None),
        timestamp=True,
        include_entity_name=False,
    )
    found = await get_instance(hass).async_add_executor_job(
        processor.get_events, start, end
    )
    ours = ("ecu_r_", "yc600_", "qs1_", "apsystems_ecu_proxy_")
    return [
        entry
        for entry in found
        if any(part in entry.get("entity_id", "") for part in ours)
    ]


async def test_steady_uploads_add_no_logbook_entries(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A day's uploads change many values but only on/off changes reach the log."""
    # The logbook's frontend panel is not part of the test harness; the rest is real.
    mock_component(hass, "frontend")
    assert await async_setup_component(hass, "logbook", {})
    await hass.async_block_till_done()
    coordinator = init_integration.runtime_data
    start = dt_util.utcnow()

    for step in range(1, 13):  # an hour of uploads
        frozen_now.tick(UPLOAD_EVERY)
        async_fire_time_changed(hass)
        await wait_for_seq(coordinator, await service.record(_upload(service, step)))
        await hass.async_block_till_done()
    reporting = hass.states.get("binary_sensor.ecu_r_216000064136_reporting")
    assert reporting is not None
    assert reporting.state == "on"
    assert reporting.attributes["last_report"] == dt_util.utcnow().isoformat()

    steady = await _entries(hass, start, dt_util.utcnow())
    assert steady == []

    # Evening: nothing comes any more. That is worth an entry per device.
    evening = dt_util.utcnow()
    frozen_now.tick(timedelta(minutes=20))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    night = await _entries(hass, evening, dt_util.utcnow())
    assert {(e["entity_id"], e["state"]) for e in night} == {
        ("binary_sensor.ecu_r_216000064136_reporting", "off"),
        ("binary_sensor.yc600_408000111178_online", "off"),
        ("binary_sensor.qs1_806000011223_online", "off"),
    }
