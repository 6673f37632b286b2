"""API limits: Host/Origin checks, connection cap, header timeout, byte budgets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import records

from ecu_proxy.api import ApiServer
from ecu_proxy.api_guard import SUPERVISOR_IP, HostPolicy
from ecu_proxy.decoder import decode_frame
from ecu_proxy.frame_pages import FramePager
from ecu_proxy.hub import FRAME_BUFFER, Hub
from ecu_proxy.models import Direction, FrameEvent, RelayCounters
from ecu_proxy.options import Options

if TYPE_CHECKING:
    from pathlib import Path

WAIT = 10.0
TOKEN = "s3cret-token"
HOSTNAMES = ("a0d7b954-apsystems-ecu-proxy",)
RECEIVED = datetime(2024, 2, 6, 10, 0, 5, tzinfo=UTC)


@dataclass
class Setup:
    hub: Hub
    api: ApiServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"


type Factory = Callable[..., Awaitable[Setup]]


@pytest.fixture
async def make_setup(tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[Setup] = []
    session = aiohttp.ClientSession()

    async def factory(token: str | None = None, **api_args: Any) -> Setup:
        options = Options(
            api_host="127.0.0.1",
            api_port=0,
            api_token=token,
            data_dir=tmp_path / f"data{len(made)}",
            allowed_hosts=("solar.example.org", "*.lan.example"),
        )
        hub = Hub(options, server_id="f" * 32, version="1.2.3", save_delay=0.05)
        await hub.start()
        api_args.setdefault(
            "policy",
            HostPolicy.for_this_machine(options.allowed_hosts, hostnames=HOSTNAMES),
        )
        api = ApiServer(hub, options, counters=RelayCounters, **api_args)
        await api.start()
        setup = Setup(hub, api, session)
        made.append(setup)
        return setup

    yield factory
    await session.close()
    for setup in made:
        await setup.api.stop()
        await setup.hub.stop()


def garbage_frame(seq: int, size: int = 32 * 1024) -> FrameEvent:
    raw = os.urandom(size)
    return FrameEvent(
        connection_id=seq,
        port=8995,
        peer="192.0.2.66:40000",
        direction=Direction.ECU_TO_EMA,
        raw=raw,
        frame=decode_frame(raw),
        received_at=RECEIVED,
    )


def fill_with_garbage(hub: Hub, count: int = FRAME_BUFFER) -> None:
    for n in range(count):
        hub.frame_received(garbage_frame(n))


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (the server acts on its own schedule)."""
    async with asyncio.timeout(WAIT):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


# --- Host and Origin ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8990",
        "192.168.1.10",
        "[fe80::1]:8990",
        "localhost:8990",
        "a0d7b954-apsystems-ecu-proxy:8990",  # the container name the integration uses
        "a0d7b954-apsystems-ecu-proxy.local.hass.io",  # the hassio DNS name
        "homeassistant.local:8990",  # the host's mDNS name
        "SOLAR.example.org:8990",  # allowed_hosts, any case
        "pi.lan.example",  # allowed_hosts wildcard
    ],
)
def test_allowed_hosts(host: str) -> None:
    policy = HostPolicy.for_this_machine(
        ("solar.example.org", "*.lan.example"), hostnames=HOSTNAMES
    )
    assert policy.host_allowed(host)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example.com",  # a rebinding name
        "evil.example.com:8990",
        "lan.example",  # the wildcard covers names below only
        "a0d7b954-apsystems-ecu-proxy.evil.com",
        "localhost.evil.com",
        ".local",
        "127.0.0.1:http",
    ],
)
def test_refused_hosts(host: str) -> None:
    policy = HostPolicy.for_this_machine(
        ("solar.example.org", "*.lan.example"), hostnames=HOSTNAMES
    )
    assert not policy.host_allowed(host)


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://192.168.1.10:8990", "192.168.1.10:8990", True),  # same site
        ("http://homeassistant.local:8123", "homeassistant.local:8990", True),
        ("https://solar.example.org", "192.168.1.10:8990", True),  # allowed_hosts
        ("http://evil.example.com", "192.168.1.10:8990", False),
        ("http://192.168.1.66", "192.168.1.10:8990", False),  # another LAN page
        ("null", "192.168.1.10:8990", False),  # sandboxed page or file
        ("file://", "192.168.1.10:8990", False),
        ("http://localhost:3000", "192.168.1.10:8990", False),
    ],
)
def test_origins(origin: str, host: str, allowed: bool) -> None:
    policy = HostPolicy.for_this_machine(
        ("solar.example.org", "*.lan.example"), hostnames=HOSTNAMES
    )
    assert policy.origin_allowed(origin, host) is allowed


