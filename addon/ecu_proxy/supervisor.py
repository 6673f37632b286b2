"""Talk to the Home Assistant Supervisor: discovery and persistent notifications."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from .contract.constants import DOMAIN
from .mqtt.config import BrokerService
from .options import DEFAULT_API_PORT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

_LOGGER = logging.getLogger(__name__)

DISCOVERY_SERVICE = DOMAIN
DEFAULT_SUPERVISOR_URL = "http://supervisor"
RESTART_NOTIFICATION_ID = "apsystems_ecu_proxy_integration_installed"
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
_MAX_DELAY = 60.0
_MAX_ERROR_TEXT = 200


class SupervisorError(aiohttp.ClientError):
    """The Supervisor could not be reached or refused a request."""


@dataclass(frozen=True, slots=True)
class DiscoveryInfo:
    """What Home Assistant needs to reach this service's API."""

    host: str
    port: int
    server_id: str
    token: str | None

    def as_config(self) -> dict[str, Any]:
        """Return the discovery message's ``config`` object."""
        return {
            "host": self.host,
            "port": self.port,
            "server_id": self.server_id,
            "token": self.token,
        }


def local_discovery_info(
    server_id: str, token: str | None, *, port: int = DEFAULT_API_PORT
) -> DiscoveryInfo:
    """Describe this container's API: its hostname on the Supervisor network."""
    return DiscoveryInfo(
        host=socket.gethostname(), port=port, server_id=server_id, token=token
    )


class SupervisorClient:
    """A small client for the Supervisor API, authenticated with the app token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token: str,
        base_url: str = DEFAULT_SUPERVISOR_URL,
    ) -> None:
        self._session = session
        self._token = token
        self._base_url = base_url.rstrip("/")

    async def post_discovery(self, info: DiscoveryInfo) -> None:
        """Announce the service to Home Assistant; raise SupervisorError on failure."""
        await self._post(
            "/discovery",
            {"service": DISCOVERY_SERVICE, "config": info.as_config()},
            secrets=(info.token,),
        )

    async def mqtt_service(self) -> BrokerService | None:
        """Return the broker of the Supervisor's MQTT service, None if none is set up.

        Raise SupervisorError when the Supervisor cannot be asked.
        """
        url = f"{self._base_url}/services/mqtt"
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.get(
                url, headers=headers, timeout=_REQUEST_TIMEOUT
            ) as response:
                if response.status >= 400:
                    # 400: no add-on provides the service (Mosquitto not installed).
                    _LOGGER.debug("No MQTT service: HTTP %s", response.status)
                    return None
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            text = _redact(str(err) or type(err).__name__, (self._token,))
            raise SupervisorError(f"GET /services/mqtt failed: {text}") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or not data.get("host"):
            return None
        return BrokerService(
            host=str(data["host"]),
            port=int(data.get("port") or 1883),
            username=str(data["username"]) if data.get("username") else None,
            password=str(data["password"]) if data.get("password") else None,
            ssl=data.get("ssl") is True,
        )

    async def notify(self, title: str, message: str, notification_id: str) -> None:
        """Show a persistent notification in Home Assistant."""
        await self._post(
            "/core/api/services/persistent_notification/create",
            {"title": title, "message": message, "notification_id": notification_id},
        )

    async def _post(
        self, path: str, payload: dict[str, Any], secrets: tuple[str | None, ...] = ()
    ) -> None:
        """POST JSON to the Supervisor and raise SupervisorError unless it says 2xx."""
        url = f"{self._base_url}{path}"
        headers = {"Authorization": f"Bearer {self._token}"}
        hidden = (self._token, *secrets)
        try:
            async with self._session.post(
                url, json=payload, headers=headers, timeout=_REQUEST_TIMEOUT
            ) as response:
                if response.status < 300:
                    return
                body = await response.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            text = _redact(str(err) or type(err).__name__, hidden)
            raise SupervisorError(f"POST {path} failed: {text}") from None
        text = _redact(body.strip()[:_MAX_ERROR_TEXT], hidden)
        raise SupervisorError(f"POST {path} answered HTTP {response.status}: {text}")


def _redact(text: str, secrets: tuple[str | None, ...]) -> str:
    """Replace every secret in text with asterisks."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _backoff(attempt: int, base_delay: float) -> float:
    """Return the wait before the next try: doubling, capped at a minute."""
    return float(min(base_delay * (2**attempt), max(_MAX_DELAY, base_delay)))


async def announce(
    client: SupervisorClient,
    info: DiscoveryInfo,
    api_ready: Callable[[], Awaitable[bool]],
    *,
    attempts: int = 10,
    base_delay: float = 2.0,
) -> bool:
    """Post discovery once the API answers, retrying with backoff; True when sent."""
    last_problem = "the API never answered"
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(_backoff(attempt - 1, base_delay))
        try:
            ready = await api_ready()
        except Exception as err:  # noqa: BLE001 - any probe failure means "not yet"
            _LOGGER.debug("API readiness probe failed: %s", err)
            ready = False
        if not ready:
            last_problem = "the API never answered"
            continue
        try:
            await client.post_discovery(info)
        except SupervisorError as err:
            last_problem = str(err)
            _LOGGER.warning(
                "Discovery attempt %d of %d failed: %s", attempt + 1, attempts, err
            )
            continue
        _LOGGER.info(
            "Announced the service to Home Assistant (host %s, port %d)",
            info.host,
            info.port,
        )
        return True
    _LOGGER.error(
        "Gave up announcing the service to Home Assistant after %d attempts: %s; "
        "add the integration by hand with host %s and port %d",
        attempts,
        last_problem,
        info.host,
        info.port,
    )
    return False


def api_health_probe(
    session: aiohttp.ClientSession, url: str
) -> Callable[[], Awaitable[bool]]:
    """Return a probe that is true once the API answers HTTP at url (any status)."""

    async def probe() -> bool:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)):
                return True
        except (aiohttp.ClientError, TimeoutError):
            return False

    return probe


def supervisor_from_env(
    session: aiohttp.ClientSession, *, environ: Mapping[str, str] | None = None
) -> SupervisorClient | None:
    """Return a client when running under the Supervisor, else None."""
    env = os.environ if environ is None else environ
    token = env.get("SUPERVISOR_TOKEN", "").strip()
    if not token:
        return None
    base_url = env.get("SUPERVISOR_URL", "").strip() or DEFAULT_SUPERVISOR_URL
    return SupervisorClient(session, token=token, base_url=base_url)


async def notify_restart_needed(client: SupervisorClient, detail: str) -> bool:
    """Ask the user to restart Home Assistant after the integration was installed."""
    try:
        await client.notify(
            "APsystems ECU Proxy: restart Home Assistant",
            f"{detail}. Restart Home Assistant to load the APsystems ECU Proxy "
            "integration; it will then offer to set itself up.",
            RESTART_NOTIFICATION_ID,
        )
    except SupervisorError as err:
        _LOGGER.warning("Could not show the restart notification: %s", err)
        return False
    return True
