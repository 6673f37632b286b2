"""Keep the connection to the ECU proxy service and the live state it pushes."""

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.event import async_call_later, async_track_point_in_utc_time
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
from .devices import async_register_ecu, async_register_hub, async_register_inverter
from .exceptions import (
    IncompatibleSchema,
    InvalidAuth,
    ProxyClientError,
)
from .models import ProxyState

type EmaProxyConfigEntry = ConfigEntry[EmaProxyCoordinator]

# How long setup waits for the first state before giving up (ConfigEntryNotReady).
FIRST_STATE_TIMEOUT = 30.0


def backoff_delay(attempt: int) -> float:
    """Return the jittered wait before reconnect attempt ``attempt`` (from 1)."""
    base = min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.75, 1.0)


class EmaProxyCoordinator:
    """Own the client, reconnect with backoff and fan out state to entities."""

    def __init__(
        self, hass: HomeAssistant, entry: EmaProxyConfigEntry, client: Client
    ) -> None:
        """Start with an empty state; call async_setup next."""
        self.hass = hass
        self.entry = entry
        self.client = client
        self.state = ProxyState()
        self.connected = False
        # Since when the service has been reachable without a break (None: it is not).
        self.connected_since: datetime | None = None
        self.last_seq: int | None = None
        self.last_error: str | None = None
        self.no_data_timeout = timedelta(
            minutes=entry.options.get(CONF_NO_DATA_TIMEOUT, DEFAULT_NO_DATA_TIMEOUT)
        )
        self._listeners: dict[str | None, list[CALLBACK_TYPE]] = {}
        self._new_entities_callbacks: list[CALLBACK_TYPE] = []
        self._registered: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._unsub_expiry: CALLBACK_TYPE | None = None
        # Unique ids of the entities created so far; platforms share this set.
        self.added_unique_ids: set[str] = set()
        self._parents: dict[str, str] = {}  # inverter id -> ECU it is linked to
        # False while the platforms unload: an event then must not add entities.
        self.accepting_entities = True

    # ------------------------------------------------------------------ lifecycle

    async def async_setup(self) -> None:
        """Connect, wait for the first state and keep listening in the background."""
        try:
            info = await self.client.connect()
        except InvalidAuth as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except IncompatibleSchema as err:
            issues.async_raise_incompatible_schema(self.hass, self.entry.entry_id, err)
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="incompatible_schema",
                translation_placeholders={"error": str(err)},
            ) from err
        except ProxyClientError as err:
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"url": self.client.url, "error": str(err)},
            ) from err
        issues.async_clear_incompatible_schema(self.hass, self.entry.entry_id)
        if self.entry.unique_id != info.server_id:
            await self._async_adopt_server_id(info.server_id)
        async_register_hub(self.hass, self.entry, info)
        self._task = self.entry.async_create_background_task(
            self.hass, self._async_run(), f"{DOMAIN} listen {self.client.url}"
        )
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._task},
            timeout=FIRST_STATE_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if ready not in done:
            ready.cancel()
            if self._task in done and (exc := self._task.exception()) is not None:
                self.last_error = str(exc)
            error = self.last_error or "no state received in time"
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"url": self.client.url, "error": error},
            )
        self.entry.async_on_unload(self._cancel_expiry)

    async def _async_adopt_server_id(self, server_id: str) -> None:
        """Follow a service that was reinstalled at the same address (new id).

        Entity unique ids are built from ECU and inverter ids only, so the entry
        can move to the new id and keep its history.
        """
        other = self.hass.config_entries.async_entry_for_domain_unique_id(
            DOMAIN, server_id
        )
        if other is not None and other.entry_id != self.entry.entry_id:
            await self.client.disconnect()
            raise ConfigEntryError(
                translation_domain=DOMAIN,
                translation_key="duplicate_service",
                translation_placeholders={"title": other.title},
            )
        old_id = self.entry.unique_id
        LOGGER.info(
            "ECU proxy at %s has a new server id %s (was %s)",
            self.client.url,
            server_id,
            old_id,
        )
        self.hass.config_entries.async_update_entry(self.entry, unique_id=server_id)
        registry = dr.async_get(self.hass)
        if old_id is not None and (
            old_hub := registry.async_get_device_by_identifier(
                (DOMAIN, old_id), self.entry.entry_id
            )
        ):
            # The device of the old service belongs to this entry only.
            registry.async_remove_device(old_hub.id)

    async def async_shutdown(self) -> None:
        """Stop listening and close the connection."""
        self._cancel_expiry()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])
        self._task = None
        await self.client.disconnect()
        self.connected = False

    async def _async_run(self) -> None:
        """Listen; on a drop, reconnect with jittered backoff and resume by seq."""
        attempt = 0
        while True:
            if not self.client.connected:
                try:
                    info = await self.client.connect()
                except InvalidAuth as err:
                    self._set_disconnected(err)
                    self.entry.async_start_reauth(self.hass)
                    return
                except IncompatibleSchema as err:
                    issues.async_raise_incompatible_schema(
                        self.hass, self.entry.entry_id, err
                    )
                    self._set_disconnected(err)
                    attempt += 1
                    await self._async_wait(backoff_delay(attempt))
                    continue
                except ProxyClientError as err:
                    self._set_disconnected(err)
                    attempt += 1
                    await self._async_wait(backoff_delay(attempt))
                    continue
                issues.async_clear_incompatible_schema(self.hass, self.entry.entry_id)
                if info.server_id != self.entry.unique_id:
                    # A reinstalled service: its event numbers mean nothing to us.
                    # Setting up again adopts the new id and takes its full state.
                    LOGGER.info(
                        "ECU proxy at %s came back as a new service; reloading",
                        self.client.url,
                    )
                    self.last_seq = None
                    self.hass.config_entries.async_schedule_reload(self.entry.entry_id)
                    return
            try:
                await self.client.listen(
                    self._on_start, self._on_event, since=self.last_seq
                )
            except InvalidAuth as err:
                self._set_disconnected(err)
                self.entry.async_start_reauth(self.hass)
                return
            except ProxyClientError as err:
                if not self._ready.is_set():
                    # Setup is still waiting: let it fail fast and retry later.
                    raise
                if self.connected:
                    attempt = 0
                self._set_disconnected(err)
            attempt += 1
            await self._async_wait(backoff_delay(attempt))

    async def _async_wait(self, delay: float) -> None:
        """Sleep on Home Assistant's clock, so tests can move time forward."""
        wake = asyncio.Event()

        @callback
        def wake_up(_now: datetime) -> None:
            wake.set()

        cancel = async_call_later(self.hass, delay, wake_up)
        try:
            await wake.wait()
        finally:
            cancel()

    @callback
    def _set_disconnected(self, err: Exception) -> None:
        """Mark everything unavailable; log once when the connection goes down."""
        self.last_error = str(err)
        self.connected_since = None
        if not self.connected:
            LOGGER.debug("Still cannot reach ECU proxy at %s: %s", self.client.url, err)
            return
        self.connected = False
        # One line for the outage and one for the recovery, visible at the default
        # log level; the retries in between log at debug level only.
        LOGGER.warning(
            "Lost connection to ECU proxy at %s (%s); its entities are unavailable "
            "until it is back",
            self.client.url,
            err,
        )
        self._async_notify_all()

    # ------------------------------------------------------------------ state

    @callback
    def _on_start(self, result: ListenResult) -> None:
        """Take a full state, or replay the events missed while disconnected."""
        if result.state is not None:
            self.state = ProxyState.from_document(result.state)
        else:
            for event in result.events:
                self.state = self.state.apply(event)
                if isinstance(event, EmaCommandEvent):  # missed while disconnected
                    ema_commands.async_handle_ema_command(self.hass, self, event)
        self.last_seq = result.last_seq
        if not self.connected and self._ready.is_set():
            LOGGER.warning("Connection to ECU proxy at %s restored", self.client.url)
        if not self.connected:
            self.connected_since = dt_util.utcnow()
        self.connected = True
        self.last_error = None
        self._async_state_changed(None)
        self._ready.set()

    @callback
    def _on_event(self, event: Event) -> None:
        """Apply one pushed event."""
        self.last_seq = event.seq
        if isinstance(event, EmaCommandEvent):
            ema_commands.async_handle_ema_command(self.hass, self, event)
        self.state = self.state.apply(event)
        self._async_state_changed(event.data.ecu_id)

    @callback
    def _async_state_changed(self, ecu_id: str | None) -> None:
        """Register new devices, add entities, update issues and entities."""
        self._async_register_devices()
        for new_entities in list(self._new_entities_callbacks):
            new_entities()
        issues.async_update_state_issues(self.hass, self)
        self._async_schedule_expiry()
        if ecu_id is None:
            self._async_notify_all()
        else:
            self._async_notify(ecu_id)

    @callback
    def _async_register_devices(self) -> None:
        """Create registry devices for ECUs and inverters seen for the first time."""
        for ecu in self.state.ecus.values():
            if ecu.ecu_id not in self._registered:
                async_register_ecu(self.hass, self.entry, ecu)
                self._registered.add(ecu.ecu_id)
            for inverter in ecu.inverters.values():
                if inverter.id not in self._registered or (
                    self._parents.get(inverter.id) != ecu.ecu_id
                    and self.inverter(ecu.ecu_id, inverter.id) is inverter
                ):
                    # New, or moved to a replacement ECU: (re)link it there.
                    async_register_inverter(self.hass, self.entry, ecu.ecu_id, inverter)
                    self._registered.add(inverter.id)
                    self._parents[inverter.id] = ecu.ecu_id

    @callback
    def async_forget_device(self, identifier: str) -> None:
        """Forget a device the user removed, so it is created again if it returns."""
        self._registered.discard(identifier)

    # ------------------------------------------------------------------ staleness

    def ecu(self, ecu_id: str) -> Ecu | None:
        """Return the state of one ECU."""
        return self.state.ecus.get(ecu_id)

    def inverter(self, ecu_id: str, inverter_id: str) -> Inverter | None:
        """Return the state of one inverter, from the ECU that reported it last.

        After an ECU is replaced the service lists the inverter under both ECUs;
        the newer report wins, so the inverter's sensors follow the new ECU.
        """
        newest: Inverter | None = None
        newest_key = (datetime.min.replace(tzinfo=UTC), False)
        for ecu in self.state.ecus.values():
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
        seen = [e.last_seen for e in self.state.ecus.values() if e.last_seen]
        return max(seen) if seen else None

    @callback
    def _async_schedule_expiry(self) -> None:
        """Wake up when the next ECU or inverter goes stale, or the issue is due."""
        self._cancel_expiry()
        now = dt_util.utcnow()
        candidates: list[datetime] = []
        for ecu in self.state.ecus.values():
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
        self._async_notify_all()

    @callback
    def _cancel_expiry(self) -> None:
        """Cancel the staleness timer."""
        if self._unsub_expiry is not None:
            self._unsub_expiry()
            self._unsub_expiry = None

    # ------------------------------------------------------------------ listeners

    @callback
    def async_add_listener(
        self, ecu_id: str | None, update: CALLBACK_TYPE
    ) -> Callable[[], None]:
        """Call ``update`` when the ECU (or, for None, anything) changes."""
        self._listeners.setdefault(ecu_id, []).append(update)

        @callback
        def remove() -> None:
            self._listeners[ecu_id].remove(update)

        return remove

    @callback
    def async_add_new_entities_callback(self, check: CALLBACK_TYPE) -> None:
        """Call ``check`` after every state change so platforms add new entities."""
        self._new_entities_callbacks.append(check)

    @callback
    def _async_notify(self, ecu_id: str) -> None:
        """Tell the entities of one ECU (and global listeners) to update."""
        for update in [
            *self._listeners.get(ecu_id, ()),
            *self._listeners.get(None, ()),
        ]:
            update()

    @callback
    def _async_notify_all(self) -> None:
        """Tell every entity to update."""
        for updates in list(self._listeners.values()):
            for update in list(updates):
                update()

    def diagnostics(self) -> dict[str, Any]:
        """Return the connection facts for diagnostics."""
        info = self.client.server_info
        return {
            "url": self.client.url,
            "connected": self.connected,
            "last_seq": self.last_seq,
            "last_error": self.last_error,
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
