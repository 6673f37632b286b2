"""The live plant view in Chromium, served under an ingress-style prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .harness import PREFIX, Plant, open_page, value_at

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ECU = "216000064136"


async def shown_numbers(page: Page) -> list[dict[str, Any]]:
    """Return every number element of the plant view: path, value, digits, text."""
    result: list[dict[str, Any]] = await page.eval_on_selector_all(
        "#ecus [data-path]",
        """nodes => nodes.map(n => ({path: n.dataset.path, v: n.dataset.v,
            d: Number(n.dataset.d), text: n.textContent}))""",
    )
    return result


async def wait_for_value(
    page: Page, path: str, value: float, within_ms: float = 10_000
) -> None:
    """Wait until the element showing ``path`` holds ``value``."""
    # A function, not an expression: the page's CSP forbids eval.
    await page.wait_for_function(
        """([path, value]) => document.querySelector(`[data-path="${path}"]`)
            ?.dataset.v === value""",
        arg=[path, str(value)],
        timeout=within_ms,
    )


def assert_matches_state(numbers: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """Every number shown is the state's value, printed at the shown precision."""
    assert numbers
    for item in numbers:
        expected = value_at(state, item["path"])
        if expected is None:
            assert item["v"] == "null", item
            assert item["text"] == "\u2013", item
            continue
        assert float(item["v"]) == expected, item
        shown = float(item["text"].split()[0])
        assert abs(shown - expected) <= 0.5 * 10 ** -item["d"] + 1e-9, item


async def test_page_loads_under_the_ingress_prefix_with_relative_urls(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    page, console = await open_page(browser, plant.proxy.url)
    base = await page.evaluate("document.baseURI")
    assert base == plant.proxy.url
    # Every asset the page loaded came through the prefix.
    urls = await page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert urls
    assert all(PREFIX + "/" in url for url in urls), urls
    assert await page.title() == "APsystems ECU Proxy"
    assert console.errors == []


async def test_every_number_equals_the_state(plant: Plant, browser: Browser) -> None:
    await plant.send(plant.next_record())
    await plant.send(plant.next_record())
    state = await plant.state()
    ecu = state["ecus"][ECU]
    page, console = await open_page(browser, plant.proxy.url)
    await page.wait_for_selector(f'[data-path="ecus.{ECU}.power_w"][data-v]')
    numbers = await shown_numbers(page)
    assert_matches_state(numbers, state)
    # ECU: power, today, lifetime, round-trip; inverter: 5 values; DC input: 3.
    inverters = ecu["inverters"].values()
    channels = sum(len(i["channels"]) for i in inverters)
    assert len(numbers) == 4 + 5 * len(ecu["inverters"]) + 3 * channels
    assert ecu["upstream"]["rtt_ms"] is not None
    card = page.locator(f'[data-ecu="{ECU}"]')
    assert "ok" in await card.inner_text()
    assert "2 of 2 inverters online" in await card.inner_text()
    assert console.errors == []


async def test_a_new_record_shows_within_two_seconds_without_reload(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    page, console = await open_page(browser, plant.proxy.url)
    await page.evaluate("window.notReloaded = true")
    record = plant.next_record()
    await plant.send(record)
    state = await plant.state()
    power = state["ecus"][ECU]["power_w"]
    assert power == record.power_w
    await wait_for_value(page, f"ecus.{ECU}.power_w", power, within_ms=2000)
    assert await page.evaluate("window.notReloaded") is True
    assert_matches_state(await shown_numbers(page), state)
    assert console.errors == []


async def test_lost_service_banner_appears_and_clears_and_resumes(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    page, console = await open_page(browser, plant.proxy.url)
    banner = page.locator("#banner")
    assert await banner.is_hidden()
    seq_before = await page.evaluate("window.ecuProxy.conn.lastSeq")

    await plant.proxy.down()
    await banner.wait_for(state="visible")
    assert "Lost the connection" in await banner.inner_text()
    # A record arrives while the page is cut off; the reconnect must fetch it.
    await plant.send(plant.next_record())
    plant.proxy.restore()

    await banner.wait_for(state="hidden")
    state = await plant.state()
    power = state["ecus"][ECU]["power_w"]
    await wait_for_value(page, f"ecus.{ECU}.power_w", power)
    assert await page.evaluate("window.ecuProxy.conn.lastSeq") > seq_before
    assert_matches_state(await shown_numbers(page), state)
    assert console.errors == []


async def test_empty_plant_explains_what_to_do(plant: Plant, browser: Browser) -> None:
    page, console = await open_page(browser, plant.proxy.url)
    assert await page.locator("#plant-empty").is_visible()
    assert await page.locator("#ecus [data-ecu]").count() == 0
    # The EMA command section shows the guard and says that nothing came yet.
    commands = page.locator("#commands")
    await commands.wait_for()
    assert await page.get_attribute("#guard", "data-mode") == "off"
    assert "off: every command is forwarded" in await commands.inner_text()
    assert "No commands from EMA yet" in await commands.inner_text()
    assert console.errors == []


async def test_keyboard_and_labels(plant: Plant, browser: Browser) -> None:
    page, console = await open_page(browser, plant.proxy.url)
    await page.focus("#tab-plant")
    await page.keyboard.press("ArrowRight")
    assert await page.locator("#check").is_visible()
    assert await page.evaluate("document.activeElement.id") == "tab-check"
    await page.keyboard.press("ArrowRight")
    assert await page.locator("#frames").is_visible()
    assert await page.get_attribute("#tab-frames", "aria-selected") == "true"
    # Every control has an accessible name (label, text or aria-label).
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('button, select, input')]
            .filter(n => !(n.labels?.length || n.textContent.trim()
                           || n.getAttribute('aria-label')))
            .map(n => n.outerHTML)"""
    )
    assert unnamed == []
    assert console.errors == []
