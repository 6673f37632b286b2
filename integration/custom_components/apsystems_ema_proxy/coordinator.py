"""Keep the connection to the ECU proxy service and the live state it pushes."""

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any, override

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.event import async_call_later, async_track_point_in_utc_time
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from . import ema_commands, issues
from .client import Client
from .const import (
    CONF_NO_DATA_TIMEOUT,
    DEFAULT_NO_DATA_TIMEOUT,
    DOMAIN,
    LOGGER,
    NO_ECU_DATA_ISSUE_AFTER_HOURS,
    RECONNECT_MAX_DELAY,
    RECONNECT_MIN_DELAY,
)
from .contract.messages import EmaCommandEvent, Event, ListenResult
from .contract.state import Ecu, Inverter
from .devices import (
    async_get_entry_device,
    async_register_ecu,
    async_register_hub,
    async_register_inverter,
)
from .exceptions import CannotConnect, IncompatibleSchema, InvalidAuth, ProxyClientError
from .models import ProxyState

type EmaProxyConfigEntry = ConfigEntry[EmaProxyCoordinator]

# How long a connection attempt waits for the first state before giving up.
FIRST_STATE_TIMEOUT = 30.0


def backoff_delay(attempt: int) -> float:
    """Return the jittered wait before reconnect attempt ``attempt`` (from 1)."""
    base = min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.75, 1.0)


