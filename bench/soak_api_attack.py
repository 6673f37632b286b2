"""Memory and health latency of a real service process under the API attacks.

The service runs as its own process (cloudless mode, loopback ports, a soft
descriptor limit of 1,024 like a default container). Its frame buffer is first
filled with 200 frames of garbage, the worst case for ``/api/frames``. Then, one
after the other:

* one WebSocket client sends 1,000 ``get_frames`` and never reads;
* 150 WebSocket clients each send 100 ``get_frames`` and never read;
* 40 HTTP clients request ``/api/frames`` and never read;
* 1,100 connections send half a request head and stall (from 40 loopback
  addresses, so the per-address cap does not hide the global one).

Meanwhile a prober asks ``/api/health`` every 100 ms on a new connection. The
service's resident memory (VmRSS) is sampled every 20 ms. Baseline = the same
service idle after the frame buffer was filled, in the same run.

Run: ``.venv/bin/python bench/soak_api_attack.py``. Target: RSS < 150 MB throughout,
health answered throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GARBAGE_FRAMES = 200
GARBAGE_BYTES = 32_000
SERVICE_FD_LIMIT = 1024


def rss_mb(pid: int) -> float:
    """Return the resident memory of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Phase:
    """What one attack did to the service."""

    name: str
    rss: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_failures: int = 0
    log_bytes: int = 0
    note: str = ""

    def row(self, baseline_rss: float, baseline_health: float) -> str:
        peak = max(self.rss) if self.rss else float("nan")
        p50 = statistics.median(self.health_ms) if self.health_ms else float("nan")
        worst = max(self.health_ms) if self.health_ms else float("nan")
        return (
            f"| {self.name} | {peak:.1f} MB | x{peak / baseline_rss:.2f} | "
            f"{p50:.1f} ms / {worst:.1f} ms | x{p50 / baseline_health:.1f} | "
            f"{self.health_failures} | {self.log_bytes:,} B | {self.note} |"
        )


class Service:
    """The service under test, in its own process."""

    def __init__(self, data_dir: Path) -> None:
        self.relay_port = free_port(HOST)
        self.api_port = free_port(HOST)
        self.log = data_dir / "service.log"
        self._log_file = self.log.open("wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "addon"))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ecu_proxy",
                "serve",
                "--mode",
                "cloudless",
                "--listen",
                HOST,
                "--ports",
                str(self.relay_port),
                "--api-host",
                HOST,
                "--api-port",
                str(self.api_port),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=lambda: resource.setrlimit(  # noqa: PLW1509 - no threads yet
                resource.RLIMIT_NOFILE,
                (SERVICE_FD_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
            ),
        )

    def log_size(self) -> int:
        return self.log.stat().st_size

    def stop(self) -> None:
        self.proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
        self._log_file.close()


async def http_get(port: int, path: str, limit_s: float = 30.0) -> tuple[int, bytes]:
    """Send one GET on a new connection; return status and body."""
    async with asyncio.timeout(limit_s):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
        )
        data = await reader.read()
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def wait_ready(service: Service) -> None:
    async with asyncio.timeout(30):
        while True:
            with suppress(OSError):
                status, _ = await http_get(service.api_port, "/api/health", 2)
                if status in (200, 503):
                    return
            await asyncio.sleep(0.1)


async def fill_frames(service: Service) -> tuple[int, int]:
    """Send garbage lines to the relay; return (captured frames, worst reply size)."""
    _, writer = await asyncio.open_connection(HOST, service.relay_port)
    rng = os.urandom
    worst = 0
    for _ in range(GARBAGE_FRAMES):
        # A run of garbage ends at the next "APS": one captured frame per chunk.
        chunk = b"APS" + rng(GARBAGE_BYTES).replace(b"APS", b"ap5")
        writer.write(chunk)
        # What the frame would have been as JSON text before answers were bounded.
        worst += len(json.dumps(chunk[: 32 * 1024].decode("ascii", "backslashreplace")))
        await writer.drain()
    writer.write(b"APSEND-OF-FILLAPS")  # the newest frame once all went through
    await writer.drain()
    async with asyncio.timeout(60):
        while True:
            _, body = await http_get(service.api_port, "/api/frames?limit=1")
            newest = json.loads(body)["frames"]
            if newest and newest[-1]["raw"].startswith("APSEND-OF-FILL"):
                break
            await asyncio.sleep(0.1)
    writer.close()
    _, body = await http_get(service.api_port, "/api/frames")
    frames = json.loads(body)
    return len(frames["frames"]), worst


