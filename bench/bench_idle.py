"""Memory of the relay process holding many idle ECU connections, each with its EMA leg.

A stand-in EMA (its own process, 127.0.0.2:P) accepts and holds connections; the
relay runs in its own process on 127.0.0.1:P; this script opens N idle client
connections and waits until the EMA has accepted N upstream connections. The relay
process's resident memory (VmRSS from /proc) is read before and after, so the cost
per held connection pair is the difference.

Run: ``python bench/bench_idle.py [--connections 1000]``. Target: RSS < 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ecu_proxy.options import Options
from ecu_proxy.relay import Relay
from ecu_proxy.upstream import UpstreamResolver
from loopback import free_port, unthrottled

if TYPE_CHECKING:
    from ecu_proxy.models import FrameEvent, UpstreamReport

ROOT = Path(__file__).resolve().parent.parent
EMA_HOST = "127.0.0.2"
RELAY_HOST = "127.0.0.1"


def raise_fd_limit() -> None:
    """Allow as many open files as the hard limit permits."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve_ema(port: int, expected: int) -> None:
    """Accept and hold connections; print "accepted N" once N have arrived."""
    held: list[asyncio.StreamWriter] = []

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        held.append(writer)
        if len(held) == expected:
            print(f"accepted {len(held)}", flush=True)
        await reader.read()

    server = await asyncio.start_server(handle, EMA_HOST, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def serve_relay(port: int, connections: int) -> None:
    """Run the relay forwarding to the stand-in EMA."""

    class QuietListener:
        def frame_received(self, event: FrameEvent) -> None:
            pass

        def upstream_result(self, report: UpstreamReport) -> None:
            pass

    data_dir = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    options = Options(
        listen=RELAY_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        data_dir=data_dir,
        max_connections=connections + 10,
        idle_timeout=3600.0,
    )
    upstream = UpstreamResolver(EMA_HOST, (), data_dir, allow_local=True)
    relay = Relay(
        options,
        QuietListener(),
        upstream=upstream,
        cloudless=None,
        limits=unthrottled(options),
    )
    await relay.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def spawn(args: list[str]) -> subprocess.Popen[str]:
    """Start this script as a child and wait for its "ready" line."""
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addon")},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"child {args} did not start")
    return proc


def rss_kb(pid: int) -> tuple[int, int]:
    """Return (VmRSS, VmHWM) of a process in kB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def main() -> None:
    """Run the measurement, or a child role."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--ema", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_fd_limit()
    if args.ema:
        asyncio.run(serve_ema(args.ema, args.connections))
        return
    if args.relay:
        asyncio.run(serve_relay(args.relay, args.connections))
        return

    count = args.connections
    port = free_port(EMA_HOST, RELAY_HOST)
    ema = spawn(["--ema", str(port), "--connections", str(count)])
    relay = spawn(["--relay", str(port), "--connections", str(count)])
    clients: list[socket.socket] = []
    try:
        before, _ = rss_kb(relay.pid)
        started = time.monotonic()
        for _ in range(count):
            clients.append(socket.create_connection((RELAY_HOST, port)))
        assert ema.stdout is not None
        line = ema.stdout.readline().strip()
        if line != f"accepted {count}":
            raise RuntimeError(f"EMA stand-in said {line!r}")
        held_after = time.monotonic() - started
        rss, hwm = rss_kb(relay.pid)
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        print(f"idle ECU connections held: {count} (each with its EMA connection)")
        print(f"all upstream legs open after {held_after:.2f} s")
        print(f"relay RSS before: {before / 1024:.1f} MB")
        print(f"relay RSS holding {count}: {rss / 1024:.1f} MB (peak {hwm / 1024:.1f})")
        per_pair = (rss - before) / count
        print(f"per connection pair: {per_pair:.1f} kB")
        print(f"RSS < 100 MB: {'yes' if rss < 100 * 1024 else 'NO'}")
    finally:
        for client in clients:
            client.close()
        for child in (relay, ema):
            child.terminate()
        for child in (relay, ema):
            child.wait(10)


if __name__ == "__main__":
    main()
