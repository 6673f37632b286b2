"""Config flow: every step, error and recovery path."""

from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.config_entries import SOURCE_HASSIO, SOURCE_USER
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.apsystems_ema_proxy.config_flow import entry_title
from custom_components.apsystems_ema_proxy.const import (
    CONF_ADDON_SLUG,
    CONF_NO_DATA_TIMEOUT,
    DOMAIN,
)

from .conftest import load_state
from .fake_service import SERVER_ID, FakeService

SLUG = "a1b2c3d4_ecu_proxy"


def discovery(service: FakeService, **overrides: Any) -> HassioServiceInfo:
    """Return the discovery message the add-on sends for a service."""
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": service.port,
        "server_id": service.server_id,
        "token": service.token,
    } | overrides
    return HassioServiceInfo(
        config=config, name="APsystems ECU Proxy", slug=SLUG, uuid="0123456789"
    )


async def closed_port_url(service: FakeService) -> str:
    """Return a URL on which nothing listens (a stopped second service)."""
    other = FakeService(load_state("state_capture"))
    await other.start()
    url = other.url
    await other.stop()
    return url


async def test_user_creates_entry(hass: HomeAssistant, service: FakeService) -> None:
    """A URL without scheme and path is normalized and tested before the entry."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"127.0.0.1:{service.port}"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    # The title tells entries of several services apart.
    assert result["title"] == f"APsystems ECU Proxy (127.0.0.1:{service.port})"
    assert result["data"] == {CONF_URL: service.url, CONF_TOKEN: None}
    assert result["result"].unique_id == SERVER_ID


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("ws://proxy.local:8990/ws", "APsystems ECU Proxy (proxy.local)"),
        ("ws://192.168.1.10:9000/ws", "APsystems ECU Proxy (192.168.1.10:9000)"),
        ("wss://proxy.example/ws", "APsystems ECU Proxy (proxy.example)"),
        ("ws://[fd00::1]:9000/ws", "APsystems ECU Proxy ([fd00::1]:9000)"),
    ],
)
def test_entry_title_names_host_and_other_port(url: str, title: str) -> None:
    """The port shows only when it is not the service's default 8990."""
    assert entry_title(url) == title


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://127.0.0.1:8990", "invalid_url"),
        ("ws://127.0.0.1:notaport/ws", "invalid_url"),
        ("http://:8990", "invalid_url"),
    ],
)
async def test_user_invalid_url_then_recover(
    hass: HomeAssistant, service: FakeService, url: str, error: str
) -> None:
    """An unusable URL is reported on the URL field; a good one then works."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: url}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_URL: error}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"http://127.0.0.1:{service.port}"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_URL] == service.url


async def test_user_cannot_connect_then_recover(
    hass: HomeAssistant, service: FakeService
) -> None:
    """A service that does not answer gives cannot_connect; a retry succeeds."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: await closed_port_url(service)}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize("service_token", ["s3cret"])
