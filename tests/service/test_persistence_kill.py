"""Kill -9 a process that keeps applying records and saving; the state must survive.

A child process runs the real hub: it loads the state, applies records (out of order,
re-sending some it already sent), saves after every pair and reports each save on
stdout. The test kills it with SIGKILL at random moments, then reloads the file and
checks that it is readable, that everything reported as saved is there, that the
energy totals equal exactly the energy of the records the dedupe set says were
counted (state and dedupe set written together), and that nothing went backwards.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ecu_proxy.decoder import parse_wire_timestamp
from ecu_proxy.state import LiveState
from ecu_proxy.storage import STATE_FILE, StateStore

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
        "408000111178", "07", "YC600", 228.0, 50.0, 13.0, 35.0, None,
        (
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
    loaded = StateStore(data_dir).load()
    assert loaded.problem is None, loaded.problem
    if loaded.document is None:
        return None
    state = LiveState.from_persisted(loaded.document["ecus"])
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
        last_seq=loaded.document["last_seq"],
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
