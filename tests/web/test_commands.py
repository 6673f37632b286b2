"""The EMA command log and the guard line in Chromium, fed through the real relay.

A stand-in EMA answers the simulated ECU's polls on the control port with published
command frames; the guard blocks one kind and lets another through, and the ECU
answers what reaches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ecu_proxy.contract.constants import GuardMode

from .harness import ECU_ID, Plant, control_frame, open_page

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

SET_ZONE = "09_fwlog_EMA_A105-set-timezone.txt"
ACK_ZONE = "10_fwlog_ECU_A100-ack-A105.txt"
SWITCH = "14_fwlog_EMA_A111-all-on.txt"
CLEAR_GFDI = "17_fwlog_EMA_A112-clear-gfdi.txt"
UNKNOWN = "28_vendordoc_EMA_A150.txt"


@pytest.fixture
def plant_options() -> dict[str, Any]:
    return {
        "ema_command_guard": GuardMode.BLOCK_LISTED,
        "blocked_actions": ("switch_inverters",),
    }


async def forward_set_zone(plant: Plant) -> dict[str, Any]:
    """Let EMA set the time zone; the ECU acknowledges it."""
    entry = await plant.command(control_frame(SET_ZONE), control_frame(ACK_ZONE))
    assert entry["outcome"] == "forwarded"
    return entry


async def block_switch(plant: Plant) -> dict[str, Any]:
    """Let EMA switch the inverters; the guard blocks it."""
    entry = await plant.command(control_frame(SWITCH))
    assert entry["outcome"] == "blocked"
    return entry


async def rows(page: Page) -> list[dict[str, str]]:
    """Return the command rows of the simulated ECU, top to bottom, cell by label."""
    result: list[dict[str, str]] = await page.eval_on_selector_all(
        f'table[data-ecu-commands="{ECU_ID}"] tbody tr',
        """rows => rows.map(r => Object.fromEntries([
            ...[...r.cells].map(c => [c.dataset.label, c.textContent]),
            ['outcome', r.dataset.outcome], ['action', r.dataset.action],
            ['exact', r.querySelector('time').title],
            ['color', getComputedStyle(r.querySelector('.outcome')).color]]))""",
    )
    return result


async def test_log_shows_forwarded_and_blocked_commands_in_words(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    await forward_set_zone(plant)
    await block_switch(plant)
    state = await plant.state()
    assert [c["action"] for c in state["ecus"][ECU_ID]["commands"]] == [
        "set_time_zone",
        "switch_inverters",
    ]
    page, console = await open_page(browser, plant.proxy.url)
    table = f'table[data-ecu-commands="{ECU_ID}"] tbody tr'
    await page.locator(table).nth(1).wait_for()
    blocked, forwarded = await rows(page)  # newest first
    assert blocked["action"] == "switch_inverters"
    assert blocked["Action"] == "Switch inverters on or off"
    assert blocked["Changes plant"] == "yes"
    assert blocked["Parameters"] == "scope all on"
    assert "blocked" in blocked["Proxy"]
    assert "no more commands" in blocked["ECU answer"]
    assert forwarded["Action"] == "Set the time zone"
    assert forwarded["Parameters"] == "time zone Etc/GMT-14"
    assert "forwarded" in forwarded["Proxy"]
    assert forwarded["ECU answer"] == "acknowledged: done"
    # Outcome by words and by colour, never colour alone.
    assert blocked["color"] != forwarded["color"]
    assert blocked["When"].endswith("ago") or blocked["When"] == "just now"
    assert blocked["exact"]
    guard = page.locator("#guard")
    assert await guard.get_attribute("data-mode") == "block_listed"
    text = await guard.inner_text()
    assert "block listed" in text
    assert "Switch inverters on or off (switch_inverters)" in text
    assert "1 blocked" in text
    # Under Ingress: a link to the app's options page in Home Assistant.
    link = page.locator("a#guard-options")
    origin = plant.proxy.url.split("/api/")[0]
    assert await link.get_attribute("href") == (
        f"{origin}/hassio/addon/apsystems_ecu_proxy/config"
    )
    await page.focus("a#guard-options")
    assert await page.evaluate("document.activeElement.id") == "guard-options"
    assert console.errors == []


async def test_a_new_command_shows_within_two_seconds_without_reload(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    await forward_set_zone(plant)
    page, console = await open_page(browser, plant.proxy.url)
    table = f'table[data-ecu-commands="{ECU_ID}"] tbody tr'
    await page.locator(table).first.wait_for()
    await page.evaluate("window.notReloaded = true")
    await block_switch(plant)
    await page.wait_for_function(
        """sel => document.querySelectorAll(sel).length === 2""",
        arg=table,
        timeout=2000,
    )
    assert await page.evaluate("window.notReloaded") is True
    newest = (await rows(page))[0]
    assert newest["outcome"] == "blocked"
    assert "1 blocked" in await page.locator("#guard").inner_text()
    # An unlisted plant-changing command passes the block_listed guard.
    await plant.command(control_frame(CLEAR_GFDI), control_frame(ACK_ZONE))
    await page.wait_for_function(
        """sel => document.querySelectorAll(sel).length === 3""",
        arg=table,
        timeout=2000,
    )
    assert (await rows(page))[0]["Action"] == "Clear ground-fault (GFDI) lock"
    # A command the decoder does not know shows as its id, with its raw text.
    entry = await plant.command(control_frame(UNKNOWN), control_frame(ACK_ZONE))
    assert entry["action"] == "unknown"
    await page.wait_for_function(
        """sel => document.querySelectorAll(sel).length === 4""",
        arg=table,
        timeout=2000,
    )
    newest = (await rows(page))[0]
    assert newest["Action"] == "A150"
    assert newest["Changes plant"] == "yes"
    assert newest["Parameters"].startswith(entry["raw_text"][:20])
    assert console.errors == []


async def test_without_ingress_the_options_are_named_not_linked(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    await block_switch(plant)
    page, console = await open_page(browser, plant.api + "/")
    guard = page.locator("#guard")
    await guard.wait_for()
    assert await page.locator("a#guard-options").count() == 0
    text = await guard.inner_text()
    assert "ema_command_guard" in text
    assert "blocked_actions" in text
    assert console.errors == []
