"""The WebSocket client on its own, without Home Assistant."""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from custom_components.apsystems_ema_proxy.client import (
    MAX_SERVER_SCHEMA_VERSION,
    MIN_SERVER_SCHEMA_VERSION,
    Client,
    build_url,
    normalize_url,
)
from custom_components.apsystems_ema_proxy.contract.messages import (
    EcuStatusEvent,
    Event,
    ListenResult,
    RecordEvent,
)
from custom_components.apsystems_ema_proxy.exceptions import (
    CannotConnect,
    ConnectionClosed,
    FailedCommand,
    IncompatibleSchema,
    InvalidAuth,
    InvalidMessage,
    NotConnected,
)

from .conftest import CAPTURE_ECU, load_state
from .fake_service import SERVER_ID, FakeService

type Handler = Callable[[web.WebSocketResponse], Awaitable[None]]

HELLO = {
    "type": "server_info",
    "server_id": SERVER_ID,
    "version": "0.1.0",
    "schema_version": 1,
    "min_schema_version": 1,
    "requires_auth": False,
}


@pytest.fixture(autouse=True)
def frozen_now() -> None:
    """Let real time pass: these tests rely on asyncio timeouts."""


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, as the caller would inject."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def fake(socket_enabled: None) -> AsyncIterator[FakeService]:
    """The fake service with the capture state."""
    service = FakeService(load_state("state_capture"))
    await service.start()
    yield service
    await service.stop()


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """Serve one WebSocket handler on 127.0.0.1 and yield its URL."""

    async def endpoint(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await handler(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", endpoint)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


async def drain(ws: web.WebSocketResponse) -> None:
    """Read until the client goes away."""
    async for _msg in ws:
        pass


class Recorder:
    """Collect what listen() delivers."""

    def __init__(self) -> None:
        self.starts: list[ListenResult] = []
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    def on_start(self, result: ListenResult) -> None:
        self.starts.append(result)
        self.changed.set()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def listening(
    client: Client, recorder: Recorder, since: int | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """Run listen() in a task until the block ends."""
    task = asyncio.create_task(
        client.listen(recorder.on_start, recorder.on_event, since=since)
    )
    try:
        await recorder.until(lambda: bool(recorder.starts) or task.done())
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])


def test_build_url() -> None:
    """Hosts become WebSocket URLs; IPv6 literals are bracketed."""
    assert build_url("abc-ecu-proxy", 8990) == "ws://abc-ecu-proxy:8990/ws"
    assert build_url("fd00::1", 8990) == "ws://[fd00::1]:8990/ws"


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("192.168.1.10:8990", "ws://192.168.1.10:8990/ws"),
        ("192.168.1.10", "ws://192.168.1.10:8990/ws"),
        ("proxy.local:9000", "ws://proxy.local:9000/ws"),
        (" proxy.local ", "ws://proxy.local:8990/ws"),
        ("[fd00::1]", "ws://[fd00::1]:8990/ws"),
        ("http://proxy.local:8990", "ws://proxy.local:8990/ws"),
        ("https://proxy.local/", "wss://proxy.local/ws"),
        (" ws://proxy.local:8990/ws ", "ws://proxy.local:8990/ws"),
        ("WSS://proxy.local:443/api/ws", "wss://proxy.local:443/api/ws"),
    ],
)
def test_normalize_url(text: str, url: str) -> None:
    """Accepted spellings of the service address."""
    assert normalize_url(text) == url


@pytest.mark.parametrize("text", ["ftp://host:1", "ws://host:99999/ws", "ws://:80"])
def test_normalize_url_rejects(text: str) -> None:
    """Unusable addresses raise ValueError."""
    with pytest.raises(ValueError, match=r"scheme|port|host"):
        normalize_url(text)


async def test_connect_reads_server_info(
    session: aiohttp.ClientSession, fake: FakeService
) -> None:
    """connect() returns the greeting; the client is usable as a context."""
    async with Client(fake.url, session) as client:
        assert client.connected
        assert client.server_info is not None
        assert client.server_info.server_id == SERVER_ID
        assert client.server_info.version == "0.1.0"
        assert repr(client) == f"<Client {fake.url} connected=True>"
        with pytest.raises(CannotConnect, match="already connected"):
            await client.connect()
    assert not client.connected


