"""A demo on loopback: the service in cloudless mode fed by a simulated ECU.

The simulated ECU replays the real capture's ECU and inverters with values shaped by a
daylight curve, uploading the way a real ECU does: one record per TCP connection on
port 8995 or 8996, waiting for the reply. Its clock is the wall clock, so the service
accepts its records for as long as the demo runs; only the sun is sped up (one
daylight arc every ``day_minutes``) so that values keep moving. Its data lives in a
stable per-user folder, so a restarted demo continues where it stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import random
import signal
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .decoder import decode_frame
from .encoder import encode_data_record
from .framing import Framer
from .identity import SERVER_ID_FILE
from .models import Channel, DecodedFrame, Inverter
from .options import Mode, Options
from .service import Service
from .state_file import STATE_FILE
from .upstream import ADDRESS_FILE
from .wire import format_wire_timestamp, parse_wire_timestamp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SUNRISE_H = 6.0
SUNSET_H = 18.0
PEAK_SCALE = 6.0  # the February capture is a weak day; peak at about 6 x its power
# With a sped-up sun the panels never go fully dark, so values keep moving.
MIN_SHARE = 0.03
DEFAULT_INTERVAL = 5.0
DEFAULT_DAY_MINUTES = 60.0
CONTROL_PORT = 8997

type Clock = Callable[[], datetime]
type Sleep = Callable[[float], Awaitable[None]]
type Send = Callable[[bytes], Awaitable[bytes]]


def default_data_dir() -> Path:
    """Return the demo's per-user data folder (XDG state directory)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "apsystems-ecu-proxy" / "demo"


def forget_demo_data(data_dir: Path) -> list[Path]:
    """Delete the files the service keeps in ``data_dir``; return those removed."""
    removed: list[Path] = []
    if not data_dir.is_dir():
        return removed
    for pattern in (f"{STATE_FILE}*", SERVER_ID_FILE, ADDRESS_FILE):
        for path in sorted(data_dir.glob(pattern)):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def prepare_data_dir(data_dir: Path, *, fresh: bool) -> list[Path]:
    """Create the data folder; with ``fresh`` empty it first. Return removed files."""
    removed = forget_demo_data(data_dir) if fresh else []
    data_dir.mkdir(parents=True, exist_ok=True)
    return removed


def capture_record() -> DecodedFrame:
    """Return the decode of the real capture shipped with the package."""
    raw = resources.files("ecu_proxy").joinpath("data/capture.txt").read_bytes()
    frames = Framer().feed(raw)
    return decode_frame(frames[0])


def daylight(moment: datetime) -> float:
    """Return the share of peak output at this local time (0 at night)."""
    hour = moment.hour + moment.minute / 60 + moment.second / 3600
    if not SUNRISE_H < hour < SUNSET_H:
        return 0.0
    angle = math.pi * (hour - SUNRISE_H) / (SUNSET_H - SUNRISE_H)
    return float(math.sin(angle) ** 1.5)


def sped_up_daylight(moment: datetime, day_minutes: float) -> float:
    """Return the share of peak output with one daylight arc every ``day_minutes``."""
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    period = day_minutes * 60
    phase = ((moment - midnight).total_seconds() % period) / period
    sun = SUNRISE_H + phase * (SUNSET_H - SUNRISE_H)
    return max(MIN_SHARE, daylight(midnight + timedelta(hours=sun)))


