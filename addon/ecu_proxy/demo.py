"""A demo on loopback: the service in cloudless mode fed by a simulated ECU.

The simulated ECU replays the real capture's ECU and inverters with values shaped by a
daylight curve, one upload per simulated five minutes, the way a real ECU uploads:
one record per TCP connection on port 8995 or 8996, waiting for the reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import signal
import tempfile
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from .decoder import decode_frame
from .encoder import encode_data_record
from .framing import Framer
from .models import Channel, DecodedFrame, Inverter
from .options import Mode, Options
from .service import Service

ROUND = timedelta(minutes=5)
SUNRISE_H = 6.0
SUNSET_H = 18.0
PEAK_SCALE = 6.0  # the February capture is a weak day; peak at about 6 x its power


def capture_record() -> DecodedFrame:
    """Return the decode of the real capture shipped with the package."""
    raw = resources.files("ecu_proxy").joinpath("data/capture.txt").read_bytes()
    frames = Framer().feed(raw)
    return decode_frame(frames[0])


def daylight(moment: datetime) -> float:
    """Return the share of peak output at this local time (0 at night)."""
    hour = moment.hour + moment.minute / 60
    if not SUNRISE_H < hour < SUNSET_H:
        return 0.0
    angle = math.pi * (hour - SUNRISE_H) / (SUNSET_H - SUNRISE_H)
    return float(math.sin(angle) ** 1.5)


def simulated_record(
    base: DecodedFrame, moment: datetime, lifetime_kwh: float, rng: random.Random
) -> DecodedFrame:
    """Return the base record rescaled for this moment (energy over one round)."""
    share = daylight(moment)
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
                    round_energy_wh=round(power * ROUND.total_seconds() / 3600, 3),
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


async def run_demo(
    *,
    api_port: int,
    ports: tuple[int, ...],
    data_dir: Path | None,
    interval: float,
    records: int,
) -> int:
    """Run the service and the simulated ECU until interrupted or N records sent."""
    with tempfile.TemporaryDirectory(prefix="ecu-proxy-demo-") as tmp:
        options = Options(
            listen="127.0.0.1",
            ports=ports,
            api_host="127.0.0.1",
            api_port=api_port,
            mode=Mode.CLOUDLESS,
            data_dir=data_dir or Path(tmp),
        )
        service = Service(options)
        await service.start()
        print(
            "Demo running: simulated ECU -> relay (cloudless) -> API on "
            f"http://127.0.0.1:{service.api_port}/api/state "
            f"(WebSocket ws://127.0.0.1:{service.api_port}/ws). Ctrl-C stops.",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        simulation = asyncio.create_task(_simulate(service, interval, records))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {simulation, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (simulation, stopping):
                task.cancel()
            await asyncio.gather(simulation, stopping, return_exceptions=True)
            await service.stop()
        if simulation.done() and not simulation.cancelled():
            simulation.result()  # surface a failure of the simulated ECU
    return 0


async def _simulate(service: Service, interval: float, records: int) -> None:
    """Upload simulated records forever (or N times) and print one line each."""
    rng = random.Random(20240206)
    base = capture_record()
    assert base.ecu_id is not None
    lifetime = base.lifetime_energy_kwh or 0.0
    today = datetime.now().replace(hour=7, minute=0, second=0, microsecond=0)
    moment = today
    data_ports = [p for p in service.relay_ports if p != 8997] or list(
        service.relay_ports
    )
    sent = 0
    while records == 0 or sent < records:
        if daylight(moment) == 0.0:
            # The ECU uploads nothing at night: skip to the next morning.
            moment = (moment + timedelta(days=1)).replace(hour=6, minute=5)
            continue
        record = simulated_record(base, moment, lifetime, rng)
        lifetime += sum(i.round_energy_wh or 0 for i in record.inverters) / 1000
        port = service.relay_ports[rng.choice(data_ports)]
        reply = await upload("127.0.0.1", port, encode_data_record(record))
        ecu = service.hub.snapshot()["ecus"].get(base.ecu_id, {})
        print(
            f"{moment:%Y-%m-%d %H:%M}  ECU {base.ecu_id}  "
            f"power {record.power_w or 0:5.0f} W  "
            f"today {ecu.get('energy_today_kwh') or 0:7.3f} kWh  "
            f"lifetime {ecu.get('lifetime_energy_kwh') or 0:9.1f} kWh  "
            f"reply {reply.decode('ascii', 'replace').strip() or '(none)'}",
            flush=True,
        )
        sent += 1
        moment += ROUND
        if records == 0 or sent < records:
            await asyncio.sleep(interval)
