"""Fixtures for the apsystems_ema_proxy integration tests."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import PropertyMock, patch

import pytest
from aiohttp import ClientWebSocketResponse
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation

# Imported at module level so Home Assistant finds this project's custom_components
# package instead of the test harness's own.
import custom_components.apsystems_ema_proxy as integration
from custom_components.apsystems_ema_proxy.client import Client
from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.coordinator import EmaProxyCoordinator

from .fake_service import SERVER_ID, FakeService

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
# The oldest Home Assistant the add-on and hacs.json admit (tested by scripts/test in
# its own environment). Its snapshots of the same entities read differently (device
# entries with `config_entries` where the newest has `config_entry_id`, entity aliases
# as a set, state attribute keys as plain strings), so they are kept apart, in their
# own folder (docs/development.md, "Two Home Assistant versions").
OLDEST_HA = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))[
    "homeassistant"
]
# A few minutes after the capture's upload (2024-02-06T10:22:20Z).
NOW = "2024-02-06T10:25:00+00:00"
CAPTURE_ECU = "216000064136"
YC600_ID = "408000111178"
QS1_ID = "806000011223"


def load_state(name: str) -> dict[str, Any]:
    """Load a state document fixture."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration under test."""


@pytest.fixture(autouse=True)
def no_heartbeat_on_the_frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set the integration up with a client that sends no WebSocket pings.

    These tests move Home Assistant's frozen clock by minutes at once: a ping in
    flight during such a jump misses its deadline before the service can answer,
    and the connection would count as lost. The heartbeat itself is tested with
    real time in test_client.py.
    """
    monkeypatch.setattr(integration, "Client", partial(Client, heartbeat=None))


@pytest.fixture(autouse=True)
def cancel_rearmed_websocket_heartbeats(verify_cleanup: None) -> Iterator[None]:
    """Cancel the heartbeat aiohttp 3.14 re-arms on a client WebSocket it closed.

    Closing waits for the service's close frame, and receiving it schedules the
    heartbeat again after the close cancelled it (aiohttp's ``_flush_heartbeat_reset``
    does not check ``closed``). The stray ping fails silently on the closed socket;
    only that timer, on a closed WebSocket, is cancelled here, before Home
    Assistant's harness fails the test for lingering timers.
    """
    yield
    for handle in asyncio.get_event_loop()._scheduled:  # type: ignore[attr-defined]
        callback_ = handle._callback
        if (
            getattr(callback_, "__func__", None)
            is ClientWebSocketResponse._send_heartbeat
            and callback_.__self__.closed
        ):
            handle.cancel()


@pytest.fixture(autouse=True)
def no_deprecation_reports(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail any test during which Home Assistant reported a deprecated call by us."""
    yield
    reports = [
        record.getMessage()
        for record in caplog.get_records("call")
        if "Detected that custom integration" in record.getMessage()
    ]
    assert not reports, reports


@pytest.fixture(autouse=True)
def frozen_now(freezer: FrozenDateTimeFactory) -> FrozenDateTimeFactory:
    """Freeze time shortly after the capture was uploaded."""
    freezer.move_to(NOW)
    return freezer


def _oldest_ha_snapshot_dirname(cls: type, *, test_location: PyTestLocation) -> str:
    """Return snapshots-oldest-ha next to the test file."""
    return str(Path(test_location.filepath).parent / "snapshots-oldest-ha")


if HA_VERSION == OLDEST_HA:
    # The harness's extension decides the folder for every snapshot assertion it
    # makes, its own `snapshot` fixture's included; syrupy counts the snapshots in
    # every folder an assertion names, so another extension class would leave the
    # newest version's snapshots looking unused (and --snapshot-update delete them).
    HomeAssistantSnapshotExtension.dirname = classmethod(_oldest_ha_snapshot_dirname)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Serialize registry entries and states the way Home Assistant tests do."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def entity_registry_enabled_by_default() -> Iterator[None]:
    """Create entities that are disabled by default as enabled."""
    with patch.object(
        Entity,
        "entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield


@pytest.fixture
def state_name() -> str:
    """Name of the state fixture the service starts with."""
    return "state_capture"


@pytest.fixture
def service_token() -> str | None:
    """API token the service requires (None: no auth)."""
    return None


@pytest.fixture
async def service(
    hass: HomeAssistant,
    socket_enabled: None,
    state_name: str,
    service_token: str | None,
) -> AsyncIterator[FakeService]:
    """Run a fake service on 127.0.0.1; unload the integration before stopping it."""
    fake = FakeService(load_state(state_name), token=service_token)
    await fake.start()
    yield fake
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.state is ConfigEntryState.LOADED:
            await hass.config_entries.async_unload(entry.entry_id)
    await fake.stop()


@pytest.fixture
def mock_config_entry(
    service: FakeService, service_token: str | None
) -> MockConfigEntry:
    """A config entry pointing at the fake service."""
    return MockConfigEntry(
        domain=DOMAIN,
        # Fixed, so unique ids of the service's own entities are stable in snapshots.
        entry_id="01JENTRYFORTHEFAKESERVICE0",
        title="APsystems ECU Proxy",
        unique_id=SERVER_ID,
        data={CONF_URL: service.url, CONF_TOKEN: service_token},
    )


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> MockConfigEntry:
    """Set up the integration against the fake service."""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    return mock_config_entry


def entry_state(entry: ConfigEntry) -> ConfigEntryState:
    """Return an entry's state (a call, so type checkers do not narrow it)."""
    return entry.state


async def wait_for_seq(coordinator: EmaProxyCoordinator, seq: int) -> None:
    """Wait (at most 10 s) until the coordinator applied event ``seq``."""
    if coordinator.last_seq is not None and coordinator.last_seq >= seq:
        return
    reached = asyncio.Event()

    @callback
    def on_update() -> None:
        if coordinator.last_seq is not None and coordinator.last_seq >= seq:
            reached.set()

    unsub = coordinator.async_add_listener(on_update)
    try:
        async with asyncio.timeout(10):
            await reached.wait()
    finally:
        unsub()


@pytest.fixture
def wait_for_state(
    hass: HomeAssistant,
) -> Callable[[str, Callable[[str | None], bool]], Any]:
    """Return a helper that waits until an entity's state satisfies a predicate."""

    async def wait(entity_id: str, predicate: Callable[[str | None], bool]) -> None:
        def current() -> str | None:
            state = hass.states.get(entity_id)
            return state.state if state else None

        if predicate(current()):
            return
        changed = asyncio.Event()

        @callback
        def on_change(event: Event[EventStateChangedData]) -> None:
            if predicate(current()):
                changed.set()

        unsub = async_track_state_change_event(hass, [entity_id], on_change)
        try:
            async with asyncio.timeout(10):
                await changed.wait()
        finally:
            unsub()

    return wait
