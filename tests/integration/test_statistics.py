"""Long-term statistics of the hourly energy: one meter cycle per hour, no warnings."""

import copy
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
    statistics_during_period,
)

from .conftest import CAPTURE_ECU, wait_for_seq
from .fake_service import FakeService

HOUR_ENERGY = "sensor.ecu_r_216000064136_energy_this_hour"
ZONE = "Europe/Berlin"  # the capture's ECU clock runs an hour ahead of UTC


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """Start the recorder before Home Assistant, then allow custom integrations."""


async def test_energy_this_hour_sums_across_the_hour(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    service: FakeService,
    frozen_now: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drop on the hour is a new cycle (last_reset), not a falling counter."""
    await hass.config.async_set_time_zone(ZONE)
    zone = dt_util.get_time_zone(ZONE)
    frozen_now.move_to(datetime(2024, 2, 6, 11, 40, 0, tzinfo=zone))
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    coordinator = mock_config_entry.runtime_data
    first = datetime(2024, 2, 6, 11, 45, tzinfo=zone)

    # ECU time and energy of each upload: 5 Wh a round, the hour changing at 12:00.
    uploads = [first + timedelta(minutes=5 * n) for n in range(8)]
    # The service's figure at setup: 15.2 Wh in the ECU's hour from 11:00.
    hour_energy = {datetime(2024, 2, 6, 11, 0, tzinfo=zone): 0.015213}
    for moment in uploads:
        hour = moment.replace(minute=0)
        hour_energy[hour] = round(hour_energy.get(hour, 0.0) + 0.005, 6)
        frozen_now.move_to(moment + timedelta(seconds=30))
        ecu: dict[str, Any] = copy.deepcopy(service.state["ecus"][CAPTURE_ECU])
        ecu["last_seen"] = dt_util.utcnow().isoformat()
        ecu["energy_this_hour_kwh"] = hour_energy[hour]
        ecu["hour_start"] = hour.replace(tzinfo=None).isoformat()
        await wait_for_seq(coordinator, await service.record(ecu))
        async_fire_time_changed(hass)
        await async_wait_recording_done(hass)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for n in range(8):
            do_adhoc_statistics(
                hass, start=dt_util.as_utc(first + timedelta(minutes=5 * n))
            )
        await async_wait_recording_done(hass)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records
    ]

    stats = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        dt_util.as_utc(first),
        None,
        {HOUR_ENERGY},
        "5minute",
        None,
        {"sum", "state", "last_reset"},
    )
    rows = stats[HOUR_ENERGY]
    sums = [row["sum"] for row in rows]
    assert sums == sorted(sums)  # never goes down across the hour
    # Each of the 8 uploads adds its 5 Wh once, across the hour's new cycle.
    assert sums[-1] == pytest.approx(0.040)
    resets = {row["last_reset"] for row in rows}
    assert len(resets) == 2  # 11:00 and 12:00
