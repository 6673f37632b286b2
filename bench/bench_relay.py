"""Latency the relay adds to an ECU upload, compared with socat in the same run.

Three paths to one stand-in EMA (its own process, 127.0.0.2:P) that answers each
303-byte captured record with a 17-byte acknowledgement:

* direct: client -> 127.0.0.2:P (the baseline);
* relay: client -> our relay on 127.0.0.1:P (its own process) -> EMA;
* socat: client -> ``socat TCP-LISTEN`` on 127.0.0.3:P (fork mode) -> EMA.

The client measures request -> full reply round trips with blocking sockets,
interleaving the paths so drift hits them equally. "Added" latency is a path's
percentile minus the direct path's percentile. Two workloads: many exchanges on one
persistent connection, and one new connection per exchange (what an ECU-R does).

Run: ``python bench/bench_relay.py [--exchanges 2000]`` (needs socat on PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecu_proxy.options import Options
from ecu_proxy.relay import Relay
from ecu_proxy.upstream import UpstreamResolver
from loopback import free_port, unthrottled

if TYPE_CHECKING:
    from ecu_proxy.models import FrameEvent, UpstreamReport

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = (
    ROOT / "tests" / "fixtures" / "vectors" / "ECU-R_YC600-QS1_1.txt"
).read_bytes()
ACK = b"10120240206112214"
EMA_HOST = "127.0.0.2"
RELAY_HOST = "127.0.0.1"
SOCAT_HOST = "127.0.0.3"


# -- child processes ----------------------------------------------------------


async def serve_ema(port: int) -> None:
    """Answer every 303 bytes received with ACK (a stand-in EMA)."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readexactly(len(CAPTURE))
                writer.write(ACK)
        writer.close()

    server = await asyncio.start_server(handle, EMA_HOST, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def serve_relay(port: int) -> None:
    """Run our relay on RELAY_HOST:port forwarding to the stand-in EMA."""

    class CountingListener:
        frames = 0

        def frame_received(self, event: FrameEvent) -> None:
            self.frames += 1

        def upstream_result(self, report: UpstreamReport) -> None:
            pass

    data_dir = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    options = Options(
        listen=RELAY_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        data_dir=data_dir,
        max_connections=4096,
    )
    upstream = UpstreamResolver(EMA_HOST, (), data_dir, allow_local=True)
    relay = Relay(
        options,
        CountingListener(),
        upstream=upstream,
        cloudless=None,
        limits=unthrottled(options),
    )
    await relay.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# With two or more CPUs the forwarders (our relay, socat) share one core and the
# client and stand-in EMA the other, so both forwarders meet the same contention
# instead of whatever the scheduler happens to do in each round.
CPUS = sorted(os.sched_getaffinity(0))
PINNED = len(CPUS) >= 2
ENDS_CPU = {CPUS[0]}
FORWARDER_CPU = {CPUS[-1]}


def pin(pid: int, cpus: set[int]) -> None:
    """Pin a process (0: this one) to ``cpus`` when pinning."""
    if PINNED:
        os.sched_setaffinity(pid, cpus)


def spawn(role: str, port: int) -> subprocess.Popen[str]:
    """Start this script as a child in the given role and wait until it listens."""
    proc = subprocess.Popen(
        [sys.executable, __file__, f"--{role}", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addon")},
    )
    pin(proc.pid, ENDS_CPU if role == "ema" else FORWARDER_CPU)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{role} did not start")
    return proc


def wait_listening(host: str, port: int, within: float = 10.0) -> None:
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- measuring ------------------------------------------------------------------


def connect(host: str, port: int) -> socket.socket:
    """Open a client connection with Nagle off."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def exchange(sock: socket.socket) -> int:
    """Send the record, read the whole reply; return the round trip in ns."""
    start = time.perf_counter_ns()
    sock.sendall(CAPTURE)
    got = 0
    while got < len(ACK):
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("closed before the reply was complete")
        got += len(chunk)
    return time.perf_counter_ns() - start


def persistent(targets: dict[str, tuple[str, int]], count: int) -> dict[str, list[int]]:
    """Round trips on one long-lived connection per path, interleaved."""
    socks = {name: connect(*addr) for name, addr in targets.items()}
    try:
        for _ in range(200):  # warm-up
            for sock in socks.values():
                exchange(sock)
        samples: dict[str, list[int]] = {name: [] for name in targets}
        for _ in range(count):
            for name, sock in socks.items():
                samples[name].append(exchange(sock))
        return samples
    finally:
        for sock in socks.values():
            sock.close()


def per_connection(
    targets: dict[str, tuple[str, int]], count: int
) -> dict[str, list[int]]:
    """Connect, exchange once, close: the whole time per exchange, interleaved."""
    samples: dict[str, list[int]] = {name: [] for name in targets}
    for i in range(count + 50):
        for name, addr in targets.items():
            start = time.perf_counter_ns()
            with connect(*addr) as sock:
                exchange(sock)
            if i >= 50:
                samples[name].append(time.perf_counter_ns() - start)
    return samples


def pct(values: list[int], q: float) -> float:
    """Return the q-th percentile in microseconds."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
    return ordered[index] / 1000


def report(title: str, samples: dict[str, list[int]]) -> None:
    """Print percentiles, added latency over direct, and relay/socat ratios."""
    print(f"\n{title} ({len(samples['direct'])} exchanges per path)")
    print(f"{'path':8} {'p50 us':>9} {'p99 us':>9} {'mean us':>9}")
    for name, values in samples.items():
        mean = statistics.fmean(values) / 1000
        print(f"{name:8} {pct(values, 50):9.1f} {pct(values, 99):9.1f} {mean:9.1f}")
    added = {
        name: (
            pct(samples[name], 50) - pct(samples["direct"], 50),
            pct(samples[name], 99) - pct(samples["direct"], 99),
        )
        for name in ("relay", "socat")
    }
    for name, (p50, p99) in added.items():
        print(f"added by {name:5}: p50 {p50:8.1f} us   p99 {p99:8.1f} us")
    socat50, socat99 = added["socat"]
    relay50, relay99 = added["relay"]
    if socat50 > 0:
        print(f"relay/socat added p50 ratio: {relay50 / socat50:.2f} (target <= 1.5)")
    if socat99 > 0:
        print(f"relay/socat added p99 ratio: {relay99 / socat99:.2f}")
    print(f"relay added p99 < 2 ms: {'yes' if relay99 < 2000 else 'NO'}")


def report_rounds(rounds: list[dict[str, list[int]]]) -> None:
    """Print the added p50 of each round and the median relay/socat ratio.

    Rounds a few seconds apart see different background load; the median of the
    per-round ratios is steadier than one long run.
    """
    ratios: list[float] = []
    print(f"\nPer round ({len(rounds)} rounds): added p50, relay vs socat")
    for n, samples in enumerate(rounds, 1):
        direct = pct(samples["direct"], 50)
        relay = pct(samples["relay"], 50) - direct
        socat = pct(samples["socat"], 50) - direct
        ratio = relay / socat if socat > 0 else float("inf")
        ratios.append(ratio)
        line = f"round {n}: relay {relay:7.1f} us  socat {socat:7.1f} us"
        print(f"{line}  ratio {ratio:5.2f}")
    median = statistics.median(ratios)
    verdict = "met" if median <= 1.5 else "NOT met"
    print(
        f"median relay/socat added p50 ratio: {median:.2f} (target <= 1.5: {verdict})"
    )


def main() -> None:
    """Run the comparison, or a child role."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument(
        "--rounds", type=int, default=5, help="persistent-connection rounds"
    )
    parser.add_argument("--ema", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.ema:
        asyncio.run(serve_ema(args.ema))
        return
    if args.relay:
        asyncio.run(serve_relay(args.relay))
        return

    socat = shutil.which("socat")
    if socat is None:
        sys.exit("socat is not installed (Debian: apt-get install socat)")
    port = free_port(EMA_HOST, RELAY_HOST, SOCAT_HOST)
    children: list[subprocess.Popen[Any]] = [spawn("ema", port), spawn("relay", port)]
    children.append(
        subprocess.Popen(
            [
                socat,
                f"TCP-LISTEN:{port},bind={SOCAT_HOST},reuseaddr,fork",
                f"TCP:{EMA_HOST}:{port},nodelay",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    pin(children[-1].pid, FORWARDER_CPU)  # socat's forks inherit it
    pin(0, ENDS_CPU)  # the measuring client
    try:
        wait_listening(SOCAT_HOST, port)
        targets = {
            "direct": (EMA_HOST, port),
            "relay": (RELAY_HOST, port),
            "socat": (SOCAT_HOST, port),
        }
        print(
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; record "
            f"{len(CAPTURE)} B, reply {len(ACK)} B"
        )
        if PINNED:
            print(
                f"pinned: client and EMA on CPU {min(ENDS_CPU)}, "
                f"relay and socat on CPU {min(FORWARDER_CPU)}"
            )
        rounds = [persistent(targets, args.exchanges) for _ in range(args.rounds)]
        pooled = {name: [v for r in rounds for v in r[name]] for name in targets}
        report("Persistent connection, all rounds pooled", pooled)
        report_rounds(rounds)
        report("New connection per exchange", per_connection(targets, args.connections))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)


if __name__ == "__main__":
    main()
