"""A real ECU's uploads while hostile LAN devices attack the same ports.

Four processes on loopback: the service (forward mode, default limits), a stand-in
EMA on 127.0.0.2 answering every 303 bytes with a 17-byte acknowledgement, the
attackers, and this script playing the ECU from 127.0.0.1 (one new connection per
record, as the ECU-R uploads; each record has its own timestamp, so every upload
is stored and its acknowledgement waits for the state file).

1. Baseline: ``--uploads`` uploads with no attack.
2. Attack: 3,000 connections that send nothing from 100 addresses (127.0.1.x, each
   reconnecting 2-5 s after it is refused or dropped), 64 connections trickling one
   byte every 5 s from 64 addresses (127.0.2.x), and a 20 MB ``APS`` flood from
   127.0.3.1 (its connection opened before the others, as a flood already running
   would be; the rest is sent once the others are in). The ECU uploads the same
   number of records, and keeps uploading until the whole flood went through.

An upload succeeds when the 17-byte reply arrives within 10 s (the ECU's own wait).

With ``--ema-delay 0`` the stand-in EMA answers at once, so the round trip is mostly
the state-file write the acknowledgement waits for; with ``--ema-delay 0.1`` (a
cloud-like 100 ms) that write overlaps EMA's answer.

Run: ``.venv/bin/python bench/soak_lan_attack.py [--uploads 300] [--ema-delay 0.1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.fdlimit import raise_open_files_limit
from ecu_proxy.framing import Framer
from ecu_proxy.options import Options
from ecu_proxy.service import Service
from loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
RECORD = (
    ROOT / "tests" / "fixtures" / "vectors" / "ECU-R_YC600-QS1_1.txt"
).read_bytes()
ACK = b"10120240206112214"
ECU_HOST = "127.0.0.1"
EMA_HOST = "127.0.0.2"
ECU_WAIT = 10.0
HOLDERS = 3000
HOLDER_ADDRESSES = 100
TRICKLERS = 64
FLOOD_BYTES = 20_000_000


def numbered_records(count: int) -> list[bytes]:
    """Return ``count`` distinct 303-byte records, one minute apart."""
    base = decode_frame(RECORD.rstrip(b"\n"))
    assert base.timestamp is not None
    start = base.timestamp
    return [
        encode_data_record(
            dataclasses.replace(base, timestamp=start + timedelta(minutes=n))
        )
        for n in range(count)
    ]


# -- child processes ----------------------------------------------------------


async def serve_ema(port: int, delay: float) -> None:
    """Answer every 303 bytes received with ACK after ``delay`` s (a stand-in EMA)."""
    size = len(RECORD)

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        pending = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                pending += len(chunk)
                replies, pending = divmod(pending, size)
                if replies:
                    if delay:
                        await asyncio.sleep(delay)  # the cloud's round trip
                    writer.write(ACK * replies)
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, EMA_HOST, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def serve_service(port: int) -> None:
    """Run the whole service in forward mode with default limits."""
    data_dir = Path(tempfile.mkdtemp(prefix="soak-lan-"))
    options = Options(
        listen=ECU_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        api_host="127.0.0.1",
        api_port=0,
        data_dir=data_dir,
        dns_resolvers=(),
        install_integration=False,
    )
    service = Service(options, allow_local_upstream=True)
    await service.start()
    print(f"ready {service.api_port}", flush=True)
    await asyncio.Event().wait()


async def _hold(port: int, source: str, stop: asyncio.Event) -> None:
    """Keep one connection open that never sends; reconnect when dropped."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(
                ECU_HOST, port, local_addr=(source, 0)
            )
            with contextlib.suppress(OSError):
                await reader.read()  # until refused, dropped or timed out
            writer.close()
        await asyncio.sleep(random.uniform(2.0, 5.0))


