"""Publish the live state to an MQTT broker, without ever holding up the relay.

The hub hands events to a subscription queue (``put_nowait``); a pump task only
copies the newest ECU document into a cache and marks it dirty. A sender task turns
dirty ECUs into messages in an outbox where the latest value per topic wins, and
publishes them with QoS 1 while connected. A slow or absent broker therefore costs
the relay nothing: records arriving meanwhile replace each other in the outbox, and
every (re)connect publishes the whole current state again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from ..options import OptionsError
from ..outbox import Event
from .availability import STALE_AFTER, is_fresh, last_seen, stale_at
from .config import resolve_settings
from .discovery import (
    ecu_config,
    ecu_shape,
    inverter_config,
    inverter_shape,
    service_config,
)
from .service_state import service_state
from .topics import HA_ONLINE, OFFLINE, ONLINE, Topics

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta

    from ..hub import Hub
    from ..options import Options
    from ..outbox import Subscription
    from .config import BrokerService, MqttSettings

_LOGGER = logging.getLogger(__name__)

QOS = 1
# Hub events waiting for the pump; it only updates a cache, so this never fills
# unless the event loop itself is starved.
HUB_QUEUE = 10_000
# Topics waiting for the broker: one per ECU/inverter state, availability and
# discovery config, so a few thousand cover hundreds of inverters.
OUTBOX_LIMIT = 5_000
# Messages handed to the client at once (each waits for its PUBACK).
BATCH = 256
PUBLISH_TIMEOUT = 10.0
KEEPALIVE = 30
MIN_DELAY = 1.0
MAX_DELAY = 60.0
# Seconds between two publishes of one ECU (its records or upload results). An
# ECU uploads every 5 minutes, but after an outage it sends its backlog back to
# back: those coalesce into one publish per interval, so MQTT's share of the event
# loop stays small.
MIN_INTERVAL = 1.0
# MQTT 3.1.1 CONNACK codes 4/5 and MQTT 5 reason codes 134/135.
_AUTH_CODES = frozenset({4, 5, 134, 135})
EMA_COMMAND_EVENT = "ema_command"


class MqttState(enum.StrEnum):
    """Where the MQTT connection stands, as /api/health shows it."""

    DISABLED = "disabled"
    NOT_CONFIGURED = "not_configured"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_FAILED = "auth_failed"


@dataclass(slots=True)
class MqttStatus:
    """The publisher's state for /api/health."""

    enabled: bool
    discovery: bool
    state: MqttState
    broker: str | None = None
    error: str | None = None
    published: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form of docs/api.md."""
        return {
            "enabled": self.enabled,
            "discovery": self.discovery,
            "state": self.state.value,
            "broker": self.broker,
            "error": self.error,
            "published": self.published,
            "dropped": self.dropped,
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One message waiting for the broker."""

    topic: str
    payload: str
    retain: bool


@dataclass(slots=True)
class Outbox:
    """Pending messages, one per topic (the latest wins), at most ``limit``."""

    limit: int
    dropped: int = 0
    _items: dict[str, Message] = field(default_factory=dict)

    def put(self, message: Message) -> None:
        """Queue a message, replacing an older one of the same topic."""
        if message.topic in self._items:
            self.dropped += 1
        elif len(self._items) >= self.limit:
            del self._items[next(iter(self._items))]
            self.dropped += 1
        self._items[message.topic] = message

    def take(self, count: int) -> list[Message]:
        """Remove and return up to ``count`` messages, oldest first."""
        taken: list[Message] = []
        while self._items and len(taken) < count:
            topic = next(iter(self._items))
            taken.append(self._items.pop(topic))
        return taken

    def __len__(self) -> int:
        """Return how many messages wait."""
        return len(self._items)


@dataclass(slots=True)
class _Discovered:
    """What was announced for a device, to notice changes and removals."""

    shape: tuple[Any, ...] | None  # None: announce again
    topics: tuple[str, ...]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Parts of an ECU's /api/state object that its state topic does not carry.