class EmaProxyCoordinator(DataUpdateCoordinator[ProxyState]):
    """The service's state, pushed over its WebSocket; nothing is polled.

    A refresh connects, starts listening and returns once the service sent its
    state: at setup (``async_config_entry_first_refresh``) and, after the
    connection was lost, again after a jittered backoff. The listener resumes
    from the last event seen (``since``), so nothing is missed in between.
    Pushed events reach the entities through ``async_set_updated_data``.
    """

    config_entry: EmaProxyConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: EmaProxyConfigEntry, client: Client
    ) -> None:
        """Start without state; the first refresh connects."""
        super().__init__(hass, LOGGER, config_entry=entry, name=DOMAIN)
        self.client = client
        self.last_seq: int | None = None
        # Since when the service has been reachable without a break (None: it is not).
        self.connected_since: datetime | None = None
        self.no_data_timeout = timedelta(
            minutes=entry.options.get(CONF_NO_DATA_TIMEOUT, DEFAULT_NO_DATA_TIMEOUT)
        )
        self._attempt = 0
        self._listener: asyncio.Task[None] | None = None
        self._unsub_reconnect: CALLBACK_TYPE | None = None
        # Cancelled when Home Assistant stops: it closes the shared HTTP session.
        self._reconnect_job = HassJob(
            self._async_reconnect, f"{DOMAIN} reconnect", cancel_on_shutdown=True
        )
        self._unsub_expiry: CALLBACK_TYPE | None = None
        self._registered: set[str] = set()
        self._parents: dict[str, str] = {}  # inverter id -> ECU it is linked to

    # ------------------------------------------------------------------ connection

    @override
    async def _async_update_data(self) -> ProxyState:
        """Connect, start listening and return the state the service sends."""
        if self.client.connected:
            # Asked while listening (homeassistant.update_entity): it is pushed.
            return self.data
        try:
            info = await self.client.connect()
        except ProxyClientError as err:
            raise self._async_failed(err) from err
        entry = self.config_entry
        issues.async_clear_incompatible_schema(self.hass, entry.entry_id)
        if self.last_seq is None:  # setting up: nothing received yet
            if info.server_id != entry.unique_id:
                await self._async_adopt_server_id(info.server_id)
            async_register_hub(self.hass, entry, info)
        elif info.server_id != entry.unique_id:
            # A reinstalled service: its event numbers mean nothing to us.
            # Setting up again (the unload disconnects) adopts the new id and takes
            # its full state.
            LOGGER.info(
                "ECU proxy at %s came back as a new service; reloading",
                self.client.url,
            )
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
            raise UpdateFailed("the service was reinstalled")
        started = self.hass.loop.create_future()
        self._listener = entry.async_create_background_task(
            self.hass, self._async_listen(started), f"{DOMAIN} listen {self.client.url}"
        )
        try:
            async with asyncio.timeout(FIRST_STATE_TIMEOUT):
                await started
        except TimeoutError:
            await self._async_stop_listening()
            raise self._async_failed(
                CannotConnect("no state received in time")
            ) from None
        except ProxyClientError as err:
            await self._async_stop_listening()
            raise self._async_failed(err) from err
        return self.data

    @callback
    def _async_failed(self, err: ProxyClientError) -> Exception:
        """Return what a failed connection attempt raises; plan the next one."""
        if isinstance(err, InvalidAuth):
            # The coordinator starts the reauth flow; no retries until it is done.
            return ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            )
        if self.last_seq is not None:  # reconnecting; setup is retried by HA
            self._async_schedule_reconnect()
        if isinstance(err, IncompatibleSchema):
            issues.async_raise_incompatible_schema(
                self.hass, self.config_entry.entry_id, err
            )
            return UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="incompatible_schema",
                translation_placeholders={"error": str(err)},
            )
        return UpdateFailed(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"url": self.client.url, "error": str(err)},
        )

    async def _async_adopt_server_id(self, server_id: str) -> None:
        """Follow a service that was reinstalled at the same address (new id).

        Entity unique ids are built from ECU and inverter ids only, so the entry
        can move to the new id and keep its history.
        """
        entry = self.config_entry
        other = self.hass.config_entries.async_entry_for_domain_unique_id(
            DOMAIN, server_id
        )
        if other is not None and other.entry_id != entry.entry_id:
            raise ConfigEntryError(
                translation_domain=DOMAIN,
                translation_key="duplicate_service",
                translation_placeholders={"title": other.title},
            )
        old_id = entry.unique_id
        LOGGER.info(
            "ECU proxy at %s has a new server id %s (was %s)",
            self.client.url,
            server_id,
            old_id,
        )
        self.hass.config_entries.async_update_entry(entry, unique_id=server_id)
        registry = dr.async_get(self.hass)
        if old_id is not None and (
            old_hub := async_get_entry_device(
                registry, (DOMAIN, old_id), entry.entry_id
            )
        ):
            # The device of the old service belongs to this entry only.
            registry.async_remove_device(old_hub.id)

    async def _async_listen(self, started: asyncio.Future[None]) -> None:
        """Listen until the connection ends; resolve ``started`` with the start."""

        @callback
        def on_start(result: ListenResult) -> None:
            self._on_start(result)
            if not started.done():
                started.set_result(None)

        try:
            await self.client.listen(on_start, self._on_event, since=self.last_seq)
        except ProxyClientError as err:
            self._async_listen_ended(started, err)
        except Exception as err:  # noqa: BLE001 - logged with its traceback below
            # A bug (in applying an event, say) must not end listening for good
            # while the entities look connected: reconnect, as after a lost link.
            LOGGER.exception(
                "Unexpected error while listening to ECU proxy at %s; reconnecting",
                self.client.url,
            )
            self._async_listen_ended(
                started, CannotConnect(f"unexpected error: {err!r}")
            )

    @callback
    def _async_listen_ended(
        self, started: asyncio.Future[None], err: ProxyClientError
    ) -> None:
        """Fail the refresh still waiting for the start, else reconnect."""
        if not started.done():
            started.set_exception(err)
        elif not started.cancelled():  # else the refresh gave up already
            self._async_connection_lost(err)

    @callback
    def _async_connection_lost(self, err: ProxyClientError) -> None:
        """Mark the entities unavailable and reconnect (or ask for a new token)."""
        # One line for the outage and one for the recovery, visible at the default
        # log level; the retries in between are not logged.
        LOGGER.warning(
            "Lost connection to ECU proxy at %s (%s); its entities are unavailable "
            "until it is back",
            self.client.url,
            err,
        )
        self.connected_since = None
        self.last_update_success = False
        self.last_exception = err
        self.async_update_listeners()
        if isinstance(err, InvalidAuth):
            self.config_entry.async_start_reauth(self.hass)
        else:
            self._async_schedule_reconnect()

    @callback
    def _async_schedule_reconnect(self) -> None:
        """Refresh (reconnect) after the next backoff delay."""
        if self._unsub_reconnect is not None:  # a refresh asked for in between
            self._unsub_reconnect()
            self._unsub_reconnect = None
        if self.hass.is_stopping:
            return  # its HTTP session is closing: nothing to reconnect with
        self._attempt += 1
        self._unsub_reconnect = async_call_later(
            self.hass, backoff_delay(self._attempt), self._reconnect_job
        )

    @callback
    def _async_reconnect(self, _now: datetime) -> None:
        self._unsub_reconnect = None
        if self.hass.is_stopping:
            return
        self.config_entry.async_create_background_task(
            self.hass, self.async_refresh(), f"{DOMAIN} reconnect {self.client.url}"
        )

    async def _async_stop_listening(self) -> None:
        """End the listener task and close the connection."""
        if self._listener is not None and not self._listener.done():
            self._listener.cancel()
            # asyncio.wait, not "await": a cancellation of the caller that arrives
            # right now must not be swallowed with the listener's.
            await asyncio.wait([self._listener])
        self._listener = None
        await self.client.disconnect()

    @override
    async def async_shutdown(self) -> None:
        """Stop reconnecting and listening; called when the entry unloads."""
        await super().async_shutdown()
        for unsub in (self._unsub_reconnect, self._unsub_expiry):
            if unsub is not None:
                unsub()
        self._unsub_reconnect = self._unsub_expiry = None
        await self._async_stop_listening()

    # ------------------------------------------------------------------ state

    @callback
    def _on_start(self, result: ListenResult) -> None:
        """Take a full state, or replay the events missed while disconnected."""
        if result.state is not None:
            self.data = ProxyState.from_document(result.state)
        else:
            for event in result.events:
                self.data = self.data.apply(event)
                if isinstance(event, EmaCommandEvent):  # missed while disconnected
                    ema_commands.async_handle_ema_command(self.hass, self, event)
        self.last_seq = result.last_seq
        self._attempt = 0
        if not self.last_update_success:
            LOGGER.warning("Connection to ECU proxy at %s restored", self.client.url)
        self.connected_since = dt_util.utcnow()
        self._async_state_changed()

    @callback
    def _on_event(self, event: Event) -> None:
        """Apply one pushed event."""
        self.last_seq = event.seq
        if isinstance(event, EmaCommandEvent):
            ema_commands.async_handle_ema_command(self.hass, self, event)
        self.data = self.data.apply(event)
        self._async_state_changed()

    @callback
    def _async_state_changed(self) -> None:
        """Register new devices, update entities, issues and the staleness timer."""
        self._async_register_devices()
        self.async_set_updated_data(self.data)
        issues.async_update_state_issues(self.hass, self)
        self._async_schedule_expiry()

    @callback
    def _async_register_devices(self) -> None:
        """Create registry devices for ECUs and inverters seen for the first time."""
        for ecu in self.data.ecus.values():
            if ecu.ecu_id not in self._registered:
                async_register_ecu(self.hass, self.config_entry, ecu)
                self._registered.add(ecu.ecu_id)
            for inverter in ecu.inverters.values():
                if inverter.id not in self._registered or (
                    self._parents.get(inverter.id) != ecu.ecu_id
                    and self.inverter(ecu.ecu_id, inverter.id) is inverter
                ):
                    # New, or moved to a replacement ECU: (re)link it there.
                    async_register_inverter(
                        self.hass, self.config_entry, ecu.ecu_id, inverter
                    )
                    self._registered.add(inverter.id)
                    self._parents[inverter.id] = ecu.ecu_id

    @callback
    def async_forget_device(self, identifier: str) -> None:
        """Forget a device the user removed, so it is created again if it returns."""
        self._registered.discard(identifier)

    # ------------------------------------------------------------------ staleness

    @property
    def received_state(self) -> ProxyState | None:
        """Return the service's state, None before it sent one (setup retries)."""
        state: ProxyState | None = self.data
        return state

    def ecu(self, ecu_id: str) -> Ecu | None:
        """Return the state of one ECU."""
        return self.data.ecus.get(ecu_id)

    def inverter(self, ecu_id: str, inverter_id: str) -> Inverter | None:
        """Return the state of one inverter, from the ECU that reported it last.

        After an ECU is replaced the service lists the inverter under both ECUs;
        the newer report wins, so the inverter's sensors follow the new ECU.
        """
        newest: Inverter | None = None
        newest_key = (datetime.min.replace(tzinfo=UTC), False)
        for ecu in self.data.ecus.values():
            found = ecu.inverters.get(inverter_id)
            if found is None:
                continue
            # Newest report first; on a tie the entity's own ECU.
            key = (_seen(found), ecu.ecu_id == ecu_id)
            if newest is None or key > newest_key:
                newest, newest_key = found, key
        return newest

    def is_stale(self, last_seen: datetime | None) -> bool:
        """Return True when nothing was received for longer than the timeout."""
        if last_seen is None:
            return True
        return dt_util.utcnow() - last_seen > self.no_data_timeout

    def newest_data(self) -> datetime | None:
        """Return when data from any ECU last arrived."""
        seen = [e.last_seen for e in self.data.ecus.values() if e.last_seen]
        return max(seen) if seen else None

    @callback
    def _async_schedule_expiry(self) -> None:
        """Wake up when the next ECU or inverter goes stale, or the issue is due."""
        if self._unsub_expiry is not None:
            self._unsub_expiry()
            self._unsub_expiry = None
        now = dt_util.utcnow()
        candidates: list[datetime] = []
        for ecu in self.data.ecus.values():
            times = [ecu.last_seen, *(i.last_seen for i in ecu.inverters.values())]
            candidates.extend(t + self.no_data_timeout for t in times if t is not None)
        if (newest := self.newest_data()) is not None:
            candidates.append(newest + timedelta(hours=NO_ECU_DATA_ISSUE_AFTER_HOURS))
        elif self.connected_since is not None:
            candidates.append(issues.no_data_ever_due(self.connected_since))
        future = [c for c in candidates if c > now]
        if future:
            self._unsub_expiry = async_track_point_in_utc_time(
                self.hass,
                self._async_expired,
                min(future) + timedelta(milliseconds=1),
            )

    @callback
    def _async_expired(self, _now: datetime) -> None:
        """Re-evaluate stale values and issues once a deadline passed."""
        self._unsub_expiry = None
        issues.async_update_state_issues(self.hass, self)
        self._async_schedule_expiry()
        self.async_update_listeners()

    def diagnostics(self) -> dict[str, Any]:
        """Return the connection facts for diagnostics."""
        info = self.client.server_info
        return {
            "url": self.client.url,
            "connected": self.last_update_success,
            "last_seq": self.last_seq,
            "last_error": None
            if self.last_update_success
            else str(self.last_exception),
            "no_data_timeout_min": self.no_data_timeout.total_seconds() / 60,
            "server_info": None
            if info is None
            else {
                "server_id": info.server_id,
                "version": info.version,
                "schema_version": info.schema_version,
                "min_schema_version": info.min_schema_version,
                "requires_auth": info.requires_auth,
            },
        }


def _seen(inverter: Inverter) -> datetime:
    """Return when the inverter was last reported (the epoch if never)."""
    return inverter.last_seen or datetime.min.replace(tzinfo=UTC)
