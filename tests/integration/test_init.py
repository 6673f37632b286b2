"""Setup, unload, setup failures, devices and device removal."""

from typing import Any
from unittest.mock import MagicMock, patch

import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.apsystems_ema_proxy import devices
from custom_components.apsystems_ema_proxy.const import DOMAIN

from .conftest import CAPTURE_ECU, QS1_ID, YC600_ID, entry_state, wait_for_seq
from .fake_service import SERVER_ID, FakeService


async def test_setup_and_unload(
    hass: HomeAssistant, init_integration: MockConfigEntry, service: FakeService
) -> None:
    """Setup listens from scratch; unloading closes the connection."""
    assert init_integration.state is ConfigEntryState.LOADED
    start = [c for c in service.commands if c["command"] == "start_listening"]
    assert len(start) == 1
    assert "since" not in start[0]
    assert hass.states.get("sensor.ecu_r_216000064136_power") is not None

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert entry_state(init_integration) is ConfigEntryState.NOT_LOADED
    await service.wait_for(lambda: not service.sockets)


async def test_setup_retry_when_service_down(
    hass: HomeAssistant, service: FakeService, mock_config_entry: MockConfigEntry
) -> None:
    """A service that is not running makes setup retry later."""
    await service.stop()
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    reason = str(mock_config_entry.reason)
    assert "Cannot connect to the ECU proxy" in reason
    assert reason.count(mock_config_entry.data["url"]) == 1
    assert reason.count("127.0.0.1") == 1


async def test_setup_retry_when_listening_fails(
    hass: HomeAssistant, service: FakeService, mock_config_entry: MockConfigEntry
) -> None:
    """A service that refuses start_listening makes setup retry later."""
    service.start_listening_fails = True
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert "internal_error" in str(mock_config_entry.reason)
    await service.wait_for(lambda: not service.sockets)


@pytest.mark.parametrize("service_token", ["right"])
async def test_setup_auth_failed_starts_reauth(
    hass: HomeAssistant, service: FakeService
) -> None:
    """A rejected token stops setup and asks the user for a new one."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        data={CONF_URL: service.url, CONF_TOKEN: "wrong"},
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]


async def test_setup_incompatible_schema_raises_issue(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A service that is too old gets an issue asking to update the add-on."""
    service.schema_version = 0
    service.min_schema_version = 0
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    issue = issue_registry.async_get_issue(
        DOMAIN, f"incompatible_schema_{mock_config_entry.entry_id}"
    )
    assert issue is not None
    assert issue.translation_key == "service_too_old"
    assert issue.translation_placeholders == {
        "service_schema": "0-0",
        "integration_schema": "1-1",
    }

    service.schema_version = 1
    service.min_schema_version = 1
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    assert entry_state(mock_config_entry) is ConfigEntryState.LOADED
    assert (
        issue_registry.async_get_issue(
            DOMAIN, f"incompatible_schema_{mock_config_entry.entry_id}"
        )
        is None
    )


