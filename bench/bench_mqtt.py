"""What MQTT output costs the relay, and how fast a record reaches the broker.

Three services in their own processes, each relaying to a stand-in EMA (its own
process on 127.0.0.2) that acknowledges every record at once:

* relay: ``ecu_proxy.relay`` with a listener that only counts decoded frames;
* hub: the relay feeding the hub (live state, events), as the service runs;
* mqtt: the same plus the MQTT publisher connected to a local Mosquitto.

Throughput: an ECU stand-in sends 100-inverter records back to back on one
connection, waiting for each acknowledgement, in rounds that alternate between
the services so drift hits them equally; records/s per service are the medians
of the rounds. Latency: at one record every 100 ms to the mqtt service, the time
from the ECU's send to the arrival at a subscriber of the record's ECU state
message and of its last inverter's state message (CLOCK_MONOTONIC, shared by all
processes).

Run: ``python bench/bench_mqtt.py [--records 300] [--rounds 5] [--latency 300]``
(needs ``mosquitto`` on PATH or in /usr/sbin).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

from ecu_proxy.encoder import encode_data_record
from ecu_proxy.hub import Hub
from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter
from ecu_proxy.mqtt import MqttPublisher
from ecu_proxy.options import Options
from ecu_proxy.relay import Relay
from ecu_proxy.upstream import UpstreamResolver
from loopback import free_port

if TYPE_CHECKING:
    from ecu_proxy.models import FrameEvent, UpstreamReport

ROOT = Path(__file__).resolve().parent.parent
EMA_HOST = "127.0.0.2"
RELAY_HOST = "127.0.0.1"
ACK = b"10120240206112214"
ECU_ID = "216000064136"
INVERTERS = 100
BASE = datetime(2024, 2, 6, 6, 0, 0)
PREFIX = "bench"
MODES = ("relay", "hub", "mqtt")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def now_ns() -> int:
    """Return CLOCK_MONOTONIC in ns (the same clock in every process)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def record(index: int) -> bytes:
    """Return data record ``index`` of a 100-inverter ECU, five minutes apart."""
    inverters = tuple(
        Inverter(
            id=f"4080{n:08d}",
            type_code="07",
            family="YC600",
            ac_voltage_v=230.0,
            frequency_hz=50.0,
            temperature_c=30.0,
            power_w=400.0,
            round_energy_wh=33.0,
            channels=(
                Channel(1, 33.8, 6.0, 200.0, 16.5),
                Channel(2, 33.9, 6.0, 200.0, 16.5),
            ),
        )
        for n in range(INVERTERS)
    )
    frame = DecodedFrame(
        kind=FrameKind.DATA,
        version="18",
        length=0,
        ecu_id=ECU_ID,
        ecu_model="ECU-R",
        timestamp=BASE + timedelta(minutes=5 * index),
        power_w=40000.0,
        round_energy_kwh=3.3,
        lifetime_energy_kwh=10000.0 + index,
        inverter_count=INVERTERS,
        more_records=False,
        inverters=inverters,
    )
    return encode_data_record(frame)


def stamp(index: int) -> str:
    """Return ``last_record_at`` of record ``index`` as the state shows it."""
    return (BASE + timedelta(minutes=5 * index)).isoformat()


# -- child processes ----------------------------------------------------------


