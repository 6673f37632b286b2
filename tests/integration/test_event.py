"""The "EMA command" event entity, the guard repair and the guard in diagnostics."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.components.event import ATTR_EVENT_TYPE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.apsystems_ema_proxy.const import DOMAIN
from custom_components.apsystems_ema_proxy.ema_commands import (
    ACTIONS,
    describe_request,
)

from .conftest import CAPTURE_ECU, wait_for_seq
from .fake_service import FakeService

ISSUE = "ema_command_guard_off"


def event_entity(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> str:
    entity_id = entity_registry.async_get_entity_id(
        "event", DOMAIN, f"{CAPTURE_ECU}_ema_command"
    )
    assert entity_id is not None
    return entity_id


async def test_event_entity_fires_with_action_and_blocked_flag(
    hass: HomeAssistant,
    service: FakeService,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Every pushed command fires the ECU's event entity."""
    entity_id = event_entity(hass, entity_registry)
    assert entity_id == "event.ecu_r_216000064136_ema_command"
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == "unknown"
    assert state.attributes["event_types"] == list(ACTIONS)

    seq = await service.ema_command(CAPTURE_ECU)
    await wait_for_seq(init_integration.runtime_data, seq)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes[ATTR_EVENT_TYPE] == "switch_inverters"
    assert state.attributes["blocked"] is True
    assert state.attributes["changes_plant"] is True
    assert state.attributes["blocked_count"] == 1
    assert state.attributes["description"] == (
        f"asked ECU-R {CAPTURE_ECU} to switch all inverters off; blocked"
    )

    seq = await service.ema_command(
        CAPTURE_ECU,
        command="A105",
        inner_command="A105",
        action="set_time_zone",
        parameters={"time_zone": "Etc/GMT-14"},
        outcome="forwarded",
        answer={
            "command": "A105",
            "action": "acknowledgement",
            "result": "done",
            "parameters": {},
        },
    )
    await wait_for_seq(init_integration.runtime_data, seq)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes[ATTR_EVENT_TYPE] == "set_time_zone"
    assert state.attributes["blocked"] is False
    assert state.attributes["answer"] == "acknowledgement: done"


async def test_unknown_action_fires_as_unknown(
    hass: HomeAssistant,
    service: FakeService,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """An action newer than this integration still fires, as "unknown"."""
    seq = await service.ema_command(CAPTURE_ECU, action="teleport", command="A199")
    await wait_for_seq(init_integration.runtime_data, seq)
    await hass.async_block_till_done()
    state = hass.states.get(event_entity(hass, entity_registry))
    assert state is not None
    assert state.attributes[ATTR_EVENT_TYPE] == "unknown"


async def test_repair_the_first_time_a_plant_change_passes_with_the_guard_off(
    hass: HomeAssistant,
    service: FakeService,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A forwarded plant change with the guard off explains the guard; reads do not."""
    issue_id = f"{ISSUE}_{init_integration.entry_id}"
    coordinator = init_integration.runtime_data
    seq = await service.ema_command(
        CAPTURE_ECU,
        command="A101",
        inner_command="A118",
        action="request_reports",
        changes_plant=False,
        parameters={},
        outcome="forwarded",
        guard="off",
    )
    await wait_for_seq(coordinator, seq)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None

    seq = await service.ema_command(CAPTURE_ECU, outcome="forwarded", guard="off")
    await wait_for_seq(coordinator, seq)
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == ISSUE
    assert issue.severity is ir.IssueSeverity.WARNING
    assert issue.translation_placeholders == {
        "ecu": f"ECU-R {CAPTURE_ECU}",
        "request": "switch all inverters off",
    }

    # Once the guard is on, the issue goes away.
    seq = await service.ema_command(CAPTURE_ECU, guard="block_changes")
    await wait_for_seq(coordinator, seq)
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None


async def test_diagnostics_show_the_guard(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    service: FakeService,
    init_integration: MockConfigEntry,
) -> None:
    """Diagnostics carry the service's guard options and counts."""
    guard = {
        "mode": "block_listed",
        "blocked_actions": ["switch_inverters"],
        "blocked_total": 2,
        "blocked_by_ecu": {CAPTURE_ECU: 2},
        "blocked_by_action": {"switch_inverters": 2},
    }
    service.state["guard"] = guard
    result = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert result["guard"] == guard


@pytest.mark.parametrize(
    ("action", "parameters", "words"),
    [
        ("switch_inverters", {"scope": "all_on"}, "switch all inverters on"),
        (
            "switch_inverters",
            {"scope": "list", "inverter_ids": ["408000111178"]},
            "switch inverters 408000111178 on or off",
        ),
        (
            "set_time_zone",
            {"time_zone": "Etc/GMT-14"},
            "set its time zone to Etc/GMT-14",
        ),
        ("set_inverter_list", {"mode": "clear"}, "clear its inverter list"),
        ("custom_command", {"text": "restart NTP"}, 'run the command "restart NTP"'),
        ("set_reporting", {"reporting": "off"}, "switch its reporting to EMA off"),
        ("set_protection", {}, "change the grid protection settings"),
        ("unknown", {}, "run a command this proxy does not know"),
    ],
)
def test_plain_words(action: str, parameters: dict[str, Any], words: str) -> None:
    """Each action reads as plain words."""
    assert describe_request(action, parameters) == words


async def test_commands_missed_while_disconnected_fire_on_reconnect(
    hass: HomeAssistant,
    service: FakeService,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command sent while Home Assistant was away still fires when it resumes."""
    coordinator = init_integration.runtime_data
    attempts: asyncio.Queue[None] = asyncio.Queue()
    connect = coordinator.client.connect

    async def counting() -> Any:
        try:
            return await connect()
        finally:
            attempts.put_nowait(None)

    monkeypatch.setattr(coordinator.client, "connect", counting)
    entity_id = event_entity(hass, entity_registry)
    await service.stop()
    seq = await service.ema_command(CAPTURE_ECU)
    await service.start()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=61))
    async with asyncio.timeout(10):
        await attempts.get()
    await wait_for_seq(coordinator, seq)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes[ATTR_EVENT_TYPE] == "switch_inverters"
    assert state.attributes["blocked"] is True
    starts = [c for c in service.commands if c["command"] == "start_listening"]
    assert starts[-1]["since"] == 0  # resumed from history, not a full state