async def raw_websocket(
    port: int, local: str = HOST
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket that reads nothing (a tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((local, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


def masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def send_unread(writer: asyncio.StreamWriter, count: int) -> int:
    """Send get_frames requests until done or cut off; return how many went out."""
    frame = masked_text('{"message_id":1,"command":"get_frames"}')
    sent = 0
    for _ in range(count):
        if writer.is_closing():
            break
        try:
            writer.write(frame)
            async with asyncio.timeout(2):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            break
        sent += 1
    return sent


async def attack_one_ws(service: Service) -> str:
    _, writer = await raw_websocket(service.api_port)
    sent = await send_unread(writer, 1000)
    await asyncio.sleep(3)  # let the service act on what it received
    writer.close()
    return f"{sent} requests went out before the server stopped taking them"


async def attack_many_ws(service: Service) -> str:
    # from 40 addresses: one address may hold only 32 connections
    clients = [
        await raw_websocket(service.api_port, f"127.0.3.{n % 40 + 1}")
        for n in range(150)
    ]
    sent = await asyncio.gather(*(send_unread(w, 100) for _, w in clients))
    await asyncio.sleep(3)
    for _, writer in clients:
        writer.close()
    return f"{sum(sent)} requests went out"


async def attack_http_unread(service: Service) -> str:
    writers = []
    for n in range(40):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((f"127.0.1.{n + 1}", 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, service.api_port))
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET /api/frames HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        writers.append(writer)
    await asyncio.sleep(35)  # past the 30 s send timeout
    for writer in writers:
        writer.close()
    return "held 35 s"


async def attack_half_sent(service: Service) -> str:
    writers = []
    refused = 0
    for n in range(1100):
        try:
            _, writer = await asyncio.open_connection(
                HOST, service.api_port, local_addr=(f"127.0.2.{n % 40 + 1}", 0)
            )
        except OSError:
            refused += 1
            continue
        writer.write(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        writers.append(writer)
    await asyncio.sleep(12)  # past the 10 s header timeout
    for writer in writers:
        writer.close()
    return f"{len(writers)} opened, {refused} failed to connect"


async def run_phase(
    service: Service, name: str, attack: object, phase_list: list[Phase]
) -> None:
    phase = Phase(name)
    phase_list.append(phase)
    log_before = service.log_size()
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            phase.rss.append(rss_mb(service.proc.pid))
            await asyncio.sleep(0.02)

    async def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                status, _ = await http_get(service.api_port, "/api/health", 5)
            except (OSError, TimeoutError, ValueError, IndexError):
                phase.health_failures += 1
            else:
                if status in (200, 503):
                    phase.health_ms.append((time.perf_counter() - start) * 1000)
                else:
                    phase.health_failures += 1
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(sample()), asyncio.create_task(probe())]
    assert callable(attack)
    phase.note = await attack(service)
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*tasks)
    phase.log_bytes = service.log_size() - log_before


async def idle(service: Service) -> str:
    await asyncio.sleep(3)
    return "no attack"


async def main(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="soak-api-") as tmp:
        service = Service(Path(tmp))
        try:
            await wait_ready(service)
            count, worst = await fill_frames(service)
            _, body = await http_get(service.api_port, "/api/frames")
            print(
                f"first /api/frames page: {count} frames, {len(body):,} B "
                f"(the whole buffer as one answer would be about {worst:,} B)"
            )
            await run_phase(service, "idle (baseline)", idle, phases)
            attacks = [
                ("1 WS client, 1,000 unread get_frames", attack_one_ws),
                ("150 WS clients, 100 unread get_frames each", attack_many_ws),
                ("40 HTTP clients not reading /api/frames", attack_http_unread),
                ("1,100 half-sent requests", attack_half_sent),
            ]
            for name, attack in attacks:
                if args.only and args.only not in name:
                    continue
                await run_phase(service, name, attack, phases)
                print(f"done: {name}: {phases[-1].note}", flush=True)
            alive = service.proc.poll() is None
        finally:
            service.stop()
    base = phases[0]
    base_rss = statistics.median(base.rss)
    base_health = statistics.median(base.health_ms)
    print(f"\nservice alive at the end: {alive}")
    print(
        "| Attack | peak RSS | x  idle | health p50 / max | p50 x  idle "
        "| health failures | log written | notes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for phase in phases:
        print(phase.row(base_rss, base_health))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the attacks whose name has this")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