async def serve_ema(ports: list[int], size: int) -> None:
    """Acknowledge every ``size`` bytes received (a stand-in EMA)."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readexactly(size)
                writer.write(ACK)
        writer.close()

    servers = [await asyncio.start_server(handle, EMA_HOST, p) for p in ports]
    print("ready", flush=True)
    async with contextlib.AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(server)
        await asyncio.Event().wait()


class CountingListener:
    """Count decoded frames; the relay alone, without the hub."""

    frames = 0

    def frame_received(self, event: FrameEvent) -> None:
        """Count a frame."""
        self.frames += 1

    def upstream_result(self, report: UpstreamReport) -> None:
        """Ignore upload results."""


async def serve(mode: str, port: int, broker_port: int) -> None:
    """Run one service variant relaying RELAY_HOST:port to the stand-in EMA."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-mqtt-{mode}-"))
    options = Options(
        listen=RELAY_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        data_dir=data_dir,
        capture_frames=False,
        mqtt_enabled=mode == "mqtt",
        mqtt_host="127.0.0.1",
        mqtt_port=broker_port,
        mqtt_topic_prefix=PREFIX,
    )
    upstream = UpstreamResolver(EMA_HOST, (), data_dir, allow_local=True)
    hub = Hub(options, server_id="b" * 32, version="bench")
    listener: Hub | CountingListener = CountingListener() if mode == "relay" else hub
    if mode != "relay":
        await hub.start()
    publisher = MqttPublisher(hub, options)
    if mode == "mqtt":
        publisher.start()
        await publisher.connected.wait()
    relay = Relay(options, listener, upstream=upstream, cloudless=None)
    await relay.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start this script as a child and wait until it says it is ready."""
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'addon'}:{ROOT / 'bench'}"},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{args[0]} did not start")
    return proc


def start_mosquitto(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """Start a Mosquitto on loopback and wait until it accepts connections."""
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        "max_queued_messages 100000\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- measuring ------------------------------------------------------------------


async def throughput(port: int, first: int, count: int) -> float:
    """Send ``count`` records back to back; return records per second."""
    reader, writer = await asyncio.open_connection(RELAY_HOST, port)
    writer.get_extra_info("socket").setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    frames = [record(first + i) for i in range(count)]
    start = time.perf_counter()
    for frame in frames:
        writer.write(frame)
        await reader.readexactly(len(ACK))
    elapsed = time.perf_counter() - start
    writer.close()
    await writer.wait_closed()
    return count / elapsed


async def latency(
    port: int, broker_port: int, backlog: int, first: int, count: int, pace: float
) -> tuple[list[float], list[float]]:
    """Return record -> ECU state and record -> last inverter state latencies (ms).

    Records the publisher coalesced (a newer one came before it was sent) have no
    latency; the caller reports how many arrived.
    """
    sent: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    to_ecu: list[float] = []
    to_last: list[float] = []
    last_inverter = f"4080{INVERTERS - 1:08d}"
    ecu_topic = f"{PREFIX}/{ECU_ID}/state"
    last_topic = f"{PREFIX}/{ECU_ID}/{last_inverter}/state"
    done = asyncio.Event()
    settled = asyncio.Event()
    final = stamp(first + count - 1)
    async with aiomqtt.Client("127.0.0.1", broker_port) as client:
        await client.subscribe(ecu_topic, qos=1)
        await client.subscribe(last_topic, qos=1)

        async def receive() -> None:
            async for message in client.messages:
                at = now_ns()
                assert isinstance(message.payload, bytes)
                key = json.loads(message.payload)["last_record_at"]
                is_last = str(message.topic) == last_topic
                if key == stamp(backlog) and is_last:
                    settled.set()  # the throughput rounds' backlog is out
                if key not in sent or (str(message.topic), key) in seen:
                    continue  # an older record, or a re-send (upload result)
                seen.add((str(message.topic), key))
                ms = (at - sent[key]) / 1e6
                (to_last if is_last else to_ecu).append(ms)
                if key == final and is_last:
                    done.set()

        receiver = asyncio.create_task(receive())
        async with asyncio.timeout(60):
            await settled.wait()
        reader, writer = await asyncio.open_connection(RELAY_HOST, port)
        frames = [(stamp(first + i), record(first + i)) for i in range(count)]
        for key, frame in frames:
            sent[key] = now_ns()
            writer.write(frame)
            await reader.readexactly(len(ACK))
            await asyncio.sleep(pace)
        async with asyncio.timeout(30):
            await done.wait()
        receiver.cancel()
        writer.close()
    return to_ecu, to_last


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    """Run the comparison and print a Markdown table."""
    folder = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker_port = free_port("127.0.0.1")
    ports = {mode: free_port(RELAY_HOST, EMA_HOST) for mode in MODES}
    size = len(record(0))
    procs: list[subprocess.Popen[Any]] = [start_mosquitto(folder, broker_port)]
    try:
        procs.append(
            spawn("--ema", ",".join(str(p) for p in ports.values()), str(size))
        )
        for mode in MODES:
            procs.append(spawn("--serve", mode, str(ports[mode]), str(broker_port)))
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        index = backlog = 0
        for round_no in range(args.rounds):
            order = MODES if round_no % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                rates[mode].append(await throughput(ports[mode], index, args.records))
                index += args.records
                if mode == "mqtt":
                    backlog = index - 1  # the last record the mqtt service got
        to_ecu, to_last = await latency(
            ports["mqtt"], broker_port, backlog, index, args.latency, args.pace
        )
    finally:
        for proc in reversed(procs):  # the broker last
            proc.kill()
            proc.wait()
    median = {mode: statistics.median(rates[mode]) for mode in MODES}
    print(
        f"{INVERTERS}-inverter records ({size} bytes), {args.rounds} rounds of "
        f"{args.records} records per service"
    )
    print()
    print("| Service | records/s (median) | vs relay alone |")
    print("| --- | --- | --- |")
    for mode in MODES:
        print(f"| {mode} | {median[mode]:.0f} | {median[mode] / median['relay']:.3f} |")
    lost = median["hub"] - median["mqtt"]
    print()
    print(
        f"MQTT costs {lost / median['relay'] * 100:.1f} % of the relay's throughput "
        f"({lost / median['hub'] * 100:.1f} % of relay+hub)"
    )
    print()
    print(
        f"Latency at one record every {args.pace * 1000:.0f} ms: {len(to_last)} of "
        f"{args.latency} records published (the rest coalesced, latest wins):"
    )
    print()
    print("| record -> | p50 | p99 | max |")
    print("| --- | --- | --- | --- |")
    for name, values in (("ECU state", to_ecu), ("last inverter state", to_last)):
        print(
            f"| {name} | {pct(values, 0.5):.2f} ms | {pct(values, 0.99):.2f} ms "
            f"| {max(values):.2f} ms |"
        )


def main() -> None:
    """Run the benchmark, or a child role."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency", type=int, default=300)
    parser.add_argument("--pace", type=float, default=0.1)
    parser.add_argument("--ema", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ema:
        asyncio.run(
            serve_ema([int(p) for p in args.ema[0].split(",")], int(args.ema[1]))
        )
    elif args.serve:
        mode, port, broker = args.serve
        asyncio.run(serve(mode, int(port), int(broker)))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
