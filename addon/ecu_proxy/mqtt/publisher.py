"""Publish the live state to an MQTT broker, without ever holding up the relay.

The hub hands events to a subscription queue (``put_nowait``); a pump task only
hands them to the ``TopicMirror``, which keeps the newest ECU documents and marks
them dirty. A sender task has the mirror turn dirty ECUs into messages in an outbox
where the latest value per topic wins, and publishes them with QoS 1 while
connected. A slow or absent broker therefore costs the relay nothing: records
arriving meanwhile replace each other in the outbox, and every (re)connect publishes
the whole current state again. This module is the connection: connect, publish,
listen for Home Assistant's birth, back off and reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from ..options import OptionsError
from ..outbox import Event
from .availability import STALE_AFTER
from .config import resolve_settings
from .mirror import TopicMirror
from .outbox import Outbox
from .status import MqttState, MqttStatus
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


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._last_problem: str | None = None

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
        mirror = TopicMirror(
            self.topics,
            settings,
            self._hub.version,
            self._outbox,
            clock=self._clock,
            stale_after=self._stale_after,
            min_interval=self._min_interval,
        )
        self._tasks = [
            asyncio.create_task(self._pump(mirror), name="mqtt-pump"),
            asyncio.create_task(self._run(mirror), name="mqtt-client"),
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

    async def _pump(self, mirror: TopicMirror) -> None:
        """Follow the hub's events; resubscribe from a snapshot after an overflow."""
        while True:
            sub = self._hub.subscribe(HUB_QUEUE)
            sub.listen(self._hub.last_seq)
            mirror.load(self._hub.snapshot()["ecus"])
            try:
                await self._follow(sub, mirror)
            finally:
                sub.close()
            _LOGGER.warning("MQTT output fell behind the hub; resending the state")

    async def _follow(self, sub: Subscription, mirror: TopicMirror) -> None:
        while True:
            item = await sub.get()
            if isinstance(item, Event):
                try:
                    mirror.on_event(item)
                except Exception:  # one odd event must not end MQTT output
                    _LOGGER.exception("Could not handle event %s for MQTT", item.name)
            if sub.closed:  # overflowed: the snapshot covers what was lost
                return

    # --- broker side -------------------------------------------------------------

    async def _run(self, mirror: TopicMirror) -> None:
        """Connect, publish until the connection breaks, back off, repeat."""
        attempt = 0
        while True:
            try:
                await self._session(mirror)
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

    async def _session(self, mirror: TopicMirror) -> None:
        settings, topics = mirror.settings, mirror.topics
        self.status.state = MqttState.CONNECTING
        async with self._client(settings, topics) as client:
            try:
                await client.publish(
                    topics.service_availability, ONLINE, QOS, retain=True
                )
                if settings.discovery:
                    await client.subscribe(topics.ha_status, QOS)
                    await self._start_sweep(client, mirror)
                self._connection_made(settings)
                mirror.resend_all(forget_discovery=True)
                await self._serve(client, mirror)
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

    async def _serve(self, client: aiomqtt.Client, mirror: TopicMirror) -> None:
        """Send and listen until either fails; the listener notices a lost broker.

        Raise the failure (MqttError when the connection ends), so ``_run``
        reconnects even when there was nothing to send.
        """
        tasks = (
            asyncio.create_task(self._send(client, mirror), name="mqtt-send"),
            asyncio.create_task(self._listen(client, mirror), name="mqtt-listen"),
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

    async def _start_sweep(self, client: aiomqtt.Client, mirror: TopicMirror) -> None:
        """Read the retained discovery configs, to withdraw those of lost devices.

        The broker sends the retained configs right after subscribing; the marker
        published afterwards comes back behind them, so its arrival means all were
        read (see ``_listen``).
        """
        topics = mirror.topics
        mirror.start_sweep()
        await client.subscribe(topics.discovery_configs, QOS)
        await client.subscribe(topics.sync, QOS)
        await client.publish(topics.sync, "sweep", QOS)

    async def _listen(self, client: aiomqtt.Client, mirror: TopicMirror) -> None:
        """Re-announce on Home Assistant's birth; sweep retained configs once."""
        topics = mirror.topics
        async for message in client.messages:
            payload = message.payload
            if message.topic.matches(topics.ha_status):
                if payload in (HA_ONLINE, HA_ONLINE.encode()):
                    _LOGGER.debug("Home Assistant came online; sending discovery again")
                    mirror.resend_all(forget_discovery=True)
            elif message.topic.matches(topics.sync):
                await client.unsubscribe(topics.discovery_configs)
                await client.unsubscribe(topics.sync)
                mirror.sweep()
            elif message.topic.matches(topics.discovery_configs):
                mirror.note_retained(str(message.topic), payload)

    async def _send(self, client: aiomqtt.Client, mirror: TopicMirror) -> None:
        while True:
            mirror.render()
            batch = self._outbox.take(BATCH)
            self.status.dropped = self._outbox.dropped
            if not batch:
                await self._wait(mirror)
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

    async def _wait(self, mirror: TopicMirror) -> None:
        """Wait for new data or for the next device to turn stale."""
        mirror.wake.clear()
        if len(self._outbox):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(mirror.wake.wait(), mirror.next_due())
