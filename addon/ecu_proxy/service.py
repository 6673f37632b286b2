"""Wire the relay, the live state, the API and the Supervisor link into one service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp

from . import __version__
from .api import ApiServer
from .cloudless import CloudlessResponder
from .fdlimit import raise_open_files_limit
from .hub import Hub
from .identity import load_or_create_server_id
from .integration_install import bundle_path, config_dir, install_integration
from .mqtt import MqttPublisher
from .options import MQTT_AUTO, Mode, Options
from .relay import Relay
from .supervisor import (
    DiscoveryInfo,
    SupervisorClient,
    SupervisorError,
    announce,
    api_health_probe,
    notify_restart_needed,
    supervisor_from_env,
)
from .upstream import UpstreamResolver

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .models import RelayCounters

_LOGGER = logging.getLogger(__name__)

# Asking the Supervisor for the MQTT broker again: from 5 s doubling to 5 min.
MQTT_LOOKUP_DELAY = 5.0
MQTT_LOOKUP_MAX_DELAY = 300.0


class Service:
    """The running proxy: start it, let it run, stop it."""

    def __init__(self, options: Options, *, allow_local_upstream: bool = False) -> None:
        """Prepare the parts; nothing is bound until start()."""
        self.options = options.validate()
        try:
            self.server_id = load_or_create_server_id(options.data_dir)
        except OSError as err:
            # A read-only or full data folder must not stop the relay.
            self.server_id = uuid.uuid4().hex
            _LOGGER.error(
                "Cannot store the server id in %s (%s); using %s until restart",
                options.data_dir,
                err.strerror or err,
                self.server_id,
            )
        self.hub = Hub(options, server_id=self.server_id, version=__version__)
        upstream = None
        cloudless = None
        if options.mode is Mode.CLOUDLESS:
            cloudless = CloudlessResponder(self.hub)
        else:
            upstream = UpstreamResolver(
                options.ema_host,
                options.dns_resolvers,
                options.data_dir,
                allow_local=allow_local_upstream,
            )
        self.relay = Relay(
            options,
            self.hub,
            upstream=upstream,
            cloudless=cloudless,
            guard=self.hub.guard,
            ledger=self.hub,
        )
        self.mqtt = MqttPublisher(self.hub, options)
        self.api = ApiServer(
            self.hub, options, counters=self._counters, mqtt=self.mqtt.status
        )
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _counters(self) -> RelayCounters:
        return self.relay.counters

    @property
    def api_port(self) -> int:
        """Return the bound API port."""
        return self.api.port

    @property
    def relay_ports(self) -> dict[int, int]:
        """Return configured relay port -> bound port."""
        return self.relay.bound_ports

    async def start(self) -> None:
        """Load state, open the relay ports and the API, then announce ourselves."""
        _LOGGER.info(
            "Starting APsystems ECU Proxy %s (mode %s, ports %s, API port %s)",
            __version__,
            self.options.mode.value,
            ", ".join(str(p) for p in self.options.all_ports),
            self.options.api_port,
        )
        raise_open_files_limit()
        await self.hub.start()
        await self.relay.start()
        await self.api.start()
        self._session = aiohttp.ClientSession()
        supervisor = supervisor_from_env(self._session)
        if supervisor is not None:
            self._spawn(self._supervisor_tasks(supervisor))
        if self.options.mqtt_enabled:
            self._spawn(self._start_mqtt(supervisor))

    async def _start_mqtt(self, supervisor: SupervisorClient | None) -> None:
        """Start MQTT output; "auto" asks the Supervisor for its broker first.

        The broker app may start after this one: keep asking, less and less often.
        """
        delay = MQTT_LOOKUP_DELAY
        while supervisor is not None and self.options.mqtt_host == MQTT_AUTO:
            try:
                service = await supervisor.mqtt_service()
            except SupervisorError as err:
                _LOGGER.warning("Could not ask the Supervisor for MQTT: %s", err)
                service = None
            if service is not None:
                self.mqtt.start(service)
                return
            self.mqtt.start(None)  # reports "not_configured" and why
            await asyncio.sleep(delay)
            delay = min(delay * 2, MQTT_LOOKUP_MAX_DELAY)
        self.mqtt.start()

    async def _supervisor_tasks(self, supervisor: SupervisorClient) -> None:
        """Install the bundled integration, then post discovery (add-on only)."""
        assert self._session is not None
        if self.options.install_integration:
            result = await asyncio.to_thread(
                install_integration, bundle_path(), config_dir()
            )
            _LOGGER.info("Integration install: %s (%s)", result.action, result.detail)
            if result.changed:
                await notify_restart_needed(supervisor, result.detail)
        info = DiscoveryInfo(
            host=socket.gethostname(),
            port=self.api_port,
            server_id=self.server_id,
            token=self.options.api_token,
        )
        probe = api_health_probe(
            self._session, f"http://127.0.0.1:{self.api_port}/api/health"
        )
        await announce(supervisor, info, probe)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Close listeners and clients, then flush state to disk."""
        _LOGGER.info("Stopping")
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.mqtt.stop()
        await self.relay.stop()
        # Save before closing API clients: a stalled client may delay that part.
        saved = await self.hub.stop()
        await self.api.stop()
        if self._session is not None:
            await self._session.close()
        if saved:
            _LOGGER.info("Stopped; state saved")
        else:
            _LOGGER.error("Stopped; the state could NOT be saved (see above)")
