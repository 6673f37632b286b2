"""Helpers for the browser tests: the real service fed by a simulated ECU.

The service runs in-process in forward mode on loopback with a stand-in EMA. An
ingress-style proxy in front of it plays Home Assistant's Supervisor: it serves the
service under /api/hassio_ingress/<token>/ with the X-Ingress-Path header, bridges
the WebSocket, and can be taken down and brought back to cut the page off.
Chromium is Debian's (Playwright's own browser download is not used).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from playwright.async_api import Browser, Page, async_playwright
from stand_ins import (
    ACK,
    ECU_HOST,
    EMA_HOST,
    EmaConnection,
    FakeEcu,
    StandInEma,
    free_port_pair,
)

from ecu_proxy.cloudless import encode_no_more_commands
from ecu_proxy.demo import capture_record, daylight, simulated_record, upload
from ecu_proxy.encoder import encode_control_poll, encode_data_record
from ecu_proxy.hub import Event
from ecu_proxy.lan_dns import HOSTS_ENV
from ecu_proxy.options import Options
from ecu_proxy.service import Service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ecu_proxy.models import DecodedFrame

CHROMIUM = "/usr/bin/chromium"
PREFIX = "/api/hassio_ingress/Zq3ingressTOKEN"
UI_DIR = Path(__file__).resolve().parents[2] / "docs" / "ui"
NOON = datetime(2024, 6, 21, 12, 0, 0)
ECU_ID = "216000064136"  # the simulated ECU (the captured record's)
CONTROL = Path(__file__).resolve().parents[1] / "fixtures" / "vectors" / "control"
# ECU ids in the published control frames, replaced by the simulated ECU's.
_FRAME_ECU_IDS = (b"213000000017", b"123456789013")
_HOP_HEADERS = {"host", "connection", "upgrade", "transfer-encoding", "keep-alive"}


class IngressProxy:
    """A stand-in for the Supervisor's ingress proxy in front of the service."""

    def __init__(self, target_port: int) -> None:
        self.target = f"http://127.0.0.1:{target_port}"
        self.up = True
        self.port = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """Return the page's address through the proxy."""
        return f"http://127.0.0.1:{self.port}{PREFIX}/"

    async def start(self) -> None:
        """Listen on an ephemeral loopback port."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", PREFIX + "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close everything."""
        await self.down()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def down(self) -> None:
        """Cut every WebSocket and refuse new ones: the page loses the service."""
        self.up = False
        for ws in list(self._sockets):
            await ws.close(code=1012, message=b"restarting")

    def restore(self) -> None:
        """Let connections through again."""
        self.up = True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        tail = request.match_info["tail"]
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS
        }
        headers["X-Ingress-Path"] = PREFIX
        url = f"{self.target}/{tail}"
        if request.query_string:
            url += "?" + request.query_string
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._bridge(request, url, headers)
        if not self.up:
            return web.Response(status=502, text="service down")
        async with self._session.request(
            request.method, url, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            out = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in _HOP_HEADERS | {"content-length"}
            }
            return web.Response(status=upstream.status, body=body, headers=out)

    async def _bridge(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.WebSocketResponse:
        assert self._session is not None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if not self.up:
            await ws.close(code=1012, message=b"restarting")
            return ws
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("sec-")}
        self._sockets.add(ws)
        try:
            async with self._session.ws_connect(url, headers=headers) as upstream:

                async def to_client() -> None:
                    async for msg in upstream:
                        if msg.type is WSMsgType.TEXT:
                            await ws.send_str(msg.data)
                    await ws.close()

                forward = asyncio.create_task(to_client())
                async for msg in ws:
                    if msg.type is WSMsgType.TEXT:
                        await upstream.send_str(msg.data)
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward
        finally:
            self._sockets.discard(ws)
        return ws


def control_frame(name: str) -> bytes:
    """Return a published control frame, addressed to the simulated ECU."""
    raw = (CONTROL / name).read_bytes()
    for other in _FRAME_ECU_IDS:
        raw = raw.replace(other, ECU_ID.encode())
    return raw


class CommandingEma:
    """Stand in for EMA: acknowledge uploads, answer polls with queued commands."""

    def __init__(self) -> None:
        self.commands: deque[bytes] = deque()

    async def __call__(self, conn: EmaConnection) -> None:
        """Serve one connection until the relay closes it."""
        while True:
            try:
                frame = await conn.read_frame(within=3600)
            except EOFError:
                return
            if not frame.startswith(b"APS13"):
                await conn.send(ACK)  # a data upload
            elif frame[10:14] == b"A101" and frame[30:34] == b"A101":
                ecu_id = frame[18:30].decode()
                queued = self.commands.popleft() if self.commands else None
                await conn.send(queued or encode_no_more_commands(ecu_id))
            # Anything else on the control port is the ECU's answer: nothing to say.


