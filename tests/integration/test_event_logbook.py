"""The logbook line of an EMA command, through the real logbook and recorder."""

from datetime import timedelta
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.apsystems_ema_proxy.const import DOMAIN

from .conftest import CAPTURE_ECU, wait_for_seq
from .fake_service import FakeService


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Any, enable_custom_integrations: None
) -> None:
    """Start the recorder before Home Assistant, then allow custom integrations."""


async def test_logbook_line_in_plain_words(
    hass: HomeAssistant,
    service: FakeService,
    init_integration: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """The real logbook shows "EMA asked ECU-R … to switch all inverters off; …"."""
    # The frontend's static files are not installed for tests; the logbook only
    # registers a panel with it.
    hass.config.components.add("frontend")
    assert await async_setup_component(hass, "logbook", {})
    await hass.async_block_till_done()
    start = dt_util.utcnow() - timedelta(hours=1)
    seq = await service.ema_command(CAPTURE_ECU)
    await wait_for_seq(init_integration.runtime_data, seq)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)

    client = await hass_ws_client(hass)
    await client.send_json(
        {
            "id": 1,
            "type": "logbook/get_events",
            "start_time": start.isoformat(),
            "end_time": (dt_util.utcnow() + timedelta(hours=1)).isoformat(),
        }
    )
    response = await client.receive_json()
    assert response["success"], response
    lines = [
        (entry.get("name"), entry.get("message"))
        for entry in response["result"]
        if entry.get("domain") == DOMAIN
    ]
    assert lines == [
        ("EMA", f"asked ECU-R {CAPTURE_ECU} to switch all inverters off; blocked")
    ]