ECU_TOPIC_LEAVES_OUT = frozenset({"inverters", "commands"})


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _ecu_message(
    topics: Topics, settings: MqttSettings, ecu: dict[str, Any]
) -> Message:
    """Return the ECU's state message: its state without inverters and commands.

    Inverters have topics of their own, and EMA commands go out as events on the
    ECU's ``ema_command`` topic.
    """
    body = {k: v for k, v in ecu.items() if k not in ECU_TOPIC_LEAVES_OUT}
    return Message(topics.ecu_state(ecu["ecu_id"]), _dumps(body), settings.retain)


def _read_disconnect_error(client: aiomqtt.Client) -> None:
    """Mark the client's disconnect error as seen.

    aiomqtt leaves it unread when a call other than publish or message iteration
    (an unsubscribe) fails first; asyncio would then log it as never retrieved.
    """
    disconnected = getattr(client, "_disconnected", None)
    if (
        isinstance(disconnected, asyncio.Future)
        and disconnected.done()
        and not disconnected.cancelled()
    ):
        disconnected.exception()


def _is_auth_error(err: aiomqtt.MqttError) -> bool:
    code = getattr(err, "rc", None)
    if isinstance(code, ReasonCode):
        return code.value in _AUTH_CODES
    return isinstance(code, int) and code in _AUTH_CODES