@pytest.mark.parametrize("token", [None, TOKEN])
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),  # the integration and curl send no Origin
        ({"Host": "a0d7b954-apsystems-ecu-proxy:8990"}, 200),
        ({"Host": "evil.example.com"}, 403),
        ({"Origin": "http://evil.example.com"}, 403),
        ({"Host": "localhost", "Origin": "http://localhost"}, 200),
    ],
)
@pytest.mark.parametrize("path", ["/api/state", "/api/frames", "/api/health"])
async def test_http_host_and_origin(
    make_setup: Factory,
    token: str | None,
    headers: dict[str, str],
    status: int,
    path: str,
) -> None:
    setup = await make_setup(token=token)
    auth = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    async with setup.session.get(setup.url + path, headers=headers | auth) as resp:
        body = await resp.json()
        expected = status if status == 403 or path != "/api/health" else 503
        assert resp.status == expected, body
    if status == 403:
        assert body["error"] == "forbidden"


@pytest.mark.parametrize("token", [None, TOKEN])
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example.com"},
        {"Host": "evil.example.com:8990"},
        {"Host": "evil.example.com", "Origin": "http://evil.example.com"},
    ],
)
async def test_websocket_from_a_foreign_page_is_refused(
    make_setup: Factory, token: str | None, headers: dict[str, str]
) -> None:
    setup = await make_setup(token=token)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await setup.session.ws_connect(f"{setup.url}/ws", headers=headers)
    assert refused.value.status == 403
    assert setup.api.client_count == 0


async def test_websocket_of_the_integration_and_same_site_pages_works(
    make_setup: Factory,
) -> None:
    setup = await make_setup()
    for headers in (
        {},
        {"Host": "a0d7b954-apsystems-ecu-proxy:8990"},
        {"Host": "192.168.1.10:8990", "Origin": "http://192.168.1.10:8990"},
    ):
        ws = await setup.session.ws_connect(f"{setup.url}/ws", headers=headers)
        hello = json.loads((await ws.receive(timeout=WAIT)).data)
        assert hello["type"] == "server_info"
        await ws.close()


async def test_ingress_requests_from_the_supervisor_keep_their_origin(
    make_setup: Factory,
) -> None:
    # Ingress: the Supervisor proxies the browser's request (its Origin included)
    # from its own address, after checking the Home Assistant user.
    setup = await make_setup(
        policy=HostPolicy(
            names=frozenset({"localhost"}),
            suffixes=(".local",),
            extra_names=frozenset(),
            extra_suffixes=(),
            trusted_peers=frozenset({"127.0.0.1"}),
        )
    )
    origin = {"Origin": "http://homeassistant.local:8123", "Host": "172.30.33.5:8990"}
    async with setup.session.get(f"{setup.url}/api/state", headers=origin) as resp:
        assert resp.status == 200
    assert SUPERVISOR_IP in HostPolicy.for_this_machine().trusted_peers


# --- connections -------------------------------------------------------------------


async def test_half_sent_requests_make_room_for_a_real_client(
    make_setup: Factory,
) -> None:
    setup = await make_setup(max_connections=4, header_timeout=60.0)
    held = [
        await asyncio.open_connection("127.0.0.1", setup.api.port) for _ in range(4)
    ]
    for _, writer in held:
        writer.write(b"GET /api/state HTTP/1.1\r\nHo")  # half a request, then silence
        await writer.drain()
    await until(lambda: setup.api.connection_count >= 4)
    # Every slot is taken, yet health answers: the oldest half-sent request goes.
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status == 503  # no relay ports in this setup, but it answers
    async with asyncio.timeout(WAIT):
        assert await held[0][0].read() == b""
    assert setup.api.connection_count == 4
    for _, writer in held:
        writer.close()


