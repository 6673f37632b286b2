"""The setup self-check as the page shows it, for each state of the setup."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .harness import Plant, open_page

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.async_api import Browser, Page


async def open_checks(page: Page) -> None:
    await page.click("#tab-check")
    await page.wait_for_selector('[data-check="ports"]')


async def test_no_ecu_yet(plant: Plant, browser: Browser) -> None:
    page, console = await open_page(browser, plant.proxy.url)
    await open_checks(page)
    ports = page.locator('[data-check="ports"]')
    assert await ports.get_attribute("data-status") == "ok"
    port = next(iter(plant.service.relay_ports.values()))
    assert str(port) in await ports.inner_text()
    ecus = page.locator('[data-check="ecus"]')
    assert await ecus.get_attribute("data-status") == "waiting"
    text = await ecus.inner_text()
    assert "no ECU has connected yet" in text
    assert "To fix:" in text
    guide = ecus.locator("a")
    assert (await guide.get_attribute("href") or "").endswith(
        "DOCS.md#point-the-ecu-at-home-assistant-dns-rewrite"
    )
    # The stub resolver answers with this host: a green tick.
    assert await page.get_attribute('[data-check="dns"]', "data-status") == "ok"
    assert await page.get_attribute('[data-check="ema"]', "data-status") == "waiting"
    assert console.errors == []


async def test_ecu_seen_with_address_port_ema_and_clock(
    plant: Plant, browser: Browser
) -> None:
    page, console = await open_page(browser, plant.proxy.url)
    await open_checks(page)
    await plant.send(plant.next_record())
    # The page refreshes the self-check after activity, without a reload.
    ecus = page.locator('[data-check="ecus"][data-status="ok"]')
    await ecus.wait_for()
    port = next(iter(plant.service.relay_ports.values()))
    rows = await ecus.locator("tbody tr td").all_inner_texts()
    assert rows[:3] == ["216000064136", "127.0.0.1", str(port)]
    ema = page.locator('[data-check="ema"]')
    assert await ema.get_attribute("data-status") == "ok"
    assert "127.0.0.2" in await ema.inner_text()
    # The simulated record carries a fixed date in 2024: the ECU clock is far off.
    clock = page.locator('[data-check="clock"]')
    assert await clock.get_attribute("data-status") == "warning"
    assert "216000064136" in await clock.inner_text()
    assert console.errors == []


async def test_dns_pointing_elsewhere(
    plant: Plant, browser: Browser, hosts_file: Path
) -> None:
    await asyncio.to_thread(hosts_file.write_text, "192.0.2.44 ecu.apsystemsema.com\n")
    page, console = await open_page(browser, plant.proxy.url)
    await open_checks(page)
    dns = page.locator('[data-check="dns"]')
    assert await dns.get_attribute("data-status") == "error"
    text = await dns.inner_text()
    assert "192.0.2.44" in text
    assert "not this host" in text
    assert "Change the DNS rewrite of ecu.apsystemsema.com" in text
    assert console.errors == []


async def test_dns_still_public(
    plant: Plant, browser: Browser, hosts_file: Path
) -> None:
    await asyncio.to_thread(hosts_file.write_text, "8.8.4.4 ecu.apsystemsema.com\n")
    page, console = await open_page(browser, plant.proxy.url)
    await open_checks(page)
    dns = page.locator('[data-check="dns"]')
    assert await dns.get_attribute("data-status") == "error"
    assert "rewrite is not in place" in await dns.inner_text()
    assert console.errors == []