class MqttPublisher:
    """Mirror the hub's state to MQTT topics and Home Assistant discovery."""

    def __init__(
        self,
        hub: Hub,
        options: Options,
        *,
        clock: Callable[[], datetime] = _utcnow,
        stale_after: timedelta = STALE_AFTER,
        min_delay: float = MIN_DELAY,
        max_delay: float = MAX_DELAY,
        min_interval: float = MIN_INTERVAL,
        outbox_limit: int = OUTBOX_LIMIT,
    ) -> None:
        """Prepare a stopped publisher; ``start`` connects."""
        self._hub = hub
        self._options = options
        self._clock = clock
        self._stale_after = stale_after
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._min_interval = min_interval
        self.status = MqttStatus(
            enabled=options.mqtt_enabled,
            discovery=options.mqtt_enabled and options.mqtt_discovery,
            state=MqttState.DISABLED,
        )
        self.settings: MqttSettings | None = None
        self.topics: Topics | None = None
        self._outbox = Outbox(outbox_limit)
        self._ecus: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._dirty_body: set[str] = set()  # only the ECU's own topic changed
        self._not_before: dict[str, float] = {}  # ECU id -> loop time of next publish
        self._deadlines: dict[str, datetime] = {}
        self._discovered: dict[str, _Discovered] = {}
        # Availability last queued per topic: sent again only when it changes.
        self._availability: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._last_problem: str | None = None
        # The service's own device: announced since the last (re)connect or birth,
        # and the state payload last queued (sent again only when it changes).
        self._service_announced = False
        self._service_body: str | None = None
        # Retained discovery topics of this service seen at connect -> state topic.
        self._retained_configs: dict[str, Any] = {}

    # --- lifecycle ---------------------------------------------------------------

    def start(self, service: BrokerService | None = None) -> None:
        """Resolve the broker (``service`` for "auto") and start publishing.

        Without a usable broker the status says why; calling again later with a
        broker starts it then.
        """
        if not self._options.mqtt_enabled or self._tasks:
            return
        try:
            settings = resolve_settings(self._options, self._hub.server_id, service)
        except OptionsError as err:
            if self.status.error != str(err):
                _LOGGER.error("MQTT output is off for now: %s", err)
            self.status.state = MqttState.NOT_CONFIGURED
            self.status.discovery = False
            self.status.error = str(err)
            return
        self.settings = settings
        self.topics = Topics(
            settings.topic_prefix, settings.discovery_prefix, self._hub.server_id
        )
        self.status.broker = settings.broker
        self.status.discovery = settings.discovery
        self.status.state = MqttState.CONNECTING
        self._tasks = [
            asyncio.create_task(self._pump(), name="mqtt-pump"),
            asyncio.create_task(self._run(), name="mqtt-client"),
        ]

    async def stop(self) -> None:
        """Say ``offline`` (when connected) and disconnect."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def connected(self) -> asyncio.Event:
        """Return an event set while connected to the broker."""
        return self._connected

    # --- hub side (never waits on the broker) ------------------------------------

    async def _pump(self) -> None:
        """Follow the hub's events; resubscribe from a snapshot after an overflow."""
        while True:
            sub = self._hub.subscribe(HUB_QUEUE)
            sub.listen(self._hub.last_seq)
            self._load_snapshot()
            try:
                await self._follow(sub)
            finally:
                sub.close()
            _LOGGER.warning("MQTT output fell behind the hub; resending the state")

    async def _follow(self, sub: Subscription) -> None:
        while True:
            item = await sub.get()
            if isinstance(item, Event):
                try:
                    self._on_event(item)
                except Exception:  # one odd event must not end MQTT output
                    _LOGGER.exception("Could not handle event %s for MQTT", item.name)
            if sub.closed:  # overflowed: the snapshot covers what was lost
                return

    def _load_snapshot(self) -> None:
        ecus: dict[str, dict[str, Any]] = self._hub.snapshot()["ecus"]
        self._ecus = dict(ecus)
        self._dirty.update(ecus)
        self._wake.set()

    def _on_event(self, event: Event) -> None:
        data = event.data
        if event.name == "record":
            ecu_id = data["ecu_id"]
            self._ecus[ecu_id] = data["ecu"]
            self._dirty.add(ecu_id)
        elif event.name == "ecu_status":
            ecu_id = data["ecu_id"]
            if (cached := self._ecus.get(ecu_id)) is None:
                return
            # Event data is shared with other listeners: copy, never mutate.
            self._ecus[ecu_id] = {**cached, "upstream": data["upstream"]}
            self._dirty_body.add(ecu_id)
        elif event.name.startswith(EMA_COMMAND_EVENT) and self.topics is not None:
            ecu_id = data.get("ecu_id")
            if not isinstance(ecu_id, str):
                return
            payload = _dumps({"event": event.name, "seq": event.seq, **data})
            self._outbox.put(Message(self.topics.ema_command(ecu_id), payload, False))
        else:
            return
        self._wake.set()

    # --- broker side -------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, publish until the connection breaks, back off, repeat."""
        attempt = 0
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError) as err:
                if self._connected.is_set():
                    attempt = 0
                self._connection_lost(err)
            except Exception as err:  # keep retrying whatever went wrong
                _LOGGER.exception("MQTT output failed")
                self._connection_lost(err)
            finally:
                self._connected.clear()
            delay = min(self._max_delay, self._min_delay * 2**attempt)
            attempt += 1
            await asyncio.sleep(delay)

    def _client(self, settings: MqttSettings, topics: Topics) -> aiomqtt.Client:
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id,
            will=aiomqtt.Will(topics.service_availability, OFFLINE, QOS, retain=True),
            tls_context=settings.tls_context(),
            keepalive=KEEPALIVE,
            timeout=PUBLISH_TIMEOUT,
        )
        # A batch in flight is normal here, not a sign of trouble worth a warning.
        client.pending_calls_threshold = BATCH + 10
        return client

    async def _session(self) -> None:
        settings, topics = self.settings, self.topics
        assert settings is not None
        assert topics is not None
        self.status.state = MqttState.CONNECTING
        async with self._client(settings, topics) as client:
            try:
                await client.publish(
                    topics.service_availability, ONLINE, QOS, retain=True
                )
                if settings.discovery:
                    await client.subscribe(topics.ha_status, QOS)
                    await self._start_sweep(client, topics)
                self._connection_made(settings)
                self._resend_all(forget_discovery=True)
                await self._serve(client, topics)
            except asyncio.CancelledError:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    await client.publish(
                        topics.service_availability,
                        OFFLINE,
                        QOS,
                        retain=True,
                        timeout=2.0,
                    )
                raise

    async def _serve(self, client: aiomqtt.Client, topics: Topics) -> None:
        """Send and listen until either fails; the listener notices a lost broker.

        Raise the failure (MqttError when the connection ends), so ``_run``
        reconnects even when there was nothing to send.
        """
        tasks = (
            asyncio.create_task(self._send(client), name="mqtt-send"),
            asyncio.create_task(self._listen(client, topics), name="mqtt-listen"),
        )
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            _read_disconnect_error(client)
        for result in results:
            if isinstance(result, Exception):
                raise result
        raise aiomqtt.MqttError("the connection to the broker ended")

    def _connection_made(self, settings: MqttSettings) -> None:
        self._connected.set()
        self.status.state = MqttState.CONNECTED
        self.status.error = None
        if self._last_problem is not None:
            _LOGGER.info("Connected to the MQTT broker %s again", settings.broker)
        else:
            _LOGGER.info("Connected to the MQTT broker %s", settings.broker)
        self._last_problem = None

    def _connection_lost(self, err: Exception) -> None:
        auth = isinstance(err, aiomqtt.MqttError) and _is_auth_error(err)
        self.status.state = MqttState.AUTH_FAILED if auth else MqttState.DISCONNECTED
        problem = str(err) or type(err).__name__
        self.status.error = problem
        broker = self.status.broker
        if problem == self._last_problem:
            _LOGGER.debug("MQTT broker %s still failing: %s", broker, problem)
            return
        self._last_problem = problem
        if auth:
            _LOGGER.error(
                "MQTT broker %s refused the username or password (%s); check "
                "mqtt_username and mqtt_password. Retrying with backoff",
                broker,
                problem,
            )
        else:
            _LOGGER.warning(
                "MQTT broker %s: %s; reconnecting with backoff", broker, problem
            )

    async def _start_sweep(self, client: aiomqtt.Client, topics: Topics) -> None:
        """Read the retained discovery configs, to withdraw those of lost devices.

        The broker sends the retained configs right after subscribing; the marker
        published afterwards comes back behind them, so its arrival means all were
        read (see ``_listen``).
        """
        self._retained_configs = {}
        await client.subscribe(topics.discovery_configs, QOS)
        await client.subscribe(topics.sync, QOS)
        await client.publish(topics.sync, "sweep", QOS)

    async def _listen(self, client: aiomqtt.Client, topics: Topics) -> None:
        """Re-announce on Home Assistant's birth; sweep retained configs once."""
        async for message in client.messages:
            payload = message.payload
            if message.topic.matches(topics.ha_status):
                if payload in (HA_ONLINE, HA_ONLINE.encode()):
                    _LOGGER.debug("Home Assistant came online; sending discovery again")
                    self._resend_all(forget_discovery=True)
            elif message.topic.matches(topics.sync):
                await client.unsubscribe(topics.discovery_configs)
                await client.unsubscribe(topics.sync)
                self._sweep(topics)
            elif message.topic.matches(topics.discovery_configs):
                self._note_retained(topics, str(message.topic), payload)

    def _note_retained(self, topics: Topics, topic: str, payload: Any) -> None:
        """Remember a retained discovery config if this service published it."""
        if not isinstance(payload, bytes) or not payload:
            return
        try:
            config = json.loads(payload)
            availability = config.get("availability") or []
            ours = {"topic": topics.service_availability} in availability
        except (ValueError, AttributeError, TypeError):
            return  # someone else's config
        if ours:
            self._retained_configs[topic] = config.get("state_topic")

    def _sweep(self, topics: Topics) -> None:
        """Withdraw retained configs (and state) of devices the state has lost."""
        devices = set(self._ecus) | set(self._owners()) | {topics.server_id}
        present = {topics.discovery(d) for d in devices}
        for topic, state_topic in self._retained_configs.items():
            if topic in present:
                continue
            _LOGGER.info("Removing %s from MQTT discovery (no longer reported)", topic)
            self._outbox.put(Message(topic, "", True))
            if isinstance(state_topic, str) and state_topic.startswith(topics.prefix):
                self._outbox.put(Message(state_topic, "", True))
                availability = state_topic.removesuffix("/state") + "/availability"
                self._outbox.put(Message(availability, "", True))
        self._retained_configs = {}
        self._wake.set()

    def _resend_all(self, *, forget_discovery: bool) -> None:
        if forget_discovery:
            for announced in self._discovered.values():
                announced.shape = None
            self._availability.clear()
            self._service_announced = False
        self._service_body = None
        self._not_before.clear()
        self._dirty.update(self._ecus)
        self._wake.set()

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            self._expire()
            self._render_service()
            if self._dirty:
                self._render_dirty()
            if self._dirty_body:
                self._render_bodies()
            batch = self._outbox.take(BATCH)
            self.status.dropped = self._outbox.dropped
            if not batch:
                await self._wait()
                continue
            results = await asyncio.gather(
                *(
                    client.publish(m.topic, m.payload, QOS, retain=m.retain)
                    for m in batch
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            self.status.published += len(batch)

    async def _wait(self) -> None:
        """Wait for new data or for the next device to turn stale."""
        self._wake.clear()
        if len(self._outbox):
            return
        timeouts = []
        if self._deadlines:
            due = min(self._deadlines.values())
            timeouts.append((due - self._clock()).total_seconds())
        if held := self._dirty | self._dirty_body:  # held back by MIN_INTERVAL
            loop_now = asyncio.get_running_loop().time()
            timeouts.append(min(self._not_before.get(e, 0.0) for e in held) - loop_now)
        timeout = max(0.0, min(timeouts)) if timeouts else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _expire(self) -> None:
        now = self._clock()
        for ecu_id, due in list(self._deadlines.items()):
            if due <= now:
                del self._deadlines[ecu_id]
                self._dirty.add(ecu_id)

    # --- rendering ---------------------------------------------------------------

    def _render_dirty(self) -> None:
        topics, settings = self.topics, self.settings
        assert topics is not None
        assert settings is not None
        loop_now = asyncio.get_running_loop().time()
        due = {e for e in self._dirty if self._not_before.get(e, 0.0) <= loop_now}
        if not due:
            return
        self._dirty -= due
        now = self._clock()
        owners = self._owners()
        self._dirty_body -= due  # the full render sends the ECU's topic too
        for ecu_id in sorted(due):
            self._not_before[ecu_id] = loop_now + self._min_interval
            if (ecu := self._ecus.get(ecu_id)) is not None:
                self._render_ecu(topics, settings, ecu, owners, now)
        if settings.discovery:
            self._remove_vanished(topics, owners)

    def _render_service(self) -> None:
        """Queue the service's discovery config and its state when it changed."""
        topics, settings = self.topics, self.settings
        assert topics is not None
        assert settings is not None
        version = self._hub.version
        if settings.discovery and not self._service_announced:
            self._service_announced = True
            config = service_config(topics, version)
            self._outbox.put(
                Message(topics.discovery(topics.server_id), _dumps(config), True)
            )
        body = _dumps(service_state(version, self._ecus))
        if body != self._service_body:
            self._service_body = body
            self._outbox.put(Message(topics.service_state, body, True))

    def _render_bodies(self) -> None:
        """Queue the ECU topics whose upload status changed (one message each)."""
        topics, settings = self.topics, self.settings
        assert topics is not None
        assert settings is not None
        loop_now = asyncio.get_running_loop().time()
        for ecu_id in list(self._dirty_body):
            if self._not_before.get(ecu_id, 0.0) > loop_now:
                continue  # held back by MIN_INTERVAL like a record
            self._dirty_body.discard(ecu_id)
            self._not_before[ecu_id] = loop_now + self._min_interval
            if (ecu := self._ecus.get(ecu_id)) is not None:
                self._outbox.put(_ecu_message(topics, settings, ecu))

    def _owners(self) -> dict[str, str]:
        """Map each inverter to the ECU that reported it last (as the integration)."""
        owners: dict[str, str] = {}
        newest: dict[str, datetime] = {}
        never = datetime.min.replace(tzinfo=UTC)
        for ecu_id in sorted(self._ecus):
            for inv_id, inverter in (self._ecus[ecu_id].get("inverters") or {}).items():
                seen = last_seen(inverter) or never
                if inv_id not in newest or seen > newest[inv_id]:
                    newest[inv_id], owners[inv_id] = seen, ecu_id
        return owners

    def _render_ecu(
        self,
        topics: Topics,
        settings: MqttSettings,
        ecu: dict[str, Any],
        owners: dict[str, str],
        now: datetime,
    ) -> None:
        ecu_id: str = ecu["ecu_id"]
        retain = settings.retain
        inverters: dict[str, dict[str, Any]] = ecu.get("inverters") or {}
        put = self._outbox.put
        version = self._hub.version
        stale_after = self._stale_after
        if settings.discovery:
            self._announce(
                topics,
                ecu_id,
                ecu_shape(ecu),
                lambda: ecu_config(topics, ecu, version, stale_after),
                (),
            )
        put(_ecu_message(topics, settings, ecu))
        deadlines = [stale_at(ecu, self._stale_after)]
        for inv_id, inverter in inverters.items():
            fresh = is_fresh(inverter, now, self._stale_after)
            state_topic = topics.inverter_state(ecu_id, inv_id)
            avail_topic = topics.inverter_availability(ecu_id, inv_id)
            if settings.discovery and owners.get(inv_id) == ecu_id:
                self._announce(
                    topics,
                    inv_id,
                    inverter_shape(ecu_id, inverter),
                    partial(
                        inverter_config, topics, ecu_id, inverter, version, stale_after
                    ),
                    (state_topic, avail_topic),
                )
            put(Message(state_topic, _dumps(inverter), retain))
            available = ONLINE if fresh else OFFLINE
            if self._availability.get(avail_topic) != available:
                self._availability[avail_topic] = available
                put(Message(avail_topic, available, True))
            deadlines.append(stale_at(inverter, self._stale_after))
        future = [d for d in deadlines if d is not None and d > now]
        if future:
            self._deadlines[ecu_id] = min(future)
        else:
            self._deadlines.pop(ecu_id, None)

    def _announce(
        self,
        topics: Topics,
        device_id: str,
        shape: tuple[Any, ...],
        config: Callable[[], dict[str, Any]],
        state_topics: tuple[str, ...],
    ) -> None:
        """Queue a device's discovery config when it is new or changed."""
        known = self._discovered.get(device_id)
        if known is not None and known.shape == shape:
            return
        self._discovered[device_id] = _Discovered(shape, state_topics)
        self._outbox.put(Message(topics.discovery(device_id), _dumps(config()), True))

    def _remove_vanished(self, topics: Topics, owners: dict[str, str]) -> None:
        """Withdraw discovery (and retained state) of devices no longer reported."""
        present = set(self._ecus) | set(owners)
        for device_id in [d for d in self._discovered if d not in present]:
            announced = self._discovered.pop(device_id)
            _LOGGER.info("Removing %s from MQTT discovery", device_id)
            self._outbox.put(Message(topics.discovery(device_id), "", True))
            for topic in announced.topics:
                self._availability.pop(topic, None)
                self._outbox.put(Message(topic, "", True))
