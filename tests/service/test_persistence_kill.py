"""Kill -9 a process that keeps applying records and saving; the state must survive.

The second test kills the whole service (cloudless, and forward to a stand-in EMA)
while an ECU uploads, and checks that every record the ECU was told is stored is in
the state file after each kill.

A child process runs the real hub: it loads the state, applies records (out of order,
re-sending some it already sent), saves after every pair and reports each save on
stdout. The test kills it with SIGKILL at random moments, then reloads the file and
checks that it is readable, that everything reported as saved is there, that the
energy totals equal exactly the energy of the records the dedupe set says were
counted (state and dedupe set written together), and that nothing went backwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from stand_ins import VECTORS, EmaConnection, FakeEcu, StandInEma, free_port_pair

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.options import Mode
from ecu_proxy.state_file import STATE_FILE, state_store
from ecu_proxy.wire import format_wire_timestamp, parse_wire_timestamp

ECU = "216000064136"
INV = "408000111178"
BASE = datetime(2024, 3, 1, 6, 0, 0)
ADDON = Path(__file__).parents[2] / "addon"

CHILD = r"""
import asyncio, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ecu_proxy.hub import Hub
from ecu_proxy.models import (
    Channel, DecodedFrame, Direction, FrameEvent, FrameKind, Inverter,
)
from ecu_proxy.options import Options

BASE = datetime(2024, 3, 1, 6, 0, 0)


def event(idx):
    inv = Inverter(
        id="408000111178", type_code="07", family="YC600", ac_voltage_v=228.0,
        frequency_hz=50.0, temperature_c=13.0, power_w=35.0, round_energy_wh=None,
        channels=(
            Channel(1, 33.8, 0.5, 17.0, float(idx % 7 + 1)),
            Channel(2, 33.9, 0.5, 18.0, 1.5),
        ),
    )
    frame = DecodedFrame(
        kind=FrameKind.DATA, version="18", length=302, ecu_id="216000064136",
        ecu_model="ECU-R", timestamp=BASE + timedelta(minutes=5 * idx),
        power_w=35.0, lifetime_energy_kwh=1000 + idx / 10, inverter_count=1,
        inverters=(inv,),
    )
    return FrameEvent(1, 8995, "ecu", Direction.ECU_TO_EMA, b"", frame,
                      datetime.now(UTC))


async def main(data_dir, start):
    hub = Hub(Options(data_dir=Path(data_dir), capture_frames=False),
              server_id="0" * 32, version="kill-test", save_delay=0.0)
    await hub.start()
    i = start
    while True:
        hub.frame_received(event(i + 1))  # newer first, then the late one
        hub.frame_received(event(i))
        await hub.save_now()
        print(f"saved {i + 1}", flush=True)
        i += 2


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def channel1_mwh(idx: int) -> int:
    return (idx % 7 + 1) * 1000


@dataclass
class Snapshot:
    indices: set[int]
    ch1: int
    ch2: int
    total: int
    lifetime: float | None
    last_seq: int


def read_state(data_dir: Path) -> Snapshot | None:
    loaded = state_store(data_dir).load()
    assert loaded.problem is None, loaded.problem
    if loaded.data is None:
        return None
    state = loaded.data.ecus
    ecu = state.ecus[ECU]
    inv = ecu.inverters[INV]
    moments = [parse_wire_timestamp(s) for s in ecu.seen]
    assert None not in moments
    indices = {int((m - BASE) / timedelta(minutes=5)) for m in moments if m is not None}
    return Snapshot(
        indices=indices,
        ch1=inv.channels[1].total_mwh,
        ch2=inv.channels[2].total_mwh,
        total=inv.total_mwh,
        lifetime=ecu.lifetime_energy_kwh,
        last_seq=loaded.data.last_seq,
    )


@pytest.mark.slow
def test_state_survives_kill_9_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(20240206)
    data_dir = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=str(ADDON))
    previous: Snapshot | None = None
    reported = -1  # highest record index a child reported as saved
    kept_writing = 0  # rounds where the child saved more after its last report
    for _ in range(25):
        start = 0 if previous is None else max(previous.indices) - 3
        start -= start % 2
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir), str(max(start, 0))],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        ) as child:
            # The child saves in a tight loop: the kill lands wherever it is,
            # often in the middle of writing the next save.
            wanted = rng.choice([0, 1, 2, 5, 10, 20, 40])
            assert child.stdout is not None
            round_reported = -1
            for _ in range(wanted):
                line = child.stdout.readline()
                assert line.startswith("saved "), line
                round_reported = int(line.split()[1])
            child.send_signal(signal.SIGKILL)
            child.wait()
        reported = max(reported, round_reported)
        assert child.returncode == -signal.SIGKILL

        now = read_state(data_dir)
        if now is None:
            assert previous is None
            assert reported == -1
            continue
        # everything a child said it saved is on disk
        assert max(now.indices) >= reported
        kept_writing += round_reported >= 0 and max(now.indices) > round_reported
        # totals are exactly the energy of the records marked as counted
        assert now.ch1 == sum(channel1_mwh(i) for i in now.indices)
        assert now.ch2 == 1500 * len(now.indices)
        assert now.total == now.ch1 + now.ch2
        assert now.lifetime == 1000 + max(now.indices) / 10
        if previous is not None:
            assert now.indices >= previous.indices
            assert now.ch1 >= previous.ch1
            assert now.total >= previous.total
            assert now.lifetime is not None
            assert previous.lifetime is not None
            assert now.lifetime >= previous.lifetime
            assert now.last_seq >= previous.last_seq
        previous = now
    # Observed, not assumed: some kills did hit a child that was still saving.
    assert kept_writing >= 1
    assert previous is not None
    assert not list(data_dir.glob(f"{STATE_FILE}.corrupt-*"))