async def _trickle(port: int, source: str, stop: asyncio.Event) -> None:
    """Send the start of a frame, then one byte every 5 s; reconnect when dropped."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(
                ECU_HOST, port, local_addr=(source, 0)
            )
            writer.write(RECORD[:10])
            for byte in RECORD[10:]:
                await asyncio.sleep(5.0)
                writer.write(bytes([byte]))
                await writer.drain()
        await asyncio.sleep(1.0)


class Flood:
    """A 20 MB ``APS`` flood; what arrived is confirmed by EMA's replies.

    The stand-in EMA answers every 303 bytes, so the replies tell how much of the
    flood went through the relay. A refused or dropped connection is replaced and
    the flood goes on from what EMA confirmed.
    """

    CHUNK = b"APS" * 21_846  # 65,538 bytes

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked = 0
        self.connections = 0
        self.target = FLOOD_BYTES
        self.sent = 0
        self.got_reply = asyncio.Event()
        self.reached = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._replies: asyncio.Task[None] | None = None

    @property
    def delivered(self) -> int:
        return self.acked // len(ACK) * len(RECORD)

    async def connect(self) -> None:
        """Open a connection the relay takes (its first chunk gets EMA's replies)."""
        while True:
            self.got_reply.clear()
            try:
                reader, writer = await asyncio.open_connection(
                    ECU_HOST, self.port, local_addr=("127.0.3.1", 0)
                )
            except OSError:
                await asyncio.sleep(0.1)
                continue
            self.connections += 1
            self._replies = asyncio.create_task(self._read_replies(reader))
            try:
                writer.write(self.CHUNK)
                await writer.drain()
                async with asyncio.timeout(2.0):
                    await self.got_reply.wait()
            except (OSError, TimeoutError):
                self._close(writer)
                await asyncio.sleep(0.1)
                continue
            self.sent += len(self.CHUNK)
            self._writer = writer
            return

    async def run(self) -> float:
        """Send 20 MB more; return the seconds until EMA confirmed them."""
        started = time.perf_counter()
        goal = self.sent + FLOOD_BYTES
        while True:
            if self._writer is None:
                await self.connect()
            writer = self._writer
            assert writer is not None
            try:
                while self.sent < goal:
                    writer.write(self.CHUNK)
                    await writer.drain()
                    self.sent += len(self.CHUNK)
                # EMA answers whole records only: the last partial one gets none.
                self.reached.clear()
                self.target = self.sent - len(RECORD)
                if self.delivered >= self.target:
                    self.reached.set()
                async with asyncio.timeout(30.0):
                    await self.reached.wait()
            except (OSError, TimeoutError):
                self._close(writer)
                self.sent = self.delivered
                continue
            return time.perf_counter() - started

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                self.acked += len(chunk)
                self.got_reply.set()
                if self.delivered >= self.target:
                    self.reached.set()

    def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        if self._replies is not None:
            self._replies.cancel()
        self._writer = None


async def attack(port: int) -> None:
    """Open the flood, hold and trickle, then flood; report on stdout."""
    raise_open_files_limit()
    flood = Flood(port)
    await flood.connect()  # in before the wave, as a flood already running would be
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_hold(port, f"127.0.1.{1 + n % HOLDER_ADDRESSES}", stop))
        for n in range(HOLDERS)
    ]
    tasks += [
        asyncio.create_task(_trickle(port, f"127.0.2.{1 + n}", stop))
        for n in range(TRICKLERS)
    ]
    await asyncio.sleep(3.0)  # let the connection wave land first
    print("ready", flush=True)
    while True:  # 20 MB after 20 MB, until the ECU is done
        seconds = await flood.run()
        print(f"flood {seconds:.3f} {flood.delivered} {flood.connections}", flush=True)


# -- the ECU ------------------------------------------------------------------


@dataclasses.dataclass
class Uploads:
    """Outcome of a series of uploads."""

    rtts: list[float] = dataclasses.field(default_factory=list)
    failures: int = 0

    @property
    def total(self) -> int:
        return len(self.rtts) + self.failures

    def summary(self) -> str:
        rtts = sorted(self.rtts)
        if not rtts:
            return f"0/{self.total} ok"
        p50 = statistics.median(rtts) * 1000
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1000
        rate = 100 * len(rtts) / self.total
        return (
            f"{len(rtts)}/{self.total} ok ({rate:.1f} %), p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {rtts[-1] * 1000:.1f} ms"
        )

    def p99(self) -> float:
        rtts = sorted(self.rtts)
        return rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]


