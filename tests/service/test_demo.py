"""The demo: a simulated ECU whose every record the service accepts, for days."""

import dataclasses
import io
import itertools
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecu_proxy.cloudless import CloudlessResponder
from ecu_proxy.decoder import decode_frame
from ecu_proxy.demo import (
    DEFAULT_DAY_MINUTES,
    DemoTally,
    SimulatedEcu,
    capture_record,
    confirmed,
    default_data_dir,
    run_demo,
    simulate,
)
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.framing import Framer
from ecu_proxy.hub import Hub
from ecu_proxy.identity import load_or_create_server_id
from ecu_proxy.models import Direction, FrameEvent
from ecu_proxy.options import Mode, Options


class FakeClock:
    """ECU wall-clock time that moves only when the demo sleeps."""

    def __init__(self, start: datetime, *, ahead: timedelta = timedelta(0)) -> None:
        self.now = start
        self.ahead = ahead  # how far the ECU clock runs ahead of the service's

    def ecu_time(self) -> datetime:
        return self.now + self.ahead

    def arrival(self) -> datetime:
        return self.now.astimezone(UTC)

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _run_against_hub(
    tmp_path: Path,
    clock: FakeClock,
    *,
    interval: float,
    records: int,
    day_minutes: float = DEFAULT_DAY_MINUTES,
    newest_before: datetime | None = None,
) -> tuple[DemoTally, list[float], str, Hub]:
    """Run the demo's upload loop against the service's hub and cloudless replies.

    ``newest_before``: a record of the same ECU stamped then reaches the hub first.
    """
    hub = Hub(
        Options(mode=Mode.CLOUDLESS, data_dir=tmp_path), server_id="s", version="t"
    )
    await hub.start()
    if newest_before is not None:
        earlier = dataclasses.replace(capture_record(), timestamp=newest_before)
        hub.frame_received(
            FrameEvent(
                0,
                8995,
                "127.0.0.1",
                Direction.ECU_TO_EMA,
                encode_data_record(earlier),
                earlier,
                clock.arrival(),
            )
        )
    responder = CloudlessResponder(hub)
    base = capture_record()
    simulated = SimulatedEcu(base, base.lifetime_energy_kwh or 0.0, day_minutes)
    lifetimes: list[float] = []

    async def send(payload: bytes) -> bytes:
        (raw,) = Framer().feed(payload)
        frame = decode_frame(raw)
        hub.frame_received(
            FrameEvent(
                0, 8995, "127.0.0.1", Direction.ECU_TO_EMA, raw, frame, clock.arrival()
            )
        )
        ecu_state = hub.snapshot()["ecus"].get(simulated.ecu_id, {})
        lifetimes.append(ecu_state.get("lifetime_energy_kwh") or 0.0)
        return responder.reply_for(frame) or b""

    out = io.StringIO()
    tally = DemoTally()
    await simulate(
        simulated,
        send,
        interval=interval,
        records=records,
        clock=clock.ecu_time,
        sleep=clock.sleep,
        out=out,
        values=lambda: hub.snapshot()["ecus"].get(simulated.ecu_id, {}),
        tally=tally,
    )
    return tally, lifetimes, out.getvalue(), hub


async def test_three_days_of_uploads_are_all_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(datetime(2026, 6, 1, 23, 0, 0))
    records = 3 * 24 * 60 + 1  # one a minute for three days, across three midnights
    with caplog.at_level(logging.WARNING):
        tally, lifetimes, out, hub = await _run_against_hub(
            tmp_path, clock, interval=60, records=records
        )
    await hub.stop()
    assert tally == DemoTally(sent=records, refused=0)
    assert out.count(" stored\n") == records
    assert "REFUSED" not in out
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Values keep moving: lifetime energy never drops and grows every hour.
    assert lifetimes == sorted(lifetimes)
    hourly = lifetimes[::60]
    assert all(b > a for a, b in itertools.pairwise(hourly))
    assert clock.now - datetime(2026, 6, 1, 23, 0, 0) >= timedelta(days=3)


async def test_real_sun_sends_nothing_at_night(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 6, 1, 17, 0, 0))
    tally, _, out, hub = await _run_against_hub(
        tmp_path, clock, interval=300, records=30, day_minutes=0
    )
    await hub.stop()
    assert tally == DemoTally(sent=30, refused=0)
    hours = [int(h) for h in re.findall(r"^\S+ (\d\d):", out, re.MULTILINE)]
    assert all(6 <= h < 18 for h in hours)
    assert clock.now.date() == datetime(2026, 6, 2).date()  # it waited for morning


async def test_refused_records_are_reported(tmp_path: Path) -> None:
    # The service already holds a record of this ECU stamped 20 days later: the
    # demo's records are older than the service keeps track of, so it refuses them.
    clock = FakeClock(datetime(2026, 6, 1, 12, 0, 0))
    tally, _, out, hub = await _run_against_hub(
        tmp_path,
        clock,
        interval=60,
        records=3,
        newest_before=clock.ecu_time() + timedelta(days=20),
    )
    await hub.stop()
    assert tally == DemoTally(sent=3, refused=3)
    assert out.count("REFUSED: the service did not store this record") == 3


def test_confirmed_reads_the_ema_style_reply() -> None:
    assert confirmed(b"10120260601120000", "20260601120000")
    assert not confirmed(b"100", "20260601120000")
    assert not confirmed(b"10120260601115900", "20260601120000")
    assert not confirmed(b"", "20260601120000")


def test_default_data_dir_follows_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "apsystems-ecu-proxy" / "demo"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == (
        tmp_path / "home" / ".local" / "state" / "apsystems-ecu-proxy" / "demo"
    )


async def _demo_run(data_dir: Path, clock: FakeClock, **flags: bool) -> str:
    out = io.StringIO()
    await run_demo(
        api_port=0,
        ports=(0,),
        data_dir=data_dir,
        interval=900,  # a record per quarter hour: lifetime (0.1 kWh steps) moves
        records=3,
        clock=clock.ecu_time,
        sleep=clock.sleep,
        out=out,
        **flags,
    )
    return out.getvalue()


def _lifetimes(out: str) -> list[float]:
    return [float(v) for v in re.findall(r"lifetime +([\d.]+) kWh", out)]


async def test_restart_continues_and_fresh_starts_over(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    # ECU time just behind the real clock, so the service takes the records.
    clock = FakeClock(datetime.now() - timedelta(hours=3))
    first = await _demo_run(data_dir, clock)
    server_id = load_or_create_server_id(data_dir)
    second = await _demo_run(data_dir, clock)
    assert "(new;" in first
    assert "(continuing;" in second
    assert "refused" not in first.lower().replace("0 refused", "")
    assert "refused" not in second.lower().replace("0 refused", "")
    assert load_or_create_server_id(data_dir) == server_id
    # Lifetime energy goes on from where the first run stopped.
    assert _lifetimes(second)[0] >= _lifetimes(first)[-1]
    assert _lifetimes(second)[-1] > _lifetimes(first)[0]

    third = await _demo_run(data_dir, clock, fresh=True)
    assert "Removed" in third
    assert "(new;" in third
    assert load_or_create_server_id(data_dir) != server_id
