"""First paint of the web page and the time a 100-inverter update takes to render.

Everything is measured inside Chromium (Debian's, headless) with the Performance API:

* first paint: ``first-contentful-paint`` of the page, loaded from the service on
  loopback; baseline: the same for a one-line HTML page from a bare aiohttp server
  in this process (the floor for "a page from loopback" here).
* update: the page's own ``update`` measure, from the WebSocket event's arrival to
  the DOM updated and laid out (the render runs at the next animation frame, so the
  wait for that frame is included; painting is not). 100-inverter
  records against a baseline of 2-inverter records, same page, same run.

The service runs in-process in cloudless mode; a simulated ECU uploads the records.
Run: ``python bench/bench_ui.py [--loads 5] [--updates 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from playwright.async_api import async_playwright

from ecu_proxy.demo import upload
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter
from ecu_proxy.options import Mode, Options
from ecu_proxy.service import Service

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
START = datetime(2024, 6, 21, 8, 0, 0)
MEASURED = "() => performance.getEntriesByName('update').length > 0"


def plant_record(
    count: int, moment: datetime, rng: random.Random, ecu_id: str
) -> DecodedFrame:
    """Return a record of ``count`` YC600 inverters with random DC values."""
    inverters = []
    for n in range(count):
        channels = tuple(
            Channel(
                c,
                round(rng.uniform(30, 38), 1),
                5.0,
                round(rng.uniform(100, 250), 2),
                15.0,
            )
            for c in (1, 2)
        )
        inverters.append(
            Inverter(
                id=f"{408000200000 + n}",
                type_code="07",
                family="YC600",
                ac_voltage_v=230,
                frequency_hz=50.0,
                temperature_c=rng.randint(20, 45),
                power_w=round(sum(c.power_w for c in channels), 2),
                round_energy_wh=30.0,
                channels=channels,
            )
        )
    return DecodedFrame(
        kind=FrameKind.DATA,
        version="18",
        length=0,
        ecu_id=ecu_id,
        timestamp=moment,
        power_w=round(sum(i.power_w or 0 for i in inverters)),
        round_energy_kwh=0.0,
        lifetime_energy_kwh=1000.0,
        inverter_count=count,
        more_records=False,
        inverters=tuple(inverters),
    )


async def first_paint(
    browser: Browser, url: str, loads: int, ready: str
) -> list[float]:
    """Return first-contentful-paint (ms) of ``loads`` fresh loads of ``url``."""
    times = []
    for _ in range(loads):
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_selector(ready)
        paint = await page.evaluate(
            """() => performance.getEntriesByName('first-contentful-paint')[0]
                ?.startTime ?? null"""
        )
        assert paint is not None, "no first-contentful-paint entry"
        times.append(float(paint))
        await page.close()
    return times


async def updates(
    page: Page, service: Service, count: int, inverters: int, ecu_id: str
) -> list[float]:
    """Upload ``count`` records of ``inverters`` inverters; return update times (ms)."""
    rng = random.Random(inverters)
    port = next(iter(service.relay_ports.values()))
    moment = START
    await page.evaluate("performance.clearMeasures('update')")
    # The first record of a new ECU builds its nodes: not what an update costs.
    first = plant_record(inverters, moment, rng, ecu_id)
    await upload("127.0.0.1", port, encode_data_record(first))
    # Functions, not expressions: the page's CSP forbids eval.
    await page.wait_for_function(
        "([id, n]) => document.querySelectorAll(`[data-ecu='${id}'] .inv`).length"
        " === n",
        arg=[ecu_id, inverters],
    )
    await page.wait_for_function(MEASURED)
    times = []
    for _ in range(count):
        await page.evaluate("performance.clearMeasures('update')")
        moment += timedelta(minutes=5)
        record = plant_record(inverters, moment, rng, ecu_id)
        await upload("127.0.0.1", port, encode_data_record(record))
        await page.wait_for_function(
            """([path, v]) => document.querySelector(`[data-path="${path}"]`)
                ?.dataset.v === v""",
            arg=[f"ecus.{ecu_id}.power_w", str(record.power_w)],
        )
        await page.wait_for_function(MEASURED)
        durations = await page.evaluate(
            "performance.getEntriesByName('update').map(e => e.duration)"
        )
        times.append(float(sum(durations)))
    return times


async def _plain_page(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><p>hello</p>", content_type="text/html")


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(values):7.1f} ms   "
        f"max {max(values):7.1f} ms   (n={len(values)})"
    )


async def main(loads: int, count: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        options = Options(
            listen="127.0.0.1",
            ports=(0,),
            api_host="127.0.0.1",
            api_port=0,
            mode=Mode.CLOUDLESS,
            data_dir=Path(tmp),
        )
        service = Service(options)
        await service.start()
        plain = web.Application()
        plain.router.add_get("/", _plain_page)
        runner = web.AppRunner(plain, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        plain_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        page_url = f"http://127.0.0.1:{service.api_port}/"
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM)
                base_paint = await first_paint(browser, plain_url, loads, "p")
                page_paint = await first_paint(
                    browser, page_url, loads, '#link-state[data-state="live"]'
                )
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(page_url)
                await page.wait_for_selector('#link-state[data-state="live"]')
                small = await updates(page, service, count, 2, "216000000002")
                large = await updates(page, service, count, 100, "216000000100")
                await browser.close()
        finally:
            await runner.cleanup()
            await service.stop()
    print(summary("first paint, bare aiohttp page", base_paint))
    print(summary("first paint, the page", page_paint))
    print(summary("update, 2 inverters (baseline)", small))
    print(summary("update, 100 inverters", large))
    paint_ratio = statistics.median(page_paint) / statistics.median(base_paint)
    update_ratio = statistics.median(large) / statistics.median(small)
    print(
        f"ratios: first paint {paint_ratio:.2f}x the bare page; "
        f"100-inverter update {update_ratio:.2f}x the 2-inverter one"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--updates", type=int, default=20)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.loads, args.updates)))
