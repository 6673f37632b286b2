"""Diagnostics of the entry and of its devices."""

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.devices import async_get_entry_device

from .conftest import CAPTURE_ECU, QS1_ID
from .fake_service import SERVER_ID, FakeService


@pytest.mark.parametrize("service_token", ["s3cret"])
async def test_entry_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Entry diagnostics hold the connection, state and raw frames, no token."""
    result = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert result["entry"]["data"]["token"] == "**REDACTED**"
    assert "s3cret" not in str(result)
    assert result["frames"][0]["raw"].startswith("APS18AA302")
    assert result["connection"]["url"].startswith("ws://127.0.0.1:")
    result["connection"]["url"] = "ws://127.0.0.1:<port>/ws"
    result["entry"]["data"]["url"] = "ws://127.0.0.1:<port>/ws"
    assert result == snapshot


@pytest.mark.parametrize(
    ("identifier", "keys"),
    [
        (CAPTURE_ECU, {"connection", "ecu", "frames"}),
        (QS1_ID, {"connection", "ecu_id", "inverter", "frames"}),
        (SERVER_ID, {"connection", "frames"}),
    ],
)
async def test_device_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    identifier: str,
    keys: set[str],
) -> None:
    """Device diagnostics hold that device's state and the frames naming it."""
    device = async_get_entry_device(
        device_registry, (DOMAIN, identifier), init_integration.entry_id
    )
    assert device is not None
    result = await get_diagnostics_for_device(
        hass, hass_client, init_integration, device
    )
    assert set(result) == keys
    if identifier == QS1_ID:
        assert result["inverter"]["family"] == "QS1"
        assert result["ecu_id"] == CAPTURE_ECU
        assert [f["seq"] for f in result["frames"]] == [1]
    elif identifier == CAPTURE_ECU:
        assert result["ecu"]["lifetime_energy_kwh"] == 2127.9
        assert [f["seq"] for f in result["frames"]] == [1]
    else:
        assert [f["seq"] for f in result["frames"]] == [1, 2]


async def test_diagnostics_while_disconnected(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    service: FakeService,
) -> None:
    """Without a connection the frames part says why instead of failing."""
    coordinator = init_integration.runtime_data
    await coordinator.client.disconnect()
    result = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert result["frames"] == {"error": "cannot send get_frames: not listening"}
    assert result["state"]["ecus"][CAPTURE_ECU]["model"] == "ECU-R"


async def test_diagnostics_while_setup_is_retried(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Before the service sent any state, diagnostics say so instead of failing."""
    mock_config_entry.add_to_hass(hass)
    device = device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id, identifiers={(DOMAIN, QS1_ID)}
    )
    await service.stop()
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY

    result = await get_diagnostics_for_config_entry(
        hass, hass_client, mock_config_entry
    )
    assert result["state"] is None
    assert result["connection"]["connected"] is False
    assert "error" in result["frames"]
    result = await get_diagnostics_for_device(
        hass, hass_client, mock_config_entry, device
    )
    assert set(result) == {"connection", "frames"}
