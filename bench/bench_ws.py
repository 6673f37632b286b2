"""Latency from a decoded record to WebSocket clients, with a bare-aiohttp baseline.

Three runs, each with N records and K WebSocket clients (default 1,000 and 10):

* hub: records handed to ``Hub.frame_received`` in the service process; the API
  pushes the ``record`` event to every client.
* baseline: the same event texts (prepared in advance) sent by a bare aiohttp
  WebSocket server to the same clients: the floor for a Python fan-out here.
* relay: an ECU stand-in uploads each record through ``ecu_proxy.relay`` to a
  stand-in EMA that answers after 500 ms; latency runs from the ECU's send to the
  client's receipt of the event.

The service runs in its own process; the clients, the ECU and the EMA stand-ins run
in this one. Both sides read CLOCK_MONOTONIC, which is shared by all processes, so a
latency is "client received" minus "record handed over" with no clock skew. The
ratio hub/baseline is what the hub and the API add over bare aiohttp.

Run: ``python bench/bench_ws.py [--records 1000] [--clients 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ecu_proxy.api import ApiServer
from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.hub import Event, Hub
from ecu_proxy.models import DecodedFrame, Direction, FrameEvent, RelayCounters
from ecu_proxy.options import Options
from loopback import free_port, unthrottled

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = (
    ROOT / "tests" / "fixtures" / "vectors" / "ECU-R_YC600-QS1_1.txt"
).read_bytes()
BASE = datetime(2024, 2, 6, 6, 0, 0)
EMA_HOST = "127.0.0.2"
SERVICE_HOST = "127.0.0.1"
ACK = b"101" + b"20240206112214"


def now_ns() -> int:
    """Return CLOCK_MONOTONIC in ns (the same clock in every process)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def records(count: int) -> list[DecodedFrame]:
    """Return ``count`` decodes of the captured record, five minutes apart."""
    frame = decode_frame(CAPTURE)
    return [
        dataclasses.replace(frame, timestamp=BASE + timedelta(minutes=5 * i))
        for i in range(count)
    ]


def key(frame: DecodedFrame) -> str:
    """Return how a record is recognised in its event (its ECU-local time)."""
    assert frame.timestamp is not None
    return frame.timestamp.isoformat()


def event_for(frame: DecodedFrame) -> FrameEvent:
    """Wrap a decode as the relay would hand it over."""
    return FrameEvent(
        1, 8995, "bench", Direction.ECU_TO_EMA, CAPTURE, frame, datetime.now(UTC)
    )


def options(data_dir: Path, **changes: Any) -> Options:
    """Return service options for the benchmark."""
    return Options(
        api_host=SERVICE_HOST,
        api_port=0,
        data_dir=data_dir,
        capture_frames=True,
        **changes,
    )


# -- the service process ---------------------------------------------------------------


async def read_line() -> str:
    """Read one line from stdin without blocking the loop."""
    return await asyncio.to_thread(sys.stdin.readline)


async def serve_hub(count: int, clients: int, interval: float) -> None:
    """Run hub + API; on "go" feed records and print when each was handed over."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    hub = Hub(options(data_dir), server_id="b" * 32, version="bench")
    await hub.start()
    api = ApiServer(hub, options(data_dir), counters=RelayCounters)
    await api.start()
    print(f"ready {api.port}", flush=True)
    frames = records(count)
    await read_line()  # "go", once every client listens
    sent: dict[str, int] = {}
    for frame in frames:
        sent[key(frame)] = now_ns()
        hub.frame_received(event_for(frame))
        await asyncio.sleep(interval)
    print(json.dumps(sent), flush=True)
    await read_line()
    await api.stop()
    await hub.stop()


async def serve_baseline(count: int, clients: int, interval: float) -> None:
    """Send prepared event texts to every client with bare aiohttp WebSockets."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ws-base-"))
    scratch = Hub(options(data_dir), server_id="b" * 32, version="bench")
    sub = scratch.subscribe(max_queue=count * 4)
    sub.listen(0)
    for frame in records(count):
        scratch.frame_received(event_for(frame))
    texts: list[tuple[str, str]] = []
    while len(texts) < count:
        item = await sub.get()
        if isinstance(item, Event) and item.name == "record":
            texts.append((item.data["ecu"]["last_record_at"], item.json))

    sockets: list[web.WebSocketResponse] = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, SERVICE_HOST, 0)
    await site.start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    await read_line()  # "go", once every client listens
    sent: dict[str, int] = {}
    for name, text in texts:
        sent[name] = now_ns()
        for ws in sockets:
            await ws.send_str(text)
        await asyncio.sleep(interval)
    print(json.dumps(sent), flush=True)
    await read_line()
    await runner.cleanup()