async def upload(port: int, record: bytes, result: Uploads) -> None:
    """Upload one record on a new connection and time the reply."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ECU_WAIT):
            reader, writer = await asyncio.open_connection(ECU_HOST, port)
            try:
                writer.write(record)
                reply = await reader.readexactly(len(ACK))
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        result.failures += 1
        return
    if reply[:3] != b"101":
        result.failures += 1
        return
    result.rtts.append(time.perf_counter() - started)


def spawn(role: str, port: int, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start this script in a role; return it and its ready line."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "addon")},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"{role} did not start: {line!r}")
    return proc, line


def health(api_port: int) -> dict[str, object]:
    """Return the service's /api/health answer."""
    url = f"http://127.0.0.1:{api_port}/api/health"
    with urllib.request.urlopen(url, timeout=10) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def garbage_throughput() -> None:
    """Print how fast the framer and decoder get through 20 MB runs, in process."""
    for unit in (b"APS", b"100", b"{\n"):
        data = unit * (FLOOD_BYTES // len(unit))
        framer = Framer()
        frames = 0
        started = time.perf_counter()
        for at in range(0, len(data), 65536):
            # The relay's default per-address burst of 256 frames (its refill of 64
            # a second is left out: the whole run takes well under a second).
            for raw in framer.feed(data[at : at + 65536], limit=256 - frames):
                decode_frame(raw)
                frames += 1
        seconds = time.perf_counter() - started
        print(
            f"framer + decoder, 20 MB of {unit!r}: {frames} frames decoded, "
            f"{framer.skipped / 1e6:.1f} MB skipped, "
            f"{len(data) / 1e6 / seconds:.0f} MB/s"
        )


async def run(uploads: int, ema_delay: float) -> None:
    port = free_port(ECU_HOST, EMA_HOST)
    ema, _ = spawn("ema", port, "--ema-delay", str(ema_delay))
    print(f"stand-in EMA answers after {ema_delay * 1000:.0f} ms")
    service, line = spawn("service", port)
    api_port = int(line.split()[1])
    attacker: subprocess.Popen[str] | None = None
    reader: asyncio.Task[None] | None = None
    try:
        all_records = iter(numbered_records(20 * uploads + 10_000))
        baseline = Uploads()
        for _ in range(uploads):
            await upload(port, next(all_records), baseline)
        print(f"baseline, no attack:        {baseline.summary()}")

        proc, _ = await asyncio.to_thread(spawn, "attack", port)
        attacker = proc
        assert proc.stdout is not None
        stdout = proc.stdout
        rounds: list[list[str]] = []

        def read_floods() -> None:
            for line in stdout:
                rounds.append(line.split())

        reader = asyncio.create_task(asyncio.to_thread(read_floods))
        attacked = Uploads()
        started = time.perf_counter()
        while attacked.total < uploads or not rounds:
            await upload(port, next(all_records), attacked)
        upload_seconds = time.perf_counter() - started
        done = list(rounds)
        print(f"under attack:               {attacked.summary()}")
        seconds = sum(float(r[1]) for r in done)
        delivered, tries = int(done[-1][2]), int(done[-1][3])
        print(
            f"APS flood during the {upload_seconds:.1f} s of uploads: {len(done)} x "
            f"20 MB, {delivered / 1e6:.0f} MB relayed to EMA (confirmed by its "
            f"replies) at {delivered / 1e6 / seconds:.0f} MB/s, {tries} connection(s)"
        )
        report = await asyncio.to_thread(health, api_port)
        print(
            f"service health: {report['status']}, frames {report['frames']}, "
            f"connections {report['connections']}"
        )
        if baseline.rtts and attacked.rtts:
            print(f"p99 ratio attack/baseline: {attacked.p99() / baseline.p99():.2f}")
        ok = attacked.failures == 0 and attacked.p99() < 1.0
        print("targets (100 % success, p99 < 1 s):", "met" if ok else "NOT met")
    finally:
        for child in (attacker, service, ema):
            if child is not None:
                child.kill()
                child.wait()
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--role", choices=["ema", "service", "attack"])
    parser.add_argument("--port", type=int)
    parser.add_argument(
        "--ema-delay", type=float, default=0.0, help="EMA's answer time in seconds"
    )
    args = parser.parse_args()
    if args.role == "ema":
        asyncio.run(serve_ema(args.port, args.ema_delay))
    elif args.role == "service":
        asyncio.run(serve_service(args.port))
    elif args.role == "attack":
        asyncio.run(attack(args.port))
    else:
        garbage_throughput()
        asyncio.run(run(args.uploads, args.ema_delay))


if __name__ == "__main__":
    main()