def simulated_record(
    base: DecodedFrame,
    moment: datetime,
    share: float,
    elapsed: timedelta,
    lifetime_kwh: float,
    rng: random.Random,
) -> DecodedFrame:
    """Return the base record rescaled to ``share`` of peak, energy over ``elapsed``."""
    hours = elapsed.total_seconds() / 3600
    inverters: list[Inverter] = []
    for inverter in base.inverters:
        channels: list[Channel] = []
        for channel in inverter.channels:
            power = round(channel.power_w * PEAK_SCALE * share * rng.uniform(0.9, 1.1))
            voltage = channel.dc_voltage_v or 30.0
            if power > 0:
                voltage = round(voltage + rng.uniform(-0.5, 0.5), 1)
            channels.append(
                Channel(
                    channel=channel.channel,
                    dc_voltage_v=voltage,
                    dc_current_a=round(power / voltage, 1) if voltage else 0.0,
                    power_w=float(power),
                    round_energy_wh=round(power * hours, 3),
                )
            )
        inverters.append(
            dataclasses.replace(
                inverter,
                channels=tuple(channels),
                power_w=sum(c.power_w for c in channels),
                round_energy_wh=round(sum(c.round_energy_wh for c in channels), 3),
            )
        )
    return dataclasses.replace(
        base,
        timestamp=moment,
        power_w=sum(i.power_w or 0 for i in inverters),
        lifetime_energy_kwh=round(lifetime_kwh, 1),
        inverters=tuple(inverters),
        warnings=(),
    )


def confirmed(reply: bytes, stamp: str) -> bool:
    """Return whether an EMA-style reply lists ``stamp`` as stored."""
    text = reply.decode("ascii", "replace").strip()
    if len(text) < 3 or not text[1:3].isdigit():
        return False
    listed = text[3:]
    stamps = {listed[i : i + 14] for i in range(0, len(listed) - 13, 14)}
    return stamp in stamps


async def upload(host: str, port: int, payload: bytes) -> bytes:
    """Send one record the way an ECU does and return the reply bytes."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(10):
            reply = await reader.read(4096)
    finally:
        writer.close()
        await writer.wait_closed()
    return reply


@dataclass(slots=True)
class DemoTally:
    """How many records the simulated ECU sent and how many the service refused."""

    sent: int = 0
    refused: int = 0


@dataclass(slots=True)
class SimulatedEcu:
    """The capture's ECU uploading at wall-clock time with a daylight curve."""

    base: DecodedFrame
    lifetime_kwh: float
    day_minutes: float = DEFAULT_DAY_MINUTES
    rng: random.Random = dataclasses.field(
        default_factory=lambda: random.Random(20240206)
    )
    last: datetime | None = None

    @property
    def ecu_id(self) -> str:
        """Return the simulated ECU's id."""
        assert self.base.ecu_id is not None
        return self.base.ecu_id

    def share(self, moment: datetime) -> float:
        """Return the share of peak output at this moment."""
        if self.day_minutes > 0:
            return sped_up_daylight(moment, self.day_minutes)
        return daylight(moment)

    def record(self, moment: datetime, interval: float) -> DecodedFrame:
        """Return the record for ``moment``, with energy since the previous one."""
        elapsed = timedelta(seconds=interval)
        if self.last is not None and timedelta(0) < moment - self.last < 2 * elapsed:
            elapsed = moment - self.last
        record = simulated_record(
            self.base, moment, self.share(moment), elapsed, self.lifetime_kwh, self.rng
        )
        self.last = moment
        self.lifetime_kwh += (
            sum(i.round_energy_wh or 0 for i in record.inverters) / 1000
        )
        return record


