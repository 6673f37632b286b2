"""The HTTP and WebSocket contract of docs/api.md, against a real server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import records

from ecu_proxy import api as api_module
from ecu_proxy.api import ApiServer
from ecu_proxy.hub import HISTORY_SIZE, Hub
from ecu_proxy.models import (
    FrameEvent,
    Inverter,
    RelayCounters,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.options import Options

if TYPE_CHECKING:
    from pathlib import Path

ECU = "216000064136"
YC600 = "408000111178"
DAY = datetime(2024, 2, 6, 11, 0, 0)
RECEIVED = datetime(2024, 2, 6, 10, 0, 5, tzinfo=UTC)
TOKEN = "s3cret-token"
WAIT = 10.0


def inverter(inv_id: str = YC600, channels: int = 2) -> Inverter:
    return records.inverter("07" if channels == 2 else "08", inv_id)


def data_event(
    at: datetime, inverters: tuple[Inverter, ...] = (), ecu_id: str = ECU
) -> FrameEvent:
    frame = records.record(
        *(inverters or (inverter(),)),
        power_w=190.0,
        ecu_id=ecu_id,
        timestamp=at,
        ecu_model="ECU-R",
    )
    raw = b"APS18AA302AAAAAAA1" + ecu_id.encode() + b"...END\n"
    return records.received(frame, RECEIVED, raw)


@dataclass
class Setup:
    hub: Hub
    api: ApiServer
    session: aiohttp.ClientSession
    counters: RelayCounters = field(default_factory=RelayCounters)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"


type Factory = Callable[..., Awaitable[Setup]]


@pytest.fixture
async def make_setup(tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[Setup] = []
    session = aiohttp.ClientSession()

    async def factory(
        token: str | None = None, capture: bool = True, client_queue: int = 1024
    ) -> Setup:
        options = Options(
            api_host="127.0.0.1",
            api_port=0,
            api_token=token,
            data_dir=tmp_path / f"data{len(made)}",
            capture_frames=capture,
        )
        hub = Hub(options, server_id="f" * 32, version="1.2.3", save_delay=0.05)
        await hub.start()
        holder: list[RelayCounters] = [RelayCounters()]
        api = ApiServer(
            hub, options, counters=lambda: holder[0], client_queue=client_queue
        )
        await api.start()
        setup = Setup(hub, api, session, holder[0])
        made.append(setup)
        return setup

    yield factory
    await session.close()
    for setup in made:
        await setup.api.stop()
        await setup.hub.stop()


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def command(
    ws: aiohttp.ClientWebSocketResponse, message_id: str, name: str, **args: Any
) -> dict[str, Any]:
    await ws.send_json({"message_id": message_id, "command": name, **args})
    reply = await receive_json(ws)
    assert reply["type"] == "result"
    assert reply["message_id"] == message_id
    return reply


async def connect(
    setup: Setup, token: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    hello = await receive_json(ws)
    assert hello["type"] == "server_info"
    if token is not None:
        reply = await command(ws, "auth", "auth", token=token)
        assert reply["success"] is True
    return ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async with asyncio.timeout(WAIT):
        while True:
            msg = await ws.receive()
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return ws.close_code


# --- hello and auth --------------------------------------------------------------


async def test_server_speaks_first_without_auth(make_setup: Factory) -> None:
    setup = await make_setup()
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    hello = await receive_json(ws)
    assert hello == {
        "type": "server_info",
        "server_id": "f" * 32,
        "version": "1.2.3",
        "schema_version": 1,
        "min_schema_version": 1,
        "requires_auth": False,
    }
    reply = await command(ws, "1", "get_state")
    assert reply["success"] is True
    assert reply["result"]["state"]["server_id"] == "f" * 32
    await ws.close()


@pytest.mark.parametrize(
    "first",
    [
        {"message_id": "1", "command": "get_state"},
        {"message_id": "1", "command": "auth", "token": "wrong"},
        {"message_id": "1", "command": "auth"},
        "not json",
    ],
)
async def test_auth_required_closes_4001(make_setup: Factory, first: Any) -> None:
    setup = await make_setup(token=TOKEN)
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    hello = await receive_json(ws)
    assert hello["requires_auth"] is True
    if isinstance(first, str):
        await ws.send_str(first)
    else:
        await ws.send_json(first)
    assert await closed_with(ws) == 4001


async def test_binary_first_message_closes_4001(make_setup: Factory) -> None:
    setup = await make_setup(token=TOKEN)
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    assert (await receive_json(ws))["requires_auth"] is True
    await ws.send_bytes(b'{"message_id": "1", "command": "get_state"}')
    assert await closed_with(ws) == 4001


async def test_silent_client_is_closed_when_auth_times_out(
    make_setup: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "AUTH_TIMEOUT_S", 0.2)
    setup = await make_setup(token=TOKEN)
    ws = await setup.session.ws_connect(f"{setup.url}/ws")
    assert (await receive_json(ws))["requires_auth"] is True
    assert await closed_with(ws) == 4001  # without ever sending anything


async def test_auth_with_token_then_commands_work(make_setup: Factory) -> None:
    setup = await make_setup(token=TOKEN)
    ws = await connect(setup, token=TOKEN)
    reply = await command(ws, "2", "get_state")
    assert reply["success"] is True
    await ws.close()


async def test_http_token(make_setup: Factory) -> None:
    setup = await make_setup(token=TOKEN)
    async with setup.session.get(f"{setup.url}/api/state") as resp:
        assert resp.status == 401
    bad = {"Authorization": "Bearer nope"}
    async with setup.session.get(f"{setup.url}/api/frames", headers=bad) as resp:
        assert resp.status == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    async with setup.session.get(f"{setup.url}/api/state", headers=good) as resp:
        assert resp.status == 200
        assert (await resp.json())["schema_version"] == 1
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status in (200, 503)
        assert "status" in await resp.json()


# --- commands --------------------------------------------------------------------


async def test_bad_messages_get_error_results(make_setup: Factory) -> None:
    setup = await make_setup()
    ws = await connect(setup)
    reply = await command(ws, "1", "no_such_thing")
    assert reply["success"] is False
    assert reply["error_code"] == "unknown_command"
    await ws.send_json({"command": "get_state"})
    reply = await receive_json(ws)
    assert reply["error_code"] == "invalid_message"
    assert reply["message_id"] is None
    await ws.send_str("[1, 2]")
    assert (await receive_json(ws))["error_code"] == "invalid_message"
    await ws.send_str("{nope")
    assert (await receive_json(ws))["error_code"] == "invalid_message"
    reply = await command(ws, "2", "start_listening", since="yesterday")
    assert reply["error_code"] == "invalid_args"
    reply = await command(ws, "3", "get_frames", limit=0)
    assert reply["error_code"] == "invalid_args"
    # the connection is still usable
    assert (await command(ws, "4", "get_state"))["success"] is True
    await ws.close()


async def test_frames_over_ws_and_http(make_setup: Factory) -> None:
    setup = await make_setup()
    for i in range(3):
        setup.hub.frame_received(data_event(DAY + timedelta(minutes=5 * i)))
    ws = await connect(setup)
    reply = await command(ws, "1", "get_frames", limit=2)
    frames = reply["result"]["frames"]
    assert [f["seq"] for f in frames] == [2, 3]
    assert frames[-1]["decoded"]["timestamp"] == "2024-02-06T11:10:00"
    assert frames[-1]["raw"].endswith("END\n")
    assert frames[-1]["direction"] == "ecu_to_ema"
    await ws.close()
    async with setup.session.get(f"{setup.url}/api/frames?limit=1") as resp:
        body = await resp.json()
    assert [f["seq"] for f in body["frames"]] == [3]
    async with setup.session.get(f"{setup.url}/api/frames?limit=abc") as resp:
        assert resp.status == 400
    async with setup.session.get(f"{setup.url}/api/frames") as resp:
        assert len((await resp.json())["frames"]) == 3


async def test_no_frames_kept_when_capture_is_off(make_setup: Factory) -> None:
    setup = await make_setup(capture=False)
    setup.hub.frame_received(data_event(DAY))
    async with setup.session.get(f"{setup.url}/api/frames") as resp:
        assert (await resp.json())["frames"] == []
    assert ECU in setup.hub.snapshot()["ecus"]


# --- health ----------------------------------------------------------------------


async def test_health_reports_listeners_and_counters(make_setup: Factory) -> None:
    setup = await make_setup()
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status == 503  # the relay has not opened any port
        assert (await resp.json())["status"] == "degraded"
    setup.counters.listeners.update({8995: "listening", 8996: "listening"})
    setup.counters.frames_relayed = 7
    setup.counters.connections = 3
    ws = await connect(setup)
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["version"] == "1.2.3"
    assert body["listeners"] == {"8995": "listening", "8996": "listening"}
    assert body["frames"]["relayed"] == 7
    assert body["connections"]["total"] == 3
    assert body["clients"] == 1
    assert body["uptime_s"] >= 0
    setup.counters.listeners[8997] = "error: address in use"
    async with setup.session.get(f"{setup.url}/api/health") as resp:
        assert resp.status == 503
        assert (await resp.json())["listeners"]["8997"] == "error: address in use"
    await ws.close()


# --- listening, events, resume ---------------------------------------------------


async def test_start_listening_returns_full_state(make_setup: Factory) -> None:
    setup = await make_setup()
    setup.hub.frame_received(data_event(DAY))
    ws = await connect(setup)
    reply = await command(ws, "1", "start_listening")
    result = reply["result"]
    assert result["last_seq"] == setup.hub.last_seq == 2
    assert result["events"] == []
    ecu = result["state"]["ecus"][ECU]
    assert ecu["inverters"][YC600]["online"] is True
    assert ecu["lifetime_energy_kwh"] == 2127.9
    await ws.close()


async def test_events_follow_frames_and_upstream_results(make_setup: Factory) -> None:
    setup = await make_setup()
    ws = await connect(setup)
    start = (await command(ws, "1", "start_listening"))["result"]["last_seq"]
    setup.hub.frame_received(data_event(DAY))
    added = await receive_json(ws)
    assert added["type"] == "event"
    assert added["event"] == "inverter_added"
    assert added["seq"] == start + 1
    assert added["data"]["ecu_id"] == ECU
    assert added["data"]["inverter"]["id"] == YC600
    rec = await receive_json(ws)
    assert rec["event"] == "record"
    assert rec["seq"] == start + 2
    assert rec["data"]["late"] is False
    assert rec["data"]["ecu"]["power_w"] == 190.0
    setup.hub.frame_received(data_event(DAY - timedelta(minutes=5)))
    late = await receive_json(ws)
    assert late["event"] == "record"
    assert late["data"]["late"] is True
    at = RECEIVED + timedelta(seconds=1)
    setup.hub.upstream_result(
        UpstreamReport(ECU, 8995, UpstreamResult.UNREACHABLE, at, detail="refused")
    )
    status = await receive_json(ws)
    assert status["event"] == "ecu_status"
    assert status["seq"] == start + 4
    assert status["data"]["upstream"]["result"] == "unreachable"
    # a duplicate changes nothing and sends nothing; the next message is the result
    setup.hub.frame_received(data_event(DAY))
    reply = await command(ws, "9", "get_state")
    assert reply["result"]["state"]["ecus"][ECU]["upstream"]["detail"] == "refused"
    await ws.close()


async def test_resume_with_since_in_history(make_setup: Factory) -> None:
    setup = await make_setup()
    ws = await connect(setup)
    await command(ws, "1", "start_listening")
    setup.hub.frame_received(data_event(DAY))
    seen = [(await receive_json(ws))["seq"] for _ in range(2)]
    await ws.close()
    for i in range(1, 4):
        setup.hub.frame_received(data_event(DAY + timedelta(minutes=5 * i)))
    ws = await connect(setup)
    result = (await command(ws, "2", "start_listening", since=seen[-1]))["result"]
    assert result["state"] is None
    assert result["last_seq"] == seen[-1] + 3
    assert [e["seq"] for e in result["events"]] == [seen[-1] + n for n in (1, 2, 3)]
    assert all(e["event"] == "record" for e in result["events"])
    assert result["events"][-1]["data"]["ecu"]["last_record_at"] == (
        "2024-02-06T11:15:00"
    )
    # nothing missed: no state, no events
    ws2 = await connect(setup)
    result2 = await command(ws2, "3", "start_listening", since=result["last_seq"])
    assert result2["result"]["state"] is None
    assert result2["result"]["events"] == []
    # live events continue after the replay, without gaps
    setup.hub.frame_received(data_event(DAY + timedelta(minutes=20)))
    assert (await receive_json(ws))["seq"] == result["last_seq"] + 1
    assert (await receive_json(ws2))["seq"] == result["last_seq"] + 1
    await ws.close()
    await ws2.close()


async def test_resume_too_old_or_unknown_gets_full_state(make_setup: Factory) -> None:
    setup = await make_setup()
    at = RECEIVED
    for _ in range(HISTORY_SIZE + 5):
        setup.hub.upstream_result(UpstreamReport(ECU, 8995, UpstreamResult.OK, at))
    ws = await connect(setup)
    for message_id, since in (("1", 2), ("2", setup.hub.last_seq + 50)):
        result = (await command(ws, message_id, "start_listening", since=since))[
            "result"
        ]
        assert result["last_seq"] == setup.hub.last_seq
        assert result["events"] == []
        assert result["state"]["ecus"][ECU]["upstream"]["result"] == "ok"
    # the oldest event still in history can be resumed from
    oldest_ok = setup.hub.last_seq - HISTORY_SIZE
    result = (await command(ws, "3", "start_listening", since=oldest_ok))["result"]
    assert result["state"] is None
    assert len(result["events"]) == HISTORY_SIZE
    await ws.close()


# --- slow clients ----------------------------------------------------------------


async def test_slow_client_is_cut_off_others_keep_going(make_setup: Factory) -> None:
    setup = await make_setup(client_queue=16)
    hub = setup.hub
    many = tuple(inverter(f"8060{n:08d}", channels=4) for n in range(100))
    # the first record announces 100 inverters; later ones give one event each
    hub.frame_received(data_event(DAY - timedelta(minutes=5), many))

    fast = await connect(setup)
    start = (await command(fast, "1", "start_listening"))["result"]["last_seq"]
    received: list[int] = []
    progress = asyncio.Condition()

    async def read_fast() -> None:
        while True:
            msg = await fast.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            data = json.loads(msg.data)
            if data["type"] == "event":
                async with progress:
                    received.append(data["seq"])
                    progress.notify_all()

    reader = asyncio.create_task(read_fast())
    slow = await connect(setup)
    await command(slow, "1", "start_listening")  # and then it stops reading
    assert hub.subscriber_count == 2

    sent = 0
    for i in range(5000):
        hub.frame_received(data_event(DAY + timedelta(minutes=5 * i), many))
        sent += 1
        target = hub.last_seq

        def caught_up(target: int = target) -> bool:
            return bool(received) and received[-1] >= target

        async with asyncio.timeout(WAIT), progress:
            await progress.wait_for(caught_up)
        if hub.subscriber_count == 1:
            break
    assert hub.subscriber_count == 1, "the slow client was never cut off"

    # the slow client finds a 4002 close after the data it did not read
    assert await closed_with(slow) == 4002
    # the fast client got every event, in order, and is still served
    assert received == list(range(start + 1, hub.last_seq + 1))
    hub.frame_received(data_event(DAY + timedelta(days=1)))
    async with asyncio.timeout(WAIT), progress:
        await progress.wait_for(lambda: received[-1] == hub.last_seq)
    assert hub.snapshot()["ecus"][ECU]["last_record_at"] == "2024-02-07T11:00:00"
    assert len(hub.stored_timestamps(ECU, limit=10_000)) == sent + 2
    assert setup.api.client_count == 1
    await fast.close()
    await reader


async def test_stop_closes_clients_with_1001(make_setup: Factory) -> None:
    setup = await make_setup()
    ws = await connect(setup)
    await command(ws, "1", "start_listening")
    closing = asyncio.create_task(closed_with(ws))
    await setup.api.stop()
    assert await closing == 1001