async def test_connections_are_capped(make_setup: Factory) -> None:
    setup = await make_setup(max_connections=3)
    sockets = [await setup.session.ws_connect(f"{setup.url}/ws") for _ in range(3)]
    await until(lambda: setup.api.client_count == 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.api.port)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""  # closed at once, nothing served
    writer.close()
    await sockets[0].close()
    await until(lambda: setup.api.connection_count <= 2)
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status == 503
    for ws in sockets:
        await ws.close()


async def test_one_address_cannot_take_every_slot(make_setup: Factory) -> None:
    setup = await make_setup(max_connections_per_address=2, header_timeout=60.0)
    other = ("127.0.0.2", 0)  # another device, still on loopback
    held = [
        await asyncio.open_connection("127.0.0.1", setup.api.port, local_addr=other)
        for _ in range(2)
    ]
    await until(lambda: setup.api.connection_count >= 2)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", setup.api.port, local_addr=other
    )
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""  # the third from that address is refused
    writer.close()
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status == 503  # others still get in
    for _, w in held:
        w.close()


async def test_half_sent_request_times_out(make_setup: Factory) -> None:
    setup = await make_setup(header_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.api.port)
    writer.write(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    await writer.drain()
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""
    writer.close()
    # A complete request on a new connection is served as usual.
    async with setup.session.get(f"{setup.url}/api/state") as resp:
        assert resp.status == 200


# --- byte budgets ------------------------------------------------------------------


def test_frame_pages_are_bounded_in_bytes_and_page_backwards(tmp_path: Path) -> None:
    hub = Hub(
        Options(data_dir=tmp_path), server_id="f" * 32, version="1", save_delay=0.05
    )
    fill_with_garbage(hub)
    pager = FramePager(page_bytes=256 * 1024)
    first = pager.page(hub.captured(), FRAME_BUFFER)
    assert len(first.json) <= 256 * 1024
    assert first.more
    frames = json.loads(first.json)["frames"]
    assert 0 < len(frames) == first.count < FRAME_BUFFER
    assert all(f["truncated"] for f in frames)
    assert frames[-1]["seq"] == FRAME_BUFFER  # newest last
    # Asking again returns the same page object: repeated requests share it.
    assert pager.page(hub.captured(), FRAME_BUFFER) is first
    # Paging backwards with "before" reaches every frame exactly once.
    seen = [f["seq"] for f in frames]
    before = frames[0]["seq"]
    while True:
        page = pager.page(hub.captured(), FRAME_BUFFER, before)
        older = json.loads(page.json)["frames"]
        if not older:
            break
        assert len(page.json) <= 256 * 1024
        seen = [f["seq"] for f in older] + seen
        before = older[0]["seq"]
    assert seen == list(range(1, FRAME_BUFFER + 1))


async def test_http_frames_answer_is_bounded(make_setup: Factory) -> None:
    setup = await make_setup(pager=FramePager(page_bytes=128 * 1024))
    fill_with_garbage(setup.hub)
    async with setup.session.get(f"{setup.url}/api/frames") as resp:
        body = await resp.read()
    assert len(body) <= 128 * 1024
    assert json.loads(body)["more"] is True


async def _raw_websocket(
    port: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket that reads nothing: a tiny receive buffer, no reader."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def test_websocket_client_that_never_reads_is_cut_off(
    make_setup: Factory,
) -> None:
    setup = await make_setup(client_bytes=1024 * 1024, close_timeout=0.5)
    fill_with_garbage(setup.hub)
    _, writer = await _raw_websocket(setup.api.port)
    await until(lambda: setup.api.client_count >= 1)
    request = _masked_text('{"message_id":1,"command":"get_frames"}')
    sent = 0
    async with asyncio.timeout(WAIT):
        while setup.api.client_count:
            try:
                writer.write(request)
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.sleep(0)  # let the server read and answer
    await until(lambda: setup.api.client_count == 0)
    # Cut off after a handful of unread answers, not hundreds.
    assert sent < 50
    assert setup.api.client_count == 0
    assert setup.hub.subscriber_count == 0
    writer.close()
    # Nothing stays accounted once the client is gone.
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    await ws.receive(timeout=WAIT)
    await ws.send_json({"message_id": 2, "command": "get_frames", "limit": 1})
    reply = json.loads((await ws.receive(timeout=WAIT)).data)
    assert reply["success"] is True
    assert len(reply["result"]["frames"]) == 1
    await ws.close()


async def test_results_for_all_clients_share_one_budget(make_setup: Factory) -> None:
    setup = await make_setup(all_results_bytes=1024 * 1024, close_timeout=0.5)
    fill_with_garbage(setup.hub)
    request = _masked_text('{"message_id":1,"command":"get_frames"}')
    clients = [await _raw_websocket(setup.api.port) for _ in range(8)]
    await until(lambda: setup.api.client_count >= 8)
    for _ in range(6):
        for _, writer in clients:
            if not writer.is_closing():
                writer.write(request)
    await until(lambda: setup.api.client_count != 8)
    assert setup.api.client_count < 8
    for _, writer in clients:
        writer.close()
    await until(lambda: setup.api.client_count == 0)


async def test_a_client_asking_while_others_hold_the_budget_is_told_to_retry(
    make_setup: Factory,
) -> None:
    setup = await make_setup(all_results_bytes=600 * 1024)
    fill_with_garbage(setup.hub)
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    await ws.receive(timeout=WAIT)
    # Other clients hold almost all of the budget in unsent answers.
    setup.api._result_bytes = 500 * 1024
    await ws.send_json({"message_id": 2, "command": "get_frames"})
    reply = json.loads((await ws.receive(timeout=WAIT)).data)
    assert reply["success"] is False
    assert reply["error_code"] == "busy"
    # Still connected; small answers keep coming.
    await ws.send_json({"message_id": 3, "command": "auth"})
    assert json.loads((await ws.receive(timeout=WAIT)).data)["success"] is True
    setup.api._result_bytes = 0  # the others were served or went away
    await ws.send_json({"message_id": 4, "command": "get_frames"})
    reply = json.loads((await ws.receive(timeout=WAIT)).data)
    assert reply["success"] is True
    await ws.close()


def test_events_kept_for_resuming_are_bounded_in_bytes(tmp_path: Path) -> None:
    from ecu_proxy.hub import HISTORY_BYTES
    from ecu_proxy.models import DecodedFrame, FrameKind

    hub = Hub(
        Options(data_dir=tmp_path), server_id="f" * 32, version="1", save_delay=0.05
    )
    blocks = tuple(records.inverter("07", f"408000{n:06d}") for n in range(250))
    start = datetime(2024, 2, 6, 8, 0)
    for n in range(120):  # each record event carries 250 inverters (~150 kB)
        at = start + timedelta(minutes=5 * n)
        frame = DecodedFrame(
            kind=FrameKind.DATA,
            version="18",
            length=40_000,
            ecu_id="216000064136",
            ecu_model="ECU-R",
            timestamp=at,
            inverters=blocks,
        )
        hub.frame_received(
            FrameEvent(
                connection_id=1,
                port=8995,
                peer="192.0.2.10",
                direction=Direction.ECU_TO_EMA,
                raw=b"APS18",
                frame=frame,
                received_at=RECEIVED + timedelta(minutes=5 * n),
            )
        )
    assert hub.last_seq >= 120
    assert hub.events_since(1) is None  # the oldest are gone: full state instead
    oldest = next(s for s in range(hub.last_seq + 1) if hub.events_since(s) is not None)
    kept = hub.events_since(oldest)
    assert kept is not None
    assert 1 <= len(kept) < 120
    assert sum(len(e.json) for e in kept) <= HISTORY_BYTES