async def simulate(
    ecu: SimulatedEcu,
    send: Send,
    *,
    interval: float,
    records: int,
    clock: Clock,
    sleep: Sleep,
    out: TextIO,
    values: Callable[[], dict[str, object]],
    tally: DemoTally,
) -> None:
    """Upload a record every ``interval`` s (N times or forever); print outcomes."""
    while records == 0 or tally.sent < records:
        moment = clock().replace(microsecond=0)
        if ecu.share(moment) == 0.0:
            # A real ECU uploads nothing at night.
            await sleep(interval)
            continue
        record = ecu.record(moment, interval)
        stamp = format_wire_timestamp(moment)
        reply = await send(encode_data_record(record))
        tally.sent += 1
        ecu_state = values()
        if confirmed(reply, stamp):
            outcome = "stored"
        else:
            tally.refused += 1
            outcome = (
                "REFUSED: the service did not store this record "
                f"({tally.refused} so far; its log says why)"
            )
        print(
            f"{moment:%Y-%m-%d %H:%M:%S}  ECU {ecu.ecu_id}  "
            f"power {record.power_w or 0:5.0f} W  "
            f"today {_number(ecu_state.get('energy_today_kwh')):7.3f} kWh  "
            f"lifetime {_number(ecu_state.get('lifetime_energy_kwh')):9.1f} kWh  "
            f"{outcome}",
            file=out,
            flush=True,
        )
        if records == 0 or tally.sent < records:
            await sleep(interval)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _wall_clock() -> datetime:
    """Return local wall-clock time without zone, the way an ECU keeps time."""
    return datetime.now()


async def run_demo(
    *,
    api_port: int,
    ports: tuple[int, ...],
    data_dir: Path,
    interval: float = DEFAULT_INTERVAL,
    records: int = 0,
    day_minutes: float = DEFAULT_DAY_MINUTES,
    fresh: bool = False,
    clock: Clock = _wall_clock,
    sleep: Sleep = asyncio.sleep,
    out: TextIO = sys.stdout,
) -> int:
    """Run the service and the simulated ECU until interrupted or N records sent."""
    for path in await asyncio.to_thread(prepare_data_dir, data_dir, fresh=fresh):
        print(f"Removed {path}", file=out)
    options = Options(
        listen="127.0.0.1",
        ports=ports,
        api_host="127.0.0.1",
        api_port=api_port,
        mode=Mode.CLOUDLESS,
        data_dir=data_dir,
    )
    service = Service(options)
    tally = DemoTally()
    try:
        await service.start()
        base = capture_record()
        assert base.ecu_id is not None
        known = service.hub.snapshot()["ecus"].get(base.ecu_id, {})
        ecu = SimulatedEcu(
            base,
            known.get("lifetime_energy_kwh") or base.lifetime_energy_kwh or 0.0,
            day_minutes,
        )
        if newest := service.hub.stored_timestamps(ecu.ecu_id, 1):
            ecu.last = parse_wire_timestamp(newest[0])
        print(
            "Demo running: simulated ECU -> relay (cloudless) -> API on "
            f"http://127.0.0.1:{service.api_port}/api/state "
            f"(WebSocket ws://127.0.0.1:{service.api_port}/ws). "
            f"Data in {data_dir} ({'continuing' if known else 'new'}; --fresh "
            "starts over). Ctrl-C stops.",
            file=out,
            flush=True,
        )
        data_ports = [
            bound for port, bound in service.relay_ports.items() if port != CONTROL_PORT
        ] or list(service.relay_ports.values())
        rng = random.Random()

        async def send(payload: bytes) -> bytes:
            return await upload("127.0.0.1", rng.choice(data_ports), payload)

        def values() -> dict[str, object]:
            state: dict[str, object] = service.hub.snapshot()["ecus"].get(
                ecu.ecu_id, {}
            )
            return state

        simulation = asyncio.create_task(
            simulate(
                ecu,
                send,
                interval=interval,
                records=records,
                clock=clock,
                sleep=sleep,
                out=out,
                values=values,
                tally=tally,
            )
        )
        await _until_done_or_signal(simulation)
    finally:
        await service.stop()
    print(
        f"Demo stopped: {tally.sent} records sent, {tally.refused} refused.",
        file=out,
        flush=True,
    )
    return 0


async def _until_done_or_signal(simulation: asyncio.Task[None]) -> None:
    """Wait for the simulation to end or for SIGINT/SIGTERM, then stop it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({simulation, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for task in (simulation, stopping):
            task.cancel()
        await asyncio.gather(simulation, stopping, return_exceptions=True)
    if simulation.done() and not simulation.cancelled():
        simulation.result()  # surface a failure of the simulated ECU