async def test_user_invalid_auth_then_recover(
    hass: HomeAssistant, service: FakeService
) -> None:
    """No token and a wrong token are rejected; the right token is stored."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url, CONF_TOKEN: "wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url, CONF_TOKEN: " s3cret "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_URL: service.url, CONF_TOKEN: "s3cret"}


async def test_user_incompatible_schema(
    hass: HomeAssistant, service: FakeService
) -> None:
    """A service speaking only a newer schema is refused with a clear error."""
    newer = FakeService(load_state("state_capture"), schema_version=3)
    newer.min_schema_version = 2
    await newer.start()
    try:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: newer.url}
        )
    finally:
        await newer.stop()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "incompatible_schema"}


async def test_user_unexpected_error(hass: HomeAssistant, service: FakeService) -> None:
    """An unexpected error is logged and shown as unknown; a retry works."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    with patch(
        "custom_components.apsystems_ema_proxy.config_flow.Client.connect",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: service.url}
        )
    assert result["errors"] == {"base": "unknown"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_already_configured(
    hass: HomeAssistant, service: FakeService, mock_config_entry: MockConfigEntry
) -> None:
    """The same service cannot be added twice."""
    mock_config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.parametrize("service_token", ["addon-token"])
async def test_hassio_discovery_confirm(
    hass: HomeAssistant, service: FakeService
) -> None:
    """The add-on's discovery leads to a confirm step and an entry."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=discovery(service)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"addon": "APsystems ECU Proxy"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "APsystems ECU Proxy"
    assert result["data"] == {
        CONF_URL: service.url,
        CONF_TOKEN: "addon-token",
        CONF_ADDON_SLUG: SLUG,
    }
    assert result["result"].unique_id == SERVER_ID


async def test_hassio_confirm_cannot_connect_then_recover(
    hass: HomeAssistant, service: FakeService
) -> None:
    """A service that went away before confirming gives an error, then works."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=discovery(service)
    )
    await service.stop()
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    await service.start()
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    "config",
    [
        {"host": "127.0.0.1", "server_id": SERVER_ID},
        {"host": "127.0.0.1", "port": "not a port", "server_id": SERVER_ID},
        {"port": 8990, "server_id": SERVER_ID},
    ],
)
async def test_hassio_invalid_discovery(
    hass: HomeAssistant, config: dict[str, Any]
) -> None:
    """Incomplete discovery information aborts the flow."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=HassioServiceInfo(config=config, name="x", slug=SLUG, uuid="1"),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_hassio_updates_existing_entry(
    hass: HomeAssistant, service: FakeService
) -> None:
    """Discovery of a configured service updates its address instead of a copy."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        data={CONF_URL: "ws://10.0.0.9:8990/ws", CONF_TOKEN: None},
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=discovery(service)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_URL] == service.url
    assert entry.data[CONF_ADDON_SLUG] == SLUG
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_hassio_reinstalled_addon_keeps_entry(
    hass: HomeAssistant, service: FakeService
) -> None:
    """A reinstalled add-on (new server id, same address) moves the entry over."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="0" * 32,
        data={CONF_URL: service.url, CONF_TOKEN: None},
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=discovery(service)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.unique_id == SERVER_ID
    assert entry.data[CONF_ADDON_SLUG] == SLUG
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_reconfigure(
    hass: HomeAssistant, service: FakeService, mock_config_entry: MockConfigEntry
) -> None:
    """Reconfigure shows the current URL, rejects bad input, then saves."""
    mock_config_entry.add_to_hass(hass)
    result = await mock_config_entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    schema_keys = {str(key): key for key in result["data_schema"].schema}
    assert schema_keys[CONF_URL].description == {"suggested_value": service.url}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: await closed_port_url(service)}
    )
    assert result["errors"] == {"base": "cannot_connect"}

    new_url = f"http://127.0.0.1:{service.port}/ws"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: new_url, CONF_TOKEN: ""}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert mock_config_entry.data == {CONF_URL: service.url, CONF_TOKEN: None}
    # The default title named no address; now it names the one configured.
    assert mock_config_entry.title == entry_title(service.url)


async def test_reconfigure_wrong_service(
    hass: HomeAssistant, service: FakeService
) -> None:
    """Reconfigure refuses to point an entry at a different service."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="1" * 32,
        data={CONF_URL: "ws://10.0.0.9:8990/ws", CONF_TOKEN: None},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: service.url}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_service"
    assert entry.data[CONF_URL] == "ws://10.0.0.9:8990/ws"


@pytest.mark.parametrize("service_token", ["new-token"])
async def test_reauth(hass: HomeAssistant, service: FakeService) -> None:
    """Reauth asks for the token, rejects a wrong one and stores the right one."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        data={CONF_URL: service.url, CONF_TOKEN: "old-token"},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"]["url"] == service.url

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "still-wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "new-token"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == "new-token"


async def test_reauth_wrong_service(hass: HomeAssistant, service: FakeService) -> None:
    """Reauth refuses when the URL now answers with another service."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="2" * 32,
        data={CONF_URL: service.url, CONF_TOKEN: "old"},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: ""}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_service"


async def test_options_flow(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """The no data timeout is stored as whole minutes and the entry reloads."""
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_NO_DATA_TIMEOUT: 30.0}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options == {CONF_NO_DATA_TIMEOUT: 30}
    coordinator = init_integration.runtime_data
    assert coordinator.no_data_timeout.total_seconds() == 30 * 60


async def test_hassio_without_slug_next_to_other_entry(
    hass: HomeAssistant, service: FakeService
) -> None:
    """Another service's entry is left alone; no slug means no app link."""
    other = MockConfigEntry(
        domain=DOMAIN,
        unique_id="3" * 32,
        data={CONF_URL: "ws://127.0.0.1:9/ws", CONF_TOKEN: None},
    )
    other.add_to_hass(hass)
    info = discovery(service)
    info.slug = ""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=info
    )
    assert result["step_id"] == "hassio_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_ADDON_SLUG] is None
    assert other.data[CONF_URL] == "ws://127.0.0.1:9/ws"
    assert other.unique_id == "3" * 32
