"""The frame inspector: fields next to the raw text, highlighting, filters, download."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from .harness import Plant, open_page

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.async_api import Browser, Page

ECU = "216000064136"
TOKEN = "s3cret-token-for-the-page"


async def read_text(path: Path) -> str:
    return await asyncio.to_thread(path.read_text, encoding="utf-8")


async def open_frames(page: Page) -> None:
    await page.click("#tab-frames")
    await page.wait_for_selector("#frame-list li")


async def first_data_frame(plant: Plant) -> dict[str, Any]:
    async with plant.http.get(
        f"{plant.api}/api/frames", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        frames: list[dict[str, Any]] = (await response.json())["frames"]
    return next(f for f in frames if f["decoded"]["kind"] == "data")


@pytest.fixture
def plant_options() -> dict[str, Any]:
    return {"api_token": TOKEN}


async def test_fields_highlight_in_the_raw_text(plant: Plant, browser: Browser) -> None:
    await plant.send(plant.next_record())
    frame = await first_data_frame(plant)
    page, console = await open_page(
        browser, plant.proxy.url, credentials={"username": "me", "password": TOKEN}
    )
    await open_frames(page)
    await page.click(f'#frame-list button[data-seq="{frame["seq"]}"]')
    raw = page.locator("#frame-detail pre.raw").first
    assert await raw.inner_text() == frame["raw"]

    await page.hover('tr[data-path="ecu_id"]')
    assert await page.inner_text("pre.raw span.hl") == ECU
    assert await page.get_attribute('tr[data-path="ecu_id"]', "class") == "hl"

    path = "inverters.1.channels.0.dc_voltage_v"
    await page.hover(f'tr[data-path="{path}"]')
    digits = await page.inner_text("pre.raw span.hl")
    channel = frame["decoded"]["inverters"][1]["channels"][0]
    assert int(digits) / 10 == channel["dc_voltage_v"]
    span = await page.get_attribute(f'tr[data-path="{path}"]', "data-span")
    start, end = map(int, (span or "").split("-"))
    assert frame["raw"][start:end] == digits

    # The keyboard reaches the same highlight (the mouse out of the way).
    await page.mouse.move(0, 0)
    await page.focus('tr[data-path="power_w"]')
    power = await page.inner_text("pre.raw span.hl")
    assert int(power) == frame["decoded"]["power_w"]
    await page.focus("#frames-reload")
    assert await page.locator("pre.raw span.hl").count() == 0
    assert console.errors == []


async def test_filter_and_download_for_a_bug_report(
    plant: Plant, browser: Browser
) -> None:
    await plant.send(plant.next_record())
    await plant.send(plant.next_record())
    page, console = await open_page(
        browser, plant.proxy.url, credentials={"username": "me", "password": TOKEN}
    )
    await open_frames(page)
    every = await page.locator("#frame-list li").count()
    assert every == 4  # two records and EMA's two replies
    await page.select_option("#f-kind", "data")
    assert await page.locator("#frame-list li").count() == 2
    await page.select_option("#f-ecu", ECU)
    assert await page.locator("#frame-list li").count() == 2
    # Tick one frame: only that one goes into the file.
    await page.locator("#frame-list li input").first.check()
    async with page.expect_download() as info:
        await page.click("#frames-download")
    download = await info.value
    assert download.suggested_filename.startswith("ecu-proxy-frames-")
    text = await read_text(await download.path())
    frames = [line for line in text.splitlines() if line.startswith("APS18")]
    assert len(frames) == 1
    assert ECU in frames[0]
    assert TOKEN not in text
    assert "data" in text
    # Nothing ticked: every shown frame.
    await page.locator("#frame-list li input").first.uncheck()
    async with page.expect_download() as info:
        await page.click("#frames-download")
    text = await read_text(await (await info.value).path())
    assert len([line for line in text.splitlines() if line.startswith("APS18")]) == 2
    assert console.errors == []
