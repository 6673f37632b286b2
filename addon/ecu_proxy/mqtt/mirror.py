"""What the MQTT topics should hold: the hub's state turned into queued messages.

The mirror keeps the newest state document of every ECU and marks changed ECUs
dirty; ``render`` turns them into messages in the outbox (state, availability and,
with discovery on, each device's config once per shape). An ECU is published at most
once per ``min_interval``, and a device turning stale is published again when its
freshness ends. It never talks to the broker: the publisher takes its messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from .availability import is_fresh, last_seen, stale_at
from .discovery import (
    ecu_config,
    ecu_shape,
    inverter_config,
    inverter_shape,
    service_config,
)
from .outbox import Message, Outbox, dumps
from .service_state import service_state
from .topics import OFFLINE, ONLINE

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta

    from ..hub import Event
    from .config import MqttSettings
    from .topics import Topics

_LOGGER = logging.getLogger(__name__)

EMA_COMMAND_EVENT = "ema_command"
# Parts of an ECU's /api/state object that its state topic does not carry.
ECU_TOPIC_LEAVES_OUT = frozenset({"inverters", "commands"})


@dataclass(slots=True)
class _Discovered:
    """What was announced for a device, to notice changes and removals."""

    shape: tuple[Any, ...] | None  # None: announce again
    topics: tuple[str, ...]


def _ecu_message(
    topics: Topics, settings: MqttSettings, ecu: dict[str, Any]
) -> Message:
    """Return the ECU's state message: its state without inverters and commands.

    Inverters have topics of their own, and EMA commands go out as events on the
    ECU's ``ema_command`` topic.
    """
    body = {k: v for k, v in ecu.items() if k not in ECU_TOPIC_LEAVES_OUT}
    return Message(topics.ecu_state(ecu["ecu_id"]), dumps(body), settings.retain)


class TopicMirror:
    """The topics' intended content, and the messages that bring them there."""

    def __init__(
        self,
        topics: Topics,
        settings: MqttSettings,
        version: str,
        outbox: Outbox,
        *,
        clock: Callable[[], datetime],
        stale_after: timedelta,
        min_interval: float,
    ) -> None:
        self.topics = topics
        self.settings = settings
        self.outbox = outbox
        # Set when there is something new to render or send.
        self.wake = asyncio.Event()
        self._version = version
        self._clock = clock
        self._stale_after = stale_after
        self._min_interval = min_interval
        self._ecus: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._dirty_body: set[str] = set()  # only the ECU's own topic changed
        self._not_before: dict[str, float] = {}  # ECU id -> loop time of next publish
        self._deadlines: dict[str, datetime] = {}
        self._discovered: dict[str, _Discovered] = {}
        # Availability last queued per topic: sent again only when it changes.
        self._availability: dict[str, str] = {}
        # The service's own device: announced since the last (re)connect or birth,
        # and the state payload last queued (sent again only when it changes).
        self._service_announced = False
        self._service_body: str | None = None
        # Retained discovery topics of this service seen at connect -> state topic.
        self._retained_configs: dict[str, Any] = {}

    # --- from the hub --------------------------------------------------------------

    def load(self, ecus: dict[str, dict[str, Any]]) -> None:
        """Take a snapshot of every ECU's state; all of them are rendered again."""
        self._ecus = dict(ecus)
        self._dirty.update(ecus)
        self.wake.set()

    def on_event(self, event: Event) -> None:
        """Take a hub event: a record, an upload status or an EMA command."""
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
        elif event.name.startswith(EMA_COMMAND_EVENT):
            ecu_id = data.get("ecu_id")
            if not isinstance(ecu_id, str):
                return
            payload = dumps({"event": event.name, "seq": event.seq, **data})
            self.outbox.put(Message(self.topics.ema_command(ecu_id), payload, False))
        else:
            return
        self.wake.set()

    # --- from the broker -----------------------------------------------------------

    def resend_all(self, *, forget_discovery: bool) -> None:
        """Render everything again; with ``forget_discovery`` announce it again."""
        if forget_discovery:
            for announced in self._discovered.values():
                announced.shape = None
            self._availability.clear()
            self._service_announced = False
        self._service_body = None
        self._not_before.clear()
        self._dirty.update(self._ecus)
        self.wake.set()

    def start_sweep(self) -> None:
        """Forget the retained configs seen so far; the broker sends them again."""
        self._retained_configs = {}

    def note_retained(self, topic: str, payload: Any) -> None:
        """Remember a retained discovery config if this service published it."""
        if not isinstance(payload, bytes) or not payload:
            return
        try:
            config = json.loads(payload)
            availability = config.get("availability") or []
            ours = {"topic": self.topics.service_availability} in availability
        except (ValueError, AttributeError, TypeError):
            return  # someone else's config
        if ours:
            self._retained_configs[topic] = config.get("state_topic")

    def sweep(self) -> None:
        """Withdraw retained configs (and state) of devices the state has lost."""
        topics = self.topics
        devices = set(self._ecus) | set(self._owners()) | {topics.server_id}
        present = {topics.discovery(d) for d in devices}
        for topic, state_topic in self._retained_configs.items():
            if topic in present:
                continue
            _LOGGER.info("Removing %s from MQTT discovery (no longer reported)", topic)
            self.outbox.put(Message(topic, "", True))
            if isinstance(state_topic, str) and state_topic.startswith(topics.prefix):
                self.outbox.put(Message(state_topic, "", True))
                availability = state_topic.removesuffix("/state") + "/availability"
                self.outbox.put(Message(availability, "", True))
        self._retained_configs = {}
        self.wake.set()

    # --- rendering -----------------------------------------------------------------

    def render(self) -> None:
        """Queue the messages of everything due: stale devices, changes, the service."""
        self._expire()
        self._render_service()
        if self._dirty:
            self._render_dirty()
        if self._dirty_body:
            self._render_bodies()

    def next_due(self) -> float | None:
        """Return seconds until the next device turns stale or is due, or None."""
        timeouts = []
        if self._deadlines:
            due = min(self._deadlines.values())
            timeouts.append((due - self._clock()).total_seconds())
        if held := self._dirty | self._dirty_body:  # held back by min_interval
            loop_now = asyncio.get_running_loop().time()
            timeouts.append(min(self._not_before.get(e, 0.0) for e in held) - loop_now)
        return max(0.0, min(timeouts)) if timeouts else None

    def _expire(self) -> None:
        now = self._clock()
        for ecu_id, due in list(self._deadlines.items()):
            if due <= now:
                del self._deadlines[ecu_id]
                self._dirty.add(ecu_id)

    def _render_dirty(self) -> None:
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
                self._render_ecu(ecu, owners, now)
        if self.settings.discovery:
            self._remove_vanished(owners)

    def _render_service(self) -> None:
        """Queue the service's discovery config and its state when it changed."""
        topics = self.topics
        if self.settings.discovery and not self._service_announced:
            self._service_announced = True
            config = service_config(topics, self._version)
            self.outbox.put(
                Message(topics.discovery(topics.server_id), dumps(config), True)
            )
        body = dumps(service_state(self._version, self._ecus))
        if body != self._service_body:
            self._service_body = body
            self.outbox.put(Message(topics.service_state, body, True))

    def _render_bodies(self) -> None:
        """Queue the ECU topics whose upload status changed (one message each)."""
        loop_now = asyncio.get_running_loop().time()
        for ecu_id in list(self._dirty_body):
            if self._not_before.get(ecu_id, 0.0) > loop_now:
                continue  # held back by min_interval like a record
            self._dirty_body.discard(ecu_id)
            self._not_before[ecu_id] = loop_now + self._min_interval
            if (ecu := self._ecus.get(ecu_id)) is not None:
                self.outbox.put(_ecu_message(self.topics, self.settings, ecu))

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
        self, ecu: dict[str, Any], owners: dict[str, str], now: datetime
    ) -> None:
        topics, settings = self.topics, self.settings
        ecu_id: str = ecu["ecu_id"]
        retain = settings.retain
        inverters: dict[str, dict[str, Any]] = ecu.get("inverters") or {}
        put = self.outbox.put
        version = self._version
        stale_after = self._stale_after
        if settings.discovery:
            self._announce(
                ecu_id,
                ecu_shape(ecu),
                lambda: ecu_config(topics, ecu, version, stale_after),
                (),
            )
        put(_ecu_message(topics, settings, ecu))
        deadlines = [stale_at(ecu, stale_after)]
        for inv_id, inverter in inverters.items():
            fresh = is_fresh(inverter, now, stale_after)
            state_topic = topics.inverter_state(ecu_id, inv_id)
            avail_topic = topics.inverter_availability(ecu_id, inv_id)
            if settings.discovery and owners.get(inv_id) == ecu_id:
                self._announce(
                    inv_id,
                    inverter_shape(ecu_id, inverter),
                    partial(
                        inverter_config, topics, ecu_id, inverter, version, stale_after
                    ),
                    (state_topic, avail_topic),
                )
            put(Message(state_topic, dumps(inverter), retain))
            available = ONLINE if fresh else OFFLINE
            if self._availability.get(avail_topic) != available:
                self._availability[avail_topic] = available
                put(Message(avail_topic, available, True))
            deadlines.append(stale_at(inverter, stale_after))
        future = [d for d in deadlines if d is not None and d > now]
        if future:
            self._deadlines[ecu_id] = min(future)
        else:
            self._deadlines.pop(ecu_id, None)

    def _announce(
        self,
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
        self.outbox.put(
            Message(self.topics.discovery(device_id), dumps(config()), True)
        )

    def _remove_vanished(self, owners: dict[str, str]) -> None:
        """Withdraw discovery (and retained state) of devices no longer reported."""
        present = set(self._ecus) | set(owners)
        for device_id in [d for d in self._discovered if d not in present]:
            announced = self._discovered.pop(device_id)
            _LOGGER.info("Removing %s from MQTT discovery", device_id)
            self.outbox.put(Message(self.topics.discovery(device_id), "", True))
            for topic in announced.topics:
                self._availability.pop(topic, None)
                self.outbox.put(Message(topic, "", True))
