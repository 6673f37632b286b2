"""Config flow: Supervisor discovery, manual URL, reconfigure, reauth and options."""

from collections.abc import Mapping
from typing import Any, override
from urllib.parse import urlsplit

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo

try:
    import probatio as vol
except ImportError:  # pragma: no cover - older Cores validate with voluptuous
    import voluptuous as vol  # type: ignore[no-redef]

from .client import Client, build_url, normalize_url
from .const import (
    CONF_ADDON_SLUG,
    CONF_NO_DATA_TIMEOUT,
    DEFAULT_NAME,
    DEFAULT_NO_DATA_TIMEOUT,
    DOMAIN,
    LOGGER,
    MAX_NO_DATA_TIMEOUT,
    MIN_NO_DATA_TIMEOUT,
    addon_page_url,
)
from .contract.constants import DEFAULT_API_PORT
from .contract.messages import ServerInfo
from .exceptions import IncompatibleSchema, InvalidAuth, ProxyClientError

TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))

CONNECTION_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_URL): TextSelector(),
        vol.Optional(CONF_TOKEN): TOKEN_SELECTOR,
    }
)
TOKEN_SCHEMA = vol.Schema({vol.Optional(CONF_TOKEN): TOKEN_SELECTOR})
OPTIONS_SCHEMA = vol.Schema(
    {
        vol.Required(
            CONF_NO_DATA_TIMEOUT, default=DEFAULT_NO_DATA_TIMEOUT
        ): NumberSelector(
            NumberSelectorConfig(
                min=MIN_NO_DATA_TIMEOUT,
                max=MAX_NO_DATA_TIMEOUT,
                step=1,
                mode=NumberSelectorMode.BOX,
                unit_of_measurement="min",
            )
        )
    }
)


async def _async_check(hass: HomeAssistant, url: str, token: str | None) -> ServerInfo:
    """Connect once, greet and log in, then disconnect."""
    client = Client(url, async_get_clientsession(hass), token)
    try:
        return await client.connect()
    finally:
        await client.disconnect()


async def _async_try(
    hass: HomeAssistant, url: str, token: str | None
) -> tuple[ServerInfo | None, dict[str, str]]:
    """Return the server info, or the form errors explaining why not."""
    try:
        return await _async_check(hass, url, token), {}
    except InvalidAuth:
        return None, {"base": "invalid_auth"}
    except IncompatibleSchema:
        return None, {"base": "incompatible_schema"}
    except ProxyClientError:
        return None, {"base": "cannot_connect"}
    except Exception:  # noqa: BLE001 - the form shows "unknown", the log the cause
        LOGGER.exception("Unexpected error while connecting to %s", url)
        return None, {"base": "unknown"}


