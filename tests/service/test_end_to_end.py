"""The whole service on loopback: simulated ECU, relay, stand-in EMA, API client."""

import asyncio
import dataclasses
import json
import statistics
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from stand_ins import (
    ACK,
    CAPTURE,
    ECU_HOST,
    EMA_HOST,
    VECTORS,
    EmaConnection,
    FakeEcu,
    StandInEma,
    free_port_pair,
)

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.options import Mode, Options
from ecu_proxy.service import Service

EMA_DELAY = 2.0  # the stand-in EMA's think time: the scenario under test
ROUND = timedelta(minutes=5)


def _options(tmp_path: Path, port: int, **changes: Any) -> Options:
    return Options(
        listen=ECU_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path,
        connect_timeout=5.0,
    ).replace(**changes)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _listen(
    http: aiohttp.ClientSession, service: Service
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"http://127.0.0.1:{service.api_port}/ws")
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "server_info"
    assert hello["server_id"] == service.server_id
    await ws.send_json({"message_id": "1", "command": "start_listening"})
    result = await ws.receive_json(timeout=5)
    assert result["success"] is True
    return ws


async def _next_event(ws: aiohttp.ClientWebSocketResponse, name: str) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=10)
        if message.get("type") == "event" and message["event"] == name:
            return dict(message["data"])


async def test_event_arrives_before_ema_answers(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port_pair()
    loop = asyncio.get_running_loop()
    answered_at: list[float] = []

    async def slow_ema(conn: EmaConnection) -> None:
        await conn.read_frame()
        await asyncio.sleep(EMA_DELAY)
        answered_at.append(loop.time())
        await conn.send(ACK)
        await conn.read_to_eof()

    ema = StandInEma(port, handler=slow_ema)
    await ema.start()
    service = Service(_options(tmp_path, port), allow_local_upstream=True)
    await service.start()
    try:
        ws = await _listen(http, service)
        ecu = await FakeEcu.connect(service.relay_ports[port])
        sent_at = loop.time()
        await ecu.send(CAPTURE)
        record = await _next_event(ws, "record")
        event_at = loop.time()
        reply = await ecu.read_exactly(len(ACK), within=EMA_DELAY + 5)
        assert reply == ACK
        assert answered_at, "EMA never answered"
        assert sent_at < event_at < answered_at[0]
        assert record["ecu"]["power_w"] == 190
        status = await _next_event(ws, "ecu_status")
        assert status["upstream"]["result"] == "ok"
        assert status["upstream"]["rtt_ms"] >= EMA_DELAY * 1000 * 0.9
        await ecu.close()
        await ws.close()
    finally:
        await service.stop()
        await ema.stop()


async def test_cloudless_acknowledges_and_serves_state(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port_pair()
    service = Service(_options(tmp_path, port, mode=Mode.CLOUDLESS))
    await service.start()
    try:
        ecu = await FakeEcu.connect(service.relay_ports[port])
        await ecu.send(CAPTURE)
        reply = await ecu.read_exactly(17)
        # "1" accepted, "01" one timestamp: the record's own, which we stored.
        assert reply == b"10120240206112214"
        await ecu.close()
        url = f"http://127.0.0.1:{service.api_port}/api/state"
        async with http.get(url) as resp:
            state = await resp.json()
        ecu_state = state["ecus"]["216000064136"]
        assert ecu_state["lifetime_energy_kwh"] == 2127.9
        assert ecu_state["upstream"]["result"] == "cloudless"
        assert set(ecu_state["inverters"]) == {"408000111178", "806000011223"}
    finally:
        await service.stop()
    # State was flushed on stop and comes back on the next start.
    saved = json.loads((tmp_path / "state.json").read_text())
    assert "216000064136" in json.dumps(saved)


async def test_unreachable_ema_still_publishes_and_sends_no_reply(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port_pair()  # nothing listens on EMA_HOST:port -> refused
    service = Service(_options(tmp_path, port), allow_local_upstream=True)
    await service.start()
    try:
        ws = await _listen(http, service)
        ecu = await FakeEcu.connect(service.relay_ports[port])
        await ecu.send(CAPTURE)
        record = await _next_event(ws, "record")
        assert record["ecu"]["power_w"] == 190
        # The ECU gets no bytes at all, so it keeps the record and re-sends it later.
        assert await ecu.read_to_eof() == b""
        status = await _next_event(ws, "ecu_status")
        assert status["upstream"]["result"] == "unreachable"
        await ecu.close()
        await ws.close()
    finally:
        await service.stop()


def _numbered_records(count: int) -> list[bytes]:
    """Return the 80-inverter vector re-timed every 5 minutes: distinct records."""
    raw = (VECTORS / "synthetic" / "ECU-C_QS1_1.txt").read_bytes()
    base = decode_frame(raw.rstrip(b"\n"))
    assert base.timestamp is not None
    return [
        encode_data_record(
            dataclasses.replace(base, timestamp=base.timestamp + n * ROUND)
        )
        for n in range(count)
    ]


async def test_slow_websocket_client_is_cut_off_without_slowing_the_relay(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port_pair()
    ema = StandInEma(port)  # acknowledges every frame at once
    await ema.start()
    service = Service(_options(tmp_path, port), allow_local_upstream=True)
    await service.start()
    records = iter(_numbered_records(4000))
    loop = asyncio.get_running_loop()

    async def exchange(ecu: FakeEcu) -> float:
        start = loop.time()
        await ecu.send(next(records))
        assert await ecu.read_exactly(len(ACK)) == ACK
        return loop.time() - start

    try:
        ecu = await FakeEcu.connect(service.relay_ports[port])
        baseline = [await exchange(ecu) for _ in range(50)]
        # A client that subscribes and then never reads again.
        slow = await http.ws_connect(
            f"http://127.0.0.1:{service.api_port}/ws", max_msg_size=0
        )
        assert (await slow.receive_json(timeout=5))["type"] == "server_info"
        await slow.send_json({"message_id": "1", "command": "start_listening"})
        assert (await slow.receive_json(timeout=5))["success"] is True
        assert service.hub.subscriber_count == 1
        stalled: list[float] = []
        while service.hub.subscriber_count and len(stalled) < 3900:
            stalled.append(await exchange(ecu))
        assert service.hub.subscriber_count == 0, "the slow client was never cut off"
        # The relay kept its pace while the client stalled and was cut off.
        assert statistics.median(stalled) <= 3 * statistics.median(baseline) + 0.005
        close_code = None
        async with asyncio.timeout(10):
            async for message in slow:
                if message.type is aiohttp.WSMsgType.CLOSE:
                    break
            close_code = slow.close_code
        assert close_code == 4002
        await ecu.close()
    finally:
        await service.stop()
        await ema.stop()