@dataclasses.dataclass
class Plant:
    """The running service, its EMA stand-in, the proxy and the simulated ECU."""

    service: Service
    ema: StandInEma
    script: CommandingEma
    proxy: IngressProxy
    http: aiohttp.ClientSession
    moment: datetime = NOON
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(7))
    lifetime: float = 2127.9

    @property
    def api(self) -> str:
        """Return the service's own address (no proxy)."""
        return f"http://127.0.0.1:{self.service.api_port}"

    def next_record(self, base: DecodedFrame | None = None) -> DecodedFrame:
        """Return the simulated ECU's next record (five minutes after the last)."""
        self.moment += timedelta(minutes=5)
        record = simulated_record(
            base or capture_record(),
            self.moment,
            daylight(self.moment),
            timedelta(minutes=5),
            self.lifetime,
            self.rng,
        )
        self.lifetime += sum(i.round_energy_wh or 0 for i in record.inverters) / 1000
        return record

    async def send(self, record: DecodedFrame) -> None:
        """Upload a record the way an ECU does and wait until the state has it."""
        hub = self.service.hub
        sub = hub.subscribe(1024)  # a new ECU brings one event per inverter
        sub.listen(hub.last_seq)
        try:
            port = next(iter(self.service.relay_ports.values()))
            await upload(ECU_HOST, port, encode_data_record(record))
            async with asyncio.timeout(10):
                while True:
                    item = await sub.get()
                    if isinstance(item, Event) and item.name == "ecu_status":
                        return
        finally:
            sub.close()

    async def command(
        self, frame: bytes, answer: bytes | None = None
    ) -> dict[str, Any]:
        """Have EMA answer the next poll with ``frame``; return the published entry.

        With ``answer`` the ECU expects the command to reach it and answers it; without,
        it expects the guard to block it (it gets "no more commands" instead).
        """
        hub = self.service.hub
        sub = hub.subscribe(64)
        sub.listen(hub.last_seq)
        self.script.commands.append(frame)
        port = next(iter(self.service.relay_ports.values()))
        ecu = await FakeEcu.connect(port)
        try:
            await ecu.send(encode_control_poll(ECU_ID))
            if answer is None:
                assert await ecu.read_to_eof() == encode_no_more_commands(ECU_ID)
            else:
                assert await ecu.read_exactly(len(frame)) == frame
                await ecu.send(answer)
            async with asyncio.timeout(10):
                while True:
                    item = await sub.get()
                    if isinstance(item, Event) and item.name == "ema_command":
                        return dict(item.data)
        finally:
            sub.close()
            await ecu.close()

    async def state(self) -> dict[str, Any]:
        """Return /api/state."""
        headers = {}
        if self.service.options.api_token:
            headers["Authorization"] = f"Bearer {self.service.options.api_token}"
        async with self.http.get(f"{self.api}/api/state", headers=headers) as r:
            result: dict[str, Any] = await r.json()
            return result


@pytest.fixture
def hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Answer the self-check's DNS look-up from a file: this host by default."""
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 ecu.apsystemsema.com\n", encoding="utf-8")
    monkeypatch.setenv(HOSTS_ENV, str(path))
    return path


@pytest.fixture
def plant_options(tmp_path: Path) -> dict[str, Any]:
    """Return option changes a test may adjust before the plant starts."""
    return {}


@pytest.fixture
async def plant(
    tmp_path: Path, hosts_file: Path, plant_options: dict[str, Any]
) -> AsyncIterator[Plant]:
    port = free_port_pair()
    options = Options(
        listen=ECU_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path / "data",
        connect_timeout=5.0,
    ).replace(**plant_options)
    (tmp_path / "data").mkdir()
    script = CommandingEma()
    ema = StandInEma(port, handler=script)
    await ema.start()
    service = Service(options, allow_local_upstream=True)
    await service.start()
    proxy = IngressProxy(service.api_port)
    await proxy.start()
    async with aiohttp.ClientSession() as http:
        try:
            yield Plant(service, ema, script, proxy, http)
        finally:
            await proxy.stop()
            await service.stop()
            await ema.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


@dataclasses.dataclass
class Console:
    """Errors the page logged or threw."""

    errors: list[str] = dataclasses.field(default_factory=list)


def watch(page: Page) -> Console:
    """Collect console errors and uncaught exceptions of a page."""
    console = Console()
    page.on(
        "console",
        lambda m: console.errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: console.errors.append(str(e)))
    return console


async def open_page(
    browser: Browser,
    url: str,
    *,
    width: int = 1280,
    height: int = 900,
    dark: bool = False,
    credentials: dict[str, str] | None = None,
) -> tuple[Page, Console]:
    """Open the page and wait until its WebSocket is live."""
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme="dark" if dark else "light",
        http_credentials=credentials,  # type: ignore[arg-type]
        accept_downloads=True,
    )
    page = await context.new_page()
    console = watch(page)
    await page.goto(url)
    await page.wait_for_selector('#link-state[data-state="live"]')
    return page, console


def value_at(state: dict[str, Any], path: str) -> Any:
    """Return the value at a dotted path of the state document."""
    node: Any = state
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node
