"""End to end with nothing mocked on the service side.

The real service runs in the test (loopback ports, cloudless mode so no EMA is
needed), a simulated ECU sends the real capture through the relay, and Home
Assistant's entities must show the decoded values.
"""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.devices import async_get_entry_device
from ecu_proxy.options import Mode, Options
from ecu_proxy.service import Service

CAPTURE = (
    Path(__file__).parent.parent / "fixtures" / "vectors" / "ECU-R_YC600-QS1_1.txt"
).read_bytes()
ECU = "216000064136"


@pytest.fixture(autouse=True)
def frozen_now() -> None:
    """Use the real clock: the real service stamps what it receives with it."""


def _number(state: str | None) -> float | None:
    try:
        return float(state) if state is not None else None
    except ValueError:
        return None


async def _upload(port: int, record: bytes) -> bytes:
    """Send one record as an ECU does and return the acknowledgement."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(record)
        await writer.drain()
        reply = await reader.readexactly(17)
        writer.close()
        await writer.wait_closed()
    return reply


async def test_capture_through_the_real_service_reaches_entities(
    hass: HomeAssistant,
    socket_enabled: None,
    tmp_path: Path,
    wait_for_state: Callable[[str, Callable[[str | None], bool]], Any],
) -> None:
    service = Service(
        Options(
            listen="127.0.0.1",
            ports=(0,),
            api_host="127.0.0.1",
            api_port=0,
            mode=Mode.CLOUDLESS,
            data_dir=tmp_path,
        )
    )
    await service.start()
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="APsystems ECU Proxy",
        unique_id=service.server_id,
        data={CONF_URL: f"ws://127.0.0.1:{service.api_port}/ws", CONF_TOKEN: None},
    )
    try:
        # Set up before any ECU data exists (as at night): setup must still work.
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED

        ack = await _upload(service.relay_ports[0], CAPTURE)
        assert ack == b"10120240206112214"

        power = "sensor.ecu_r_216000064136_power"
        await wait_for_state(power, lambda state: _number(state) == 190)
        expected = {
            "sensor.ecu_r_216000064136_lifetime_energy": 2127.9,
            "sensor.ecu_r_216000064136_inverters_online": 2,
            "sensor.yc600_408000111178_dc_current_channel_1": 0.5,
            "sensor.yc600_408000111178_dc_current_channel_2": 0.5,
            "sensor.yc600_408000111178_dc_voltage_channel_1": 33.8,
            "sensor.yc600_408000111178_temperature": 13,
            "sensor.yc600_408000111178_power": 35,
            "sensor.qs1_806000011223_dc_current_channel_1": 1.0,
            "sensor.qs1_806000011223_dc_current_channel_2": 1.2,
            "sensor.qs1_806000011223_dc_current_channel_3": 1.4,
            "sensor.qs1_806000011223_dc_current_channel_4": 1.4,
            "sensor.qs1_806000011223_ac_voltage": 228,
        }
        for entity_id, value in expected.items():
            state = hass.states.get(entity_id)
            assert state is not None, entity_id
            assert _number(state.state) == pytest.approx(value), entity_id
        online = hass.states.get("binary_sensor.yc600_408000111178_online")
        assert online is not None
        assert online.state == "on"

        devices = dr.async_get(hass)
        ecu = async_get_entry_device(devices, (DOMAIN, ECU), entry.entry_id)
        inverter = async_get_entry_device(
            devices, (DOMAIN, "806000011223"), entry.entry_id
        )
        assert ecu is not None
        assert inverter is not None
        assert inverter.via_device_id == ecu.id
    finally:
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        await service.stop()