async def serve_relay(clients: int, port: int) -> None:
    """Run hub + API + relay on ``port``, relaying to the stand-in EMA."""
    from ecu_proxy.relay import Relay
    from ecu_proxy.upstream import UpstreamResolver

    data_dir = Path(tempfile.mkdtemp(prefix="bench-ws-relay-"))
    opts = options(
        data_dir,
        listen=SERVICE_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        max_connections=4096,
        connect_timeout=5.0,
    )
    hub = Hub(opts, server_id="b" * 32, version="bench")
    await hub.start()
    upstream = UpstreamResolver(EMA_HOST, (), data_dir, allow_local=True)
    relay = Relay(
        opts, hub, upstream=upstream, cloudless=None, limits=unthrottled(opts)
    )
    await relay.start()
    api = ApiServer(hub, opts, counters=lambda: relay.counters)
    await api.start()
    print(f"ready {api.port}", flush=True)
    await read_line()  # "stop"
    await relay.stop()
    await api.stop()
    await hub.stop()


# -- this process: clients and stand-ins -----------------------------------------------


class Clients:
    """K WebSocket clients that note when each record event arrives."""

    def __init__(self, count: int, expected: int) -> None:
        self.count = count
        self.expected = expected
        self.received: list[dict[str, int]] = [{} for _ in range(count)]
        self.done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._finished = 0

    async def start(self, session: aiohttp.ClientSession, url: str, hub: bool) -> None:
        for n in range(self.count):
            ws = await session.ws_connect(url)
            if hub:
                await ws.receive()  # server_info
                await ws.send_json({"message_id": "1", "command": "start_listening"})
                await ws.receive()  # the result with the state
            self._tasks.append(asyncio.create_task(self._read(ws, self.received[n])))

    async def _read(
        self, ws: aiohttp.ClientWebSocketResponse, got: dict[str, int]
    ) -> None:
        async for msg in ws:
            at = now_ns()
            data = json.loads(msg.data)
            if data.get("event") == "record":
                got[data["data"]["ecu"]["last_record_at"]] = at
                if len(got) == self.expected:
                    self._finished += 1
                    if self._finished == self.count:
                        self.done.set()
        await ws.close()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    """Start the service side in a child process; return it and its API port."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addon")},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        raise RuntimeError(f"service side did not start: {line}")
    return proc, int(line[1])


def tell(proc: subprocess.Popen[str], text: str) -> None:
    """Send a line to the child."""
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def latencies(sent: dict[str, int], clients: Clients) -> list[float]:
    """Return every (record, client) latency in ms."""
    return [
        (got[name] - start) / 1e6
        for got in clients.received
        for name, start in sent.items()
        if name in got
    ]


async def run_pushed(
    mode: str, count: int, clients: int, interval: float
) -> list[float]:
    """Run the hub or baseline mode; return latencies in ms."""
    proc, port = spawn(mode, str(count), str(clients), str(interval))
    try:
        async with aiohttp.ClientSession() as session:
            group = Clients(clients, count)
            await group.start(
                session, f"http://{SERVICE_HOST}:{port}/ws", mode == "hub"
            )
            tell(proc, "go")
            async with asyncio.timeout(120):
                await group.done.wait()
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            sent = json.loads(line)
            tell(proc, "stop")
            await group.stop()
        return latencies(sent, group)
    finally:
        proc.wait(timeout=30)


async def run_relay(
    count: int, clients: int, interval: float, delay: float
) -> list[float]:
    """Upload records through the relay; return ECU-send to event latencies in ms."""
    port = free_port(EMA_HOST, SERVICE_HOST)

    async def ema(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"END\n")
            await asyncio.sleep(delay)
            writer.write(ACK)
            await writer.drain()
            await reader.read()
        writer.close()

    ema_server = await asyncio.start_server(ema, EMA_HOST, port, backlog=4096)
    proc, api_port = spawn("relay", "0", str(clients), "0", str(port))
    frames = records(count)
    sent: dict[str, int] = {}
    uploads: list[asyncio.Task[None]] = []

    async def upload(frame: DecodedFrame) -> None:
        reader, writer = await asyncio.open_connection(SERVICE_HOST, port)
        sent[key(frame)] = now_ns()
        writer.write(encode_data_record(frame))
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readexactly(len(ACK))
        writer.close()

    try:
        async with aiohttp.ClientSession() as session:
            group = Clients(clients, count)
            await group.start(session, f"http://{SERVICE_HOST}:{api_port}/ws", True)
            for frame in frames:
                uploads.append(asyncio.create_task(upload(frame)))
                await asyncio.sleep(interval)
            async with asyncio.timeout(120):
                await group.done.wait()
                await asyncio.gather(*uploads)
            await group.stop()
        return latencies(sent, group)
    finally:
        tell(proc, "stop")
        proc.wait(timeout=30)
        ema_server.close()


def summary(name: str, values: list[float]) -> dict[str, float]:
    """Print and return p50/p99/max of ``values`` (ms)."""
    cuts = statistics.quantiles(values, n=100)
    out = {"p50": statistics.median(values), "p99": cuts[98], "max": max(values)}
    print(
        f"{name:<9} n={len(values):<6} p50={out['p50']:7.3f} ms  "
        f"p99={out['p99']:7.3f} ms  max={out['max']:7.3f} ms"
    )
    return out


async def main(args: argparse.Namespace) -> None:
    interval = args.interval_ms / 1000
    print(
        f"{args.records} records, {args.clients} WebSocket clients, "
        f"one record every {args.interval_ms} ms"
    )
    base = summary(
        "baseline",
        await run_pushed("baseline", args.records, args.clients, interval),
    )
    hub = summary("hub", await run_pushed("hub", args.records, args.clients, interval))
    print(
        f"hub/baseline: p50 x{hub['p50'] / base['p50']:.2f}, "
        f"p99 x{hub['p99'] / base['p99']:.2f}; target p99 < 20 ms: "
        f"{'met' if hub['p99'] < 20 else 'MISSED'}"
    )
    relay_interval = args.relay_interval_ms / 1000
    relay = summary(
        "relay",
        await run_relay(args.records, args.clients, relay_interval, args.ema_delay),
    )
    print(
        f"relay (EMA answers after {args.ema_delay * 1000:.0f} ms) / hub: "
        f"p50 x{relay['p50'] / hub['p50']:.2f}, p99 x{relay['p99'] / hub['p99']:.2f}; "
        f"target p99 < 20 ms: {'met' if relay['p99'] < 20 else 'MISSED'}"
    )


def parse() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--relay-interval-ms", type=float, default=10.0)
    parser.add_argument("--ema-delay", type=float, default=0.5)
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = parse()
    if ARGS.serve:
        mode, *rest = ARGS.serve
        if mode == "hub":
            asyncio.run(serve_hub(int(rest[0]), int(rest[1]), float(rest[2])))
        elif mode == "baseline":
            asyncio.run(serve_baseline(int(rest[0]), int(rest[1]), float(rest[2])))
        else:
            asyncio.run(serve_relay(int(rest[1]), int(rest[3])))
    else:
        asyncio.run(main(ARGS))