async def test_setup_newer_schema_asks_to_update_integration(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A service that dropped our schema gets an issue about the integration."""
    service.schema_version = 3
    service.min_schema_version = 2
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    issue = issue_registry.async_get_issue(
        DOMAIN, f"incompatible_schema_{mock_config_entry.entry_id}"
    )
    assert issue is not None
    assert issue.translation_key == "integration_too_old"


async def test_devices_are_linked(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The proxy is the hub, the ECU hangs off it and the inverters off the ECU."""
    hub = _device(device_registry, init_integration, SERVER_ID)
    ecu = _device(device_registry, init_integration, CAPTURE_ECU)
    yc600 = _device(device_registry, init_integration, YC600_ID)
    qs1 = _device(device_registry, init_integration, QS1_ID)
    assert hub is not None
    assert ecu is not None
    assert yc600 is not None
    assert qs1 is not None
    assert ecu.via_device_id == hub.id
    assert yc600.via_device_id == ecu.id
    assert qs1.via_device_id == ecu.id
    assert hub.entry_type is dr.DeviceEntryType.SERVICE
    assert hub.manufacturer == "APsystems ECU Proxy project"
    assert (ecu.model, ecu.serial_number, ecu.name) == (
        "ECU-R",
        CAPTURE_ECU,
        "ECU-R 216000064136",
    )
    # The family is the model; no model id, which the device page would show
    # next to it as "QS1 (08)".
    assert (qs1.model, qs1.model_id, qs1.serial_number) == ("QS1", None, QS1_ID)
    entries = dr.async_entries_for_config_entry(
        device_registry, init_integration.entry_id
    )
    assert sorted(entries, key=lambda d: d.name or "") == snapshot


async def test_via_device_helper_on_older_core(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Without the id lookup helper (Core before 2026.8) the identifier is used."""
    with patch.object(devices, "dr") as old_dr:
        del old_dr.async_get_device_id_by_identifier
        kwargs = devices.via_device_kwargs(hass, init_integration, CAPTURE_ECU)
    assert kwargs == {"via_device": (DOMAIN, CAPTURE_ECU)}


async def test_via_device_helper_on_newer_core(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """With the id lookup helper the registry id of the parent is used."""
    with patch.object(devices, "dr") as new_dr:
        new_dr.async_get_device_id_by_identifier.return_value = "parent-id"
        kwargs = devices.via_device_kwargs(hass, init_integration, CAPTURE_ECU)
    assert kwargs == {"via_device_id": "parent-id"}
    new_dr.async_get_device_id_by_identifier.assert_called_once_with(
        hass, (DOMAIN, CAPTURE_ECU), config_entry_id=init_integration.entry_id
    )


def test_device_lookup_on_older_core() -> None:
    """Without the per-entry lookup (Core 2025.12) the registry-wide one is used."""
    registry = MagicMock(spec=["async_get_device"])
    found = devices.async_get_entry_device(registry, (DOMAIN, CAPTURE_ECU), "entry")
    assert found is registry.async_get_device.return_value
    registry.async_get_device.assert_called_once_with(
        identifiers={(DOMAIN, CAPTURE_ECU)}
    )


def test_device_lookup_on_newer_core() -> None:
    """With the per-entry lookup the device of this config entry is asked for."""
    registry = MagicMock(spec=["async_get_device", "async_get_device_by_identifier"])
    found = devices.async_get_entry_device(registry, (DOMAIN, CAPTURE_ECU), "entry")
    assert found is registry.async_get_device_by_identifier.return_value
    registry.async_get_device_by_identifier.assert_called_once_with(
        (DOMAIN, CAPTURE_ECU), "entry"
    )
    registry.async_get_device.assert_not_called()


async def test_hub_links_to_addon(
    hass: HomeAssistant, service: FakeService, device_registry: dr.DeviceRegistry
) -> None:
    """A discovered add-on's hub device links to the add-on page."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        data={CONF_URL: service.url, CONF_TOKEN: None, "addon_slug": "abc_ecu_proxy"},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    hub = _device(device_registry, entry, SERVER_ID)
    assert hub is not None
    assert hub.configuration_url == "homeassistant://hassio/addon/abc_ecu_proxy/info"
    assert hub.sw_version == "0.1.0"


async def test_new_server_id_is_adopted(
    hass: HomeAssistant, service: FakeService, device_registry: dr.DeviceRegistry
) -> None:
    """A service reinstalled at the same address keeps the entry and entities."""
    old_id = "4" * 32
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=old_id,
        data={CONF_URL: service.url, CONF_TOKEN: None},
    )
    entry.add_to_hass(hass)
    old_hub = device_registry.async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={(DOMAIN, old_id)}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.unique_id == SERVER_ID
    assert device_registry.async_get(old_hub.id) is None
    ecu = _device(device_registry, entry, CAPTURE_ECU)
    hub = _device(device_registry, entry, SERVER_ID)
    assert ecu is not None
    assert hub is not None
    assert ecu.via_device_id == hub.id


async def test_server_id_of_other_entry_is_refused(
    hass: HomeAssistant, service: FakeService
) -> None:
    """Two entries never share a service."""
    first = MockConfigEntry(
        domain=DOMAIN,
        title="First",
        unique_id=SERVER_ID,
        data={CONF_URL: "ws://127.0.0.1:9/ws", CONF_TOKEN: None},
    )
    first.add_to_hass(hass)
    second = MockConfigEntry(
        domain=DOMAIN,
        unique_id="5" * 32,
        data={CONF_URL: service.url, CONF_TOKEN: None},
    )
    second.add_to_hass(hass)
    await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()
    assert second.state is ConfigEntryState.SETUP_ERROR
    assert second.reason == "This ECU proxy is already set up as First"
    assert second.unique_id == "5" * 32


async def test_remove_device(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: Any,
) -> None:
    """Reported devices stay; one the service forgot can go and come back."""
    assert await _async_setup_config(hass)
    client = await hass_ws_client(hass)

    async def remove(identifier: str) -> bool:
        device = _device(device_registry, init_integration, identifier)
        assert device is not None
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": init_integration.entry_id,
                "device_id": device.id,
            }
        )
        response = await client.receive_json()
        return bool(response["success"])

    assert not await remove(SERVER_ID)
    assert not await remove(CAPTURE_ECU)
    assert not await remove(YC600_ID)

    # The service restarts without the YC600 (it was replaced).
    ecu = service.state["ecus"][CAPTURE_ECU]
    del ecu["inverters"][YC600_ID]
    coordinator = init_integration.runtime_data
    await wait_for_seq(coordinator, await service.record(ecu))
    await hass.async_block_till_done()
    assert await remove(YC600_ID)
    assert _device(device_registry, init_integration, YC600_ID) is None
    assert hass.states.get("sensor.yc600_408000111178_power") is None

    # It comes back: device and entities are created again.
    ecu["inverters"][YC600_ID] = _inverter_from_fixture(YC600_ID)
    await wait_for_seq(coordinator, await service.record(ecu))
    await hass.async_block_till_done()
    assert _device(device_registry, init_integration, YC600_ID)
    state = hass.states.get("sensor.yc600_408000111178_power")
    assert state is not None
    assert state.state == "35.0"


