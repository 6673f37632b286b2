"""Layout: 100 inverters without breakage on desktop and phone; the docs screenshots."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from records import channel, inverter, record

from ecu_proxy.contract.constants import GuardMode

from .harness import UI_DIR, Plant, control_frame, open_page

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

    from ecu_proxy.models import DecodedFrame

ECU = "216000064136"


@pytest.fixture
def plant_options() -> dict[str, Any]:
    """Block one action, so that the screenshots show both outcomes of the guard."""
    return {
        "ema_command_guard": GuardMode.BLOCK_LISTED,
        "blocked_actions": ("switch_inverters",),
    }


def plant_record(
    count: int, rng: random.Random, *, dead: int | None = None
) -> DecodedFrame:
    """Return a record of ``count`` inverters (QS1 and YC600), one input dead."""
    inverters = []
    for n in range(count):
        code = "08" if n % 3 == 0 else "07"
        inputs = 4 if code == "08" else 2
        channels = []
        for c in range(1, inputs + 1):
            watts = 0.0 if n == dead and c == 2 else round(rng.uniform(180, 260), 2)
            volts = 0.0 if watts == 0 else round(rng.uniform(34, 38), 1)
            amps = round(watts / volts, 1) if volts else 0.0
            channels.append(channel(c, volts, amps, watts, round(watts / 12, 3)))
        inverters.append(
            inverter(
                code,
                f"{408000100000 + n}",
                channels=tuple(channels),
                temperature_c=rng.randint(28, 45),
            )
        )
    built = record(*inverters)
    # Stamped now (this host's local time) so the clock check is green.
    return dataclasses.replace(built, timestamp=datetime.now().replace(microsecond=0))


async def layout_problems(page: Page) -> list[str]:
    """Return what sticks out of the viewport or makes the page scroll sideways."""
    problems: list[str] = await page.evaluate(
        """() => {
          const out = [];
          const root = document.documentElement;
          const width = root.clientWidth;
          if (root.scrollWidth > width) {
            out.push(`page scrolls sideways: ${root.scrollWidth} > ${width}`);
          }
          const boxes = '.card, .inv, .tile, .stat, .tabs, .top, .cmds';
          for (const n of document.querySelectorAll(boxes)) {
            const r = n.getBoundingClientRect();
            if (r.left < 0 || r.right > width + 0.5) {
              out.push(`${n.className} ${n.dataset.inverter} ${r.left}-${r.right}`);
            }
          }
          for (const n of document.querySelectorAll('.tile')) {
            if (n.scrollWidth > n.clientWidth + 1) {
              out.push(`tile text overflows: ${n.textContent}`);
            }
          }
          return out;
        }"""
    )
    return problems


async def show_everything(page: Page) -> None:
    """Make the viewport as tall as the page, then wait until it has been painted.

    Rows off screen skip rendering (content-visibility), so a full-page shot of a
    page taller than the viewport would show them blank.
    """
    size = page.viewport_size
    assert size is not None
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": size["width"], "height": height})
    await page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)])
async def test_hundred_inverters_render_without_layout_breakage(
    plant: Plant, browser: Browser, width: int, height: int
) -> None:
    await plant.send(plant_record(100, random.Random(100)))
    page, console = await open_page(
        browser, plant.proxy.url, width=width, height=height
    )
    rows = page.locator(f'[data-ecu="{ECU}"] .inv')
    await rows.nth(99).wait_for()
    assert await rows.count() == 100
    assert await page.locator(".tile").count() == sum(
        4 if n % 3 == 0 else 2 for n in range(100)
    )
    assert await layout_problems(page) == []
    assert console.errors == []


async def test_weak_input_stands_out(plant: Plant, browser: Browser) -> None:
    await plant.send(plant_record(6, random.Random(6), dead=4))
    page, console = await open_page(browser, plant.proxy.url)
    weak = page.locator(".tile.weak")
    await weak.first.wait_for()
    assert await weak.count() == 1
    row = page.locator(".inv", has=weak)
    assert await row.get_attribute("data-inverter") == "408000100004"
    assert console.errors == []


async def test_screenshots_light_dark_phone(plant: Plant, browser: Browser) -> None:
    UI_DIR.mkdir(parents=True, exist_ok=True)
    await plant.send(plant_record(6, random.Random(6), dead=4))
    await plant.command(
        control_frame("09_fwlog_EMA_A105-set-timezone.txt"),
        control_frame("10_fwlog_ECU_A100-ack-A105.txt"),
    )
    await plant.command(control_frame("14_fwlog_EMA_A111-all-on.txt"))
    shots = [
        ("plant-light.png", {"dark": False}),
        ("plant-dark.png", {"dark": True}),
        ("plant-phone.png", {"dark": False, "width": 390, "height": 844}),
    ]
    backgrounds = set()
    for name, how in shots:
        page, console = await open_page(browser, plant.proxy.url, **how)  # type: ignore[arg-type]
        await page.locator(".tile").first.wait_for()
        await page.locator(".cmds tbody tr").nth(1).wait_for()
        assert await layout_problems(page) == []
        backgrounds.add(
            await page.evaluate("getComputedStyle(document.body).backgroundColor")
        )
        await show_everything(page)
        await page.screenshot(path=UI_DIR / name, full_page=True)
        assert (UI_DIR / name).stat().st_size > 10_000
        assert console.errors == []
    assert len(backgrounds) == 2  # dark follows the browser's colour scheme

    page, console = await open_page(browser, plant.proxy.url)
    await page.click("#tab-check")
    await page.locator('[data-check="clock"][data-status="ok"]').wait_for()
    await page.screenshot(path=UI_DIR / "selfcheck.png", full_page=True)
    assert console.errors == []

    page, console = await open_page(browser, plant.proxy.url, dark=True)
    await page.click("#tab-frames")
    await page.click("#frame-list li:last-child button")
    await page.hover('tr[data-path="inverters.0.channels.0.dc_voltage_v"]')
    assert await page.locator("pre.raw span.hl").is_visible()
    await page.screenshot(path=UI_DIR / "inspector-dark.png")
    assert console.errors == []