# --- the whole service, killed while an ECU uploads ----------------------------------

# A pre-imported parent forks one service per line on stdin, so a restart costs a
# fork instead of an interpreter start: a hundred kills take seconds, not minutes.
ZYGOTE = r"""
import asyncio, os, signal, sys
from pathlib import Path

from ecu_proxy.options import Mode, Options
from ecu_proxy.service import Service

MODE, PORT, DATA = Mode(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])


async def serve():
    options = Options(
        listen="127.0.0.1", ports=(PORT,), ema_host="127.0.0.2", mode=MODE,
        api_host="127.0.0.1", api_port=0, data_dir=DATA, dns_resolvers=(),
        connect_timeout=5.0, install_integration=False, capture_frames=False,
    )
    service = Service(options, allow_local_upstream=True)
    await service.start()
    print(f"ready {os.getpid()}", flush=True)
    await asyncio.Event().wait()


signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
for line in sys.stdin:
    if os.fork() == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        asyncio.run(serve())
"""

KILLS_PER_MODE = 100


def numbered_records(count: int) -> list[tuple[str, bytes]]:
    """Return distinct records (wire timestamp, bytes), one minute apart."""
    raw = (VECTORS / "ECU-R_YC600-QS1_1.txt").read_bytes().rstrip(b"\n")
    base = decode_frame(raw)
    assert base.timestamp is not None
    out = []
    for n in range(count):
        moment = base.timestamp + timedelta(minutes=n)
        record = dataclasses.replace(base, timestamp=moment)
        out.append((format_wire_timestamp(moment), encode_data_record(record)))
    return out


async def ema_acknowledging_timestamps(conn: EmaConnection) -> None:
    """Play EMA: acknowledge each record with its own timestamp."""
    while True:
        frame = await conn.read_frame(within=60)
        stamp = decode_frame(frame.rstrip(b"\n")).timestamp
        assert stamp is not None
        conn.writer.write(b"101" + format_wire_timestamp(stamp).encode())
        await conn.writer.drain()


async def upload(port: int, record: bytes, stamp: str) -> bool:
    """Upload one record on its own connection; True when it was acknowledged."""
    try:
        ecu = await FakeEcu.connect(port, within=5)
    except OSError:
        return False
    try:
        await ecu.send(record)
        head = await ecu.read_exactly(3, within=15)
        if head != b"101":
            return False
        return await ecu.read_exactly(14, within=15) == stamp.encode()
    except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError):
        return False
    finally:
        ecu.reset()


async def process_gone(pid: int) -> None:
    """Wait until process ``pid`` has exited (it is not our child: use a pidfd)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, gone.set_result, None)
    try:
        await asyncio.wait_for(gone, 30)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def stored_stamps(data_dir: Path) -> set[str]:
    loaded = state_store(data_dir).load()
    assert loaded.problem is None, loaded.problem
    if loaded.data is None:
        return set()
    return set(loaded.data.ecus.ecus[ECU].seen)


async def kill_while_uploading(mode: Mode, tmp_path: Path) -> tuple[int, int]:
    """Kill the service KILLS_PER_MODE times mid-upload; check every ack survived."""
    rng = random.Random(f"kill-{mode.value}")
    port = free_port_pair()
    data_dir = tmp_path / mode.value
    ema = StandInEma(port, handler=ema_acknowledging_timestamps)
    await ema.start()
    log = (tmp_path / f"{mode.value}.log").open("wb")
    zygote = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ZYGOTE,
        mode.value,
        str(port),
        str(data_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=dict(os.environ, PYTHONPATH=str(ADDON)),
    )
    assert zygote.stdin is not None
    assert zygote.stdout is not None
    records = numbered_records(4000)
    acked: set[str] = set()
    index = 0
    mid_upload = 0
    loop = asyncio.get_running_loop()
    try:
        for _ in range(KILLS_PER_MODE):
            zygote.stdin.write(b"spawn\n")
            await zygote.stdin.drain()
            line = await asyncio.wait_for(zygote.stdout.readline(), 30)
            assert line.startswith(b"ready "), line
            pid = int(line.split()[1])
            killed = loop.create_future()

            def kill(pid: int = pid, killed: asyncio.Future[None] = killed) -> None:
                os.kill(pid, signal.SIGKILL)
                killed.set_result(None)

            loop.call_later(rng.uniform(0.01, 0.25), kill)
            while not killed.done():
                stamp, record = records[index]
                ok = await upload(port, record, stamp)
                if ok:
                    acked.add(stamp)
                    index += 1  # an unacknowledged record is offered again
                elif killed.done():
                    mid_upload += 1
            await process_gone(pid)
            missing = acked - stored_stamps(data_dir)
            assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
    finally:
        zygote.kill()
        await zygote.wait()
        await ema.stop()
        log.close()
    return len(acked), mid_upload


@pytest.mark.slow
@pytest.mark.parametrize("mode", [Mode.CLOUDLESS, Mode.FORWARD])
async def test_no_acknowledged_record_is_lost_to_kill_9(
    mode: Mode, tmp_path: Path
) -> None:
    acked, mid_upload = await kill_while_uploading(mode, tmp_path)
    # Observed, not assumed: records were acknowledged, and kills hit uploads.
    assert acked >= KILLS_PER_MODE
    assert mid_upload >= KILLS_PER_MODE // 2