async def test_remove_device_while_setup_is_retried(
    hass: HomeAssistant,
    service: FakeService,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: Any,
) -> None:
    """Without the service's state a device can go; the service's own cannot."""
    assert await _async_setup_config(hass)
    mock_config_entry.add_to_hass(hass)
    gone = device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id, identifiers={(DOMAIN, QS1_ID)}
    )
    hub = device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id, identifiers={(DOMAIN, SERVER_ID)}
    )
    await service.stop()
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    client = await hass_ws_client(hass)

    async def remove(device: dr.DeviceEntry) -> dict[str, Any]:
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": mock_config_entry.entry_id,
                "device_id": device.id,
            }
        )
        response: dict[str, Any] = await client.receive_json()
        return response

    assert (await remove(gone))["success"]
    assert device_registry.async_get(gone.id) is None
    refused = await remove(hub)
    assert not refused["success"]
    assert "rejected by integration" in refused["error"]["message"]


async def test_remove_entry_clears_issues(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    service: FakeService,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Removing the entry removes its repair issues."""
    ecu = service.state["ecus"][CAPTURE_ECU]
    ecu["inverters"][YC600_ID] |= {
        "type_code": "99",
        "family": "unknown",
        "raw": "408000111178990123END",
    }
    coordinator = init_integration.runtime_data
    await wait_for_seq(coordinator, await service.record(ecu))
    await hass.async_block_till_done()
    assert any(domain == DOMAIN for domain, _ in issue_registry.issues)

    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    assert not any(domain == DOMAIN for domain, _ in issue_registry.issues)


async def _async_setup_config(hass: HomeAssistant) -> bool:
    """Load the config component so device removal can be requested."""
    from homeassistant.setup import async_setup_component

    return await async_setup_component(hass, "config", {})


def _inverter_from_fixture(inverter_id: str) -> dict[str, Any]:
    """Return one inverter of the capture fixture."""
    from .conftest import load_state

    inverter: dict[str, Any] = load_state("state_capture")["ecus"][CAPTURE_ECU][
        "inverters"
    ][inverter_id]
    return inverter


def _device(
    registry: dr.DeviceRegistry, entry: MockConfigEntry, identifier: str
) -> dr.DeviceEntry | None:
    """Return the entry's device with one of our identifiers."""
    return devices.async_get_entry_device(
        registry, (DOMAIN, identifier), entry.entry_id
    )