async def test_connect_refused(
    session: aiohttp.ClientSession, fake: FakeService
) -> None:
    """Nothing listening: CannotConnect."""
    url = fake.url
    await fake.stop()
    with pytest.raises(CannotConnect) as err:
        await Client(url, session).connect()
    # The caller names the address; the error only says what went wrong.
    assert str(err.value) == "connection refused"


async def test_connect_with_closed_session(session: aiohttp.ClientSession) -> None:
    """A session closed by a stopping Home Assistant is a connection error."""
    await session.close()
    with pytest.raises(CannotConnect, match="session is closed"):
        await Client("ws://127.0.0.1:9/ws", session).connect()


async def test_heartbeat_waits_30_s_for_the_pong(
    session: aiohttp.ClientSession,
    fake: FakeService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp waits heartbeat/2 for a pong: at least 30 s, lost within 90 s."""
    heartbeats: list[float | None] = []
    ws_connect = session.ws_connect

    def spy(url: str, **kwargs: Any) -> Any:
        heartbeats.append(kwargs.get("heartbeat"))
        return ws_connect(url, **kwargs)

    monkeypatch.setattr(session, "ws_connect", spy)
    async with Client(fake.url, session):
        pass
    [heartbeat] = heartbeats
    assert heartbeat is not None
    assert heartbeat / 2 >= 30
    assert heartbeat * 1.5 <= 90


@pytest.mark.parametrize(
    ("greeting", "error"),
    [
        ({"type": "hello"}, InvalidMessage),
        ({"type": "server_info", "schema_version": 1}, InvalidMessage),
        ([1, 2], InvalidMessage),
        ("not json", InvalidMessage),
        (b"binary", CannotConnect),
        (None, CannotConnect),
    ],
)
async def test_connect_bad_greeting(
    session: aiohttp.ClientSession, greeting: Any, error: type[Exception]
) -> None:
    """A greeting that breaks the API is a clear error and closes the socket."""

    async def handler(ws: web.WebSocketResponse) -> None:
        if greeting is None:
            await ws.close(code=1011)
            return
        if isinstance(greeting, bytes):
            await ws.send_bytes(greeting)
        elif isinstance(greeting, str):
            await ws.send_str(greeting)
        else:
            await ws.send_json(greeting)
        await drain(ws)

    async with serve(handler) as url:
        client = Client(url, session)
        with pytest.raises(error):
            await client.connect()
        assert not client.connected


async def test_connect_greeting_timeout(session: aiohttp.ClientSession) -> None:
    """A service that never greets is given up after the timeout."""

    async def handler(ws: web.WebSocketResponse) -> None:
        await drain(ws)

    async with serve(handler) as url:
        with pytest.raises(CannotConnect, match="did not answer in time"):
            await Client(url, session, timeout=0.2).connect()


async def test_connect_answers_ping_before_greeting(
    session: aiohttp.ClientSession,
) -> None:
    """Pings and pongs before the greeting are handled, not taken as greeting."""
    pong = asyncio.Event()

    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.ping(b"early")
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.PONG and msg.data == b"early":
            pong.set()
        await ws.pong(b"unsolicited")
        await ws.send_json(HELLO)
        await drain(ws)

    async with serve(handler) as url, Client(url, session) as client:
        assert client.server_info is not None
    assert pong.is_set()


@pytest.mark.parametrize(
    ("schema", "minimum", "service_too_old"), [(0, 0, True), (3, 2, False)]
)
async def test_connect_incompatible_schema(
    session: aiohttp.ClientSession,
    schema: int,
    minimum: int,
    service_too_old: bool,
) -> None:
    """Non-overlapping schema ranges say which side is too old."""
    fake = FakeService(load_state("state_capture"), schema_version=schema)
    fake.min_schema_version = minimum
    await fake.start()
    try:
        with pytest.raises(IncompatibleSchema) as info:
            await Client(fake.url, session).connect()
    finally:
        await fake.stop()
    assert info.value.service_too_old is service_too_old
    assert info.value.client_min_schema == MIN_SERVER_SCHEMA_VERSION
    assert info.value.client_max_schema == MAX_SERVER_SCHEMA_VERSION
    assert f"{minimum}..{schema}" in str(info.value)


async def test_auth(session: aiohttp.ClientSession) -> None:
    """The right token logs in; a wrong one or none is InvalidAuth."""
    fake = FakeService(load_state("state_capture"), token="t0ken")
    await fake.start()
    try:
        async with Client(fake.url, session, "t0ken") as client:
            assert client.connected
        with pytest.raises(InvalidAuth, match="rejected"):
            await Client(fake.url, session, "wrong").connect()
        with pytest.raises(InvalidAuth, match="requires a token"):
            await Client(fake.url, session).connect()
    finally:
        await fake.stop()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"type": "result", "message_id": "auth", "success": False}, InvalidAuth),
        ({"type": "result", "message_id": "other", "success": True}, InvalidMessage),
    ],
)
async def test_auth_bad_replies(
    session: aiohttp.ClientSession, reply: dict[str, Any], error: type[Exception]
) -> None:
    """A refused or unrelated auth result is an error."""

    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_json(HELLO | {"requires_auth": True})
        await ws.receive()
        await ws.send_json(reply)
        await drain(ws)

    async with serve(handler) as url:
        with pytest.raises(error):
            await Client(url, session, "token").connect()


async def test_listen_state_events_and_commands(
    session: aiohttp.ClientSession, fake: FakeService
) -> None:
    """listen() gives the state first, then events; commands work meanwhile."""
    recorder = Recorder()
    fake.frames = [dataclasses.replace(fake.frames[0], seq=7, raw="APS18...")]
    async with Client(fake.url, session) as client, listening(client, recorder):
        start = recorder.starts[0]
        assert start.last_seq == 0
        assert start.state is not None
        ecu = start.state.ecus[CAPTURE_ECU]
        assert ecu.power_w == 190
        assert ecu.lifetime_energy_kwh == 2127.9
        channels = ecu.inverters["408000111178"].channels
        assert [(c.dc_voltage_v, c.dc_current_a, c.power_w) for c in channels] == [
            (33.8, 0.5, 17),
            (33.9, 0.5, 18),
        ]
        qs1 = ecu.inverters["806000011223"]
        assert [c.dc_current_a for c in qs1.channels] == [1.0, 1.2, 1.4, 1.4]

        await fake.ecu_status(CAPTURE_ECU, {"result": "timeout", "at": None})
        await fake.push("something_new", {"ecu_id": CAPTURE_ECU})
        await fake.push("record", {"ecu_id": CAPTURE_ECU})  # malformed: no "ecu"
        for ws in fake.listening:
            await ws.send_str("not json")
            await ws.send_json([1])
            await ws.send_json({"type": "mystery"})
            await ws.send_json({"type": "result", "message_id": "999", "success": True})
            await ws.send_bytes(b"\x00")
        ecu_state = fake.state["ecus"][CAPTURE_ECU]
        await fake.record(ecu_state | {"power_w": 12})
        await recorder.until(lambda: len(recorder.events) == 2)
        status, record = recorder.events
        assert isinstance(status, EcuStatusEvent)
        assert status.data.upstream.result == "timeout"
        assert isinstance(record, RecordEvent)
        assert record.seq == 4
        assert record.data.ecu.power_w == 12

        state = await client.get_state()
        assert state.ecus[CAPTURE_ECU].power_w == 12
        frames = await client.get_frames(limit=5)
        assert [(f.seq, f.port, f.raw) for f in frames] == [(7, 8995, "APS18...")]
        assert [c.get("limit") for c in fake.commands if c["command"] == "get_frames"]
        with pytest.raises(FailedCommand) as info:
            await client.async_send_command("reboot_ecu")
        assert info.value.error_code == "unknown_command"
        assert info.value.command == "reboot_ecu"


async def test_listen_since_replays(
    session: aiohttp.ClientSession, fake: FakeService
) -> None:
    """With a known seq, only the missed events come back."""
    await fake.record(fake.state["ecus"][CAPTURE_ECU] | {"power_w": 1})
    await fake.record(fake.state["ecus"][CAPTURE_ECU] | {"power_w": 2})
    recorder = Recorder()
    async with Client(fake.url, session) as client, listening(client, recorder, 1):
        start = recorder.starts[0]
        assert start.state is None
        assert start.last_seq == 2
        assert [e.seq for e in start.events] == [2]


async def test_listen_refused(
    session: aiohttp.ClientSession, fake: FakeService
) -> None:
    """A failing start_listening ends listen() with FailedCommand."""
    fake.start_listening_fails = True
    client = Client(fake.url, session)
    await client.connect()
    with pytest.raises(FailedCommand, match="internal_error"):
        await client.listen(lambda _r: None, lambda _e: None)
    assert not client.connected


async def test_listen_needs_connection(session: aiohttp.ClientSession) -> None:
    """listen() and commands before connect() fail clearly."""
    client = Client("ws://127.0.0.1:9/ws", session)
    with pytest.raises(NotConnected):
        await client.listen(lambda _r: None, lambda _e: None)
    with pytest.raises(NotConnected):
        await client.get_state()


async def start_result(ws: web.WebSocketResponse) -> None:
    """Greet, then answer start_listening with an empty replay."""
    await ws.send_json(HELLO)
    msg = await ws.receive()
    data = json.loads(msg.data)
    await ws.send_json(
        {
            "type": "result",
            "message_id": data["message_id"],
            "success": True,
            "result": {"last_seq": 0, "state": None, "events": []},
        }
    )


@pytest.mark.parametrize(
    ("code", "error", "match"),
    [
        (1001, ConnectionClosed, "closed the connection"),
        (4001, InvalidAuth, "rejected"),
        (4002, ConnectionClosed, "too slow"),
        (4003, IncompatibleSchema, "schema"),
    ],
)
async def test_listen_close_codes(
    session: aiohttp.ClientSession, code: int, error: type[Exception], match: str
) -> None:
    """Each close code maps to the error callers act on; pending commands fail."""

    async def handler(ws: web.WebSocketResponse) -> None:
        await start_result(ws)
        await ws.receive()  # the get_state command, left unanswered
        await ws.close(code=code)

    async with serve(handler) as url:
        client = Client(url, session)
        await client.connect()
        recorder = Recorder()
        task = asyncio.create_task(client.listen(recorder.on_start, recorder.on_event))
        await recorder.until(lambda: bool(recorder.starts))
        with pytest.raises(ConnectionClosed):
            await client.get_state()
        with pytest.raises(error, match=match):
            await task


async def test_silent_service_is_dropped(session: aiohttp.ClientSession) -> None:
    """A service that stops answering pings ends listen() with ConnectionClosed."""

    async def handler(ws: web.WebSocketResponse) -> None:
        await start_result(ws)
        await drain(ws)  # autoping is off here: pings go unanswered

    async with serve(handler) as url:
        client = Client(url, session, heartbeat=0.05)
        await client.connect()
        with pytest.raises(ConnectionClosed, match="stopped answering pings"):
            await client.listen(lambda _r: None, lambda _e: None)


async def test_answering_service_stays(session: aiohttp.ClientSession) -> None:
    """Answered pings keep the connection; the service's pings are answered."""
    answered = asyncio.Queue[bytes]()
    client_pongs = asyncio.Event()

    async def handler(ws: web.WebSocketResponse) -> None:
        await start_result(ws)
        await ws.ping(b"from-service")
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
                answered.put_nowait(msg.data)
            elif msg.type is aiohttp.WSMsgType.PONG and msg.data == b"from-service":
                client_pongs.set()

    async with serve(handler) as url:
        client = Client(url, session, heartbeat=0.02)
        await client.connect()
        recorder = Recorder()
        async with listening(client, recorder) as task:
            async with asyncio.timeout(5):
                for _ in range(5):
                    await answered.get()
                await client_pongs.wait()
            assert not task.done()
            assert client.connected


async def test_command_timeout(session: aiohttp.ClientSession) -> None:
    """A command without a result in time fails instead of hanging."""

    async def handler(ws: web.WebSocketResponse) -> None:
        await start_result(ws)
        await drain(ws)  # never answers get_state

    async with serve(handler) as url:
        client = Client(url, session, timeout=0.2)
        await client.connect()
        recorder = Recorder()
        async with listening(client, recorder):
            with pytest.raises(ConnectionClosed, match="no result in time"):
                await client.get_state()


@pytest.mark.parametrize(
    ("result", "method"),
    [({}, "get_state"), ({"frames": None}, "get_frames")],
)
async def test_command_results_missing(
    session: aiohttp.ClientSession, result: dict[str, Any], method: str
) -> None:
    """Results without their payload are InvalidMessage."""

    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_json(HELLO)
        async for msg in ws:
            data = json.loads(msg.data)
            payload: Any = (
                {"last_seq": 0, "state": None, "events": []}
                if data["command"] == "start_listening"
                else result
            )
            await ws.send_json(
                {
                    "type": "result",
                    "message_id": data["message_id"],
                    "success": True,
                    "result": payload,
                }
            )

    async with serve(handler) as url:
        client = Client(url, session)
        await client.connect()
        recorder = Recorder()
        async with listening(client, recorder):
            with pytest.raises(InvalidMessage):
                await getattr(client, method)()