def entry_title(url: str) -> str:
    """Return an entry title naming the service's host (and port unless 8990)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    if parts.port not in (None, DEFAULT_API_PORT):
        host = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
    return f"{DEFAULT_NAME} ({host})"


def _token(user_input: Mapping[str, Any]) -> str | None:
    """Return the token from a form, None when left empty."""
    token = str(user_input.get(CONF_TOKEN) or "").strip()
    return token or None


class EmaProxyConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a connection to one ECU proxy service."""

    VERSION = 1
    MINOR_VERSION = 1

    _url: str
    _token: str | None = None
    _slug: str | None = None
    _name: str = DEFAULT_NAME

    @staticmethod
    @callback
    @override
    def async_get_options_flow(config_entry: ConfigEntry) -> "EmaProxyOptionsFlow":
        """Return the options flow."""
        return EmaProxyOptionsFlow()

    async def _async_connection_step(
        self, user_input: dict[str, Any]
    ) -> tuple[str | None, ServerInfo | None, dict[str, str]]:
        """Validate a URL and token from a form."""
        try:
            url = normalize_url(str(user_input[CONF_URL]))
        except ValueError:
            return None, None, {CONF_URL: "invalid_url"}
        info, errors = await _async_try(self.hass, url, _token(user_input))
        return url, info, errors

    @override
    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the service's URL and token (installs without Supervisor)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            url, info, errors = await self._async_connection_step(user_input)
            if info is not None:
                await self.async_set_unique_id(info.server_id)
                self._abort_if_unique_id_configured()
                assert url is not None
                return self.async_create_entry(
                    title=entry_title(url),
                    data={CONF_URL: url, CONF_TOKEN: _token(user_input)},
                )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                CONNECTION_SCHEMA, user_input or {}
            ),
            errors=errors,
        )

    @override
    async def async_step_hassio(
        self, discovery_info: HassioServiceInfo
    ) -> ConfigFlowResult:
        """Handle the add-on's discovery message."""
        config = discovery_info.config
        try:
            host = str(config["host"])
            port = int(config["port"])
            server_id = str(config["server_id"])
        except (KeyError, TypeError, ValueError):
            return self.async_abort(reason="invalid_discovery_info")
        url = build_url(host, port)
        token = str(config.get("token") or "") or None
        slug = discovery_info.slug or None

        await self.async_set_unique_id(server_id)
        self._abort_if_unique_id_configured(
            updates={CONF_URL: url, CONF_TOKEN: token, CONF_ADDON_SLUG: slug}
        )
        # A reinstalled add-on has a new server id at the same address: keep the
        # entry (entity ids do not depend on the server id) and move it over.
        for entry in self._async_current_entries(include_ignore=False):
            if entry.data.get(CONF_URL) == url:
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=server_id,
                    data_updates={CONF_TOKEN: token, CONF_ADDON_SLUG: slug},
                    reason="already_configured",
                )

        self._url, self._token, self._slug = url, token, slug
        self._name = discovery_info.name or DEFAULT_NAME
        self.context["title_placeholders"] = {"name": self._name}
        if slug:
            self.context["configuration_url"] = addon_page_url(slug)
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm the discovered service, testing the connection first."""
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await _async_try(self.hass, self._url, self._token)
            if info is not None:
                return self.async_create_entry(
                    title=self._name,
                    data={
                        CONF_URL: self._url,
                        CONF_TOKEN: self._token,
                        CONF_ADDON_SLUG: self._slug,
                    },
                )
        return self.async_show_form(
            step_id="hassio_confirm",
            description_placeholders={"addon": self._name},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the URL or token of the configured service."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            url, info, errors = await self._async_connection_step(user_input)
            if info is not None:
                await self.async_set_unique_id(info.server_id)
                self._abort_if_unique_id_mismatch(reason="wrong_service")
                assert url is not None
                # A title we made from the old address follows the new one.
                title = entry.title
                if title in (DEFAULT_NAME, entry_title(entry.data[CONF_URL])):
                    title = entry_title(url)
                return self.async_update_reload_and_abort(
                    entry,
                    title=title,
                    data_updates={CONF_URL: url, CONF_TOKEN: _token(user_input)},
                )
        suggested = user_input or {
            CONF_URL: entry.data[CONF_URL],
            CONF_TOKEN: entry.data.get(CONF_TOKEN) or "",
        }
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                CONNECTION_SCHEMA, suggested
            ),
            errors=errors,
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Start asking for a new token after the service rejected the old one."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the service's current API token."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            token = _token(user_input)
            info, errors = await _async_try(self.hass, entry.data[CONF_URL], token)
            if info is not None:
                await self.async_set_unique_id(info.server_id)
                self._abort_if_unique_id_mismatch(reason="wrong_service")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_TOKEN: token}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=TOKEN_SCHEMA,
            description_placeholders={"url": entry.data[CONF_URL]},
            errors=errors,
        )


class EmaProxyOptionsFlow(OptionsFlowWithReload):
    """Change how long without data counts as night or outage."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and store the options."""
        if user_input is not None:
            return self.async_create_entry(
                data={CONF_NO_DATA_TIMEOUT: int(user_input[CONF_NO_DATA_TIMEOUT])}
            )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                OPTIONS_SCHEMA, self.config_entry.options
            ),
        )
