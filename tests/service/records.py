"""Test helpers: the protocol vectors and small builders of data records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ecu_proxy.models import (
    Channel,
    DecodedFrame,
    Direction,
    FrameEvent,
    FrameKind,
    Inverter,
)
from ecu_proxy.wire import BLOCK_TYPES

VECTORS = Path(__file__).parent.parent / "fixtures" / "vectors"
CAPTURE_PATH = VECTORS / "ECU-R_YC600-QS1_1.txt"
CAPTURE = CAPTURE_PATH.read_bytes()  # 302 characters + LF
CAPTURE_FRAME = CAPTURE[:-1]
SYNTHETIC = VECTORS / "synthetic"

ECU_ID = "216000064136"
WHEN = datetime(2024, 2, 6, 11, 22, 14)


def channel(
    number: int,
    volts: float = 33.8,
    amps: float = 0.5,
    watts: float = 17.0,
    wh: float = 1.409,
) -> Channel:
    """Return one DC channel."""
    return Channel(number, volts, amps, watts, wh)


def inverter(
    type_code: str,
    inverter_id: str = "408000111178",
    *,
    channels: tuple[Channel, ...] | None = None,
    ac_voltage_v: float = 228,
    frequency_hz: float = 50.0,
    temperature_c: float = 13,
    phases: tuple[float, ...] | None = None,
) -> Inverter:
    """Return an inverter of a known type with sensible default channels."""
    count = {"03": 2, "04": 4, "05": 1, "07": 2, "08": 4}[type_code]
    if channels is None:
        channels = tuple(channel(n) for n in range(1, count + 1))
    if type_code == "04":
        phases = phases or (ac_voltage_v,) * 3
        ac_voltage_v = round(sum(phases) / 3, 1)
    return Inverter(
        id=inverter_id,
        type_code=type_code,
        family=BLOCK_TYPES[type_code][0],
        ac_voltage_v=ac_voltage_v,
        frequency_hz=frequency_hz,
        temperature_c=temperature_c,
        power_w=round(sum(c.power_w for c in channels), 2),
        round_energy_wh=round(sum(c.round_energy_wh for c in channels), 3),
        channels=channels,
        phase_voltages_v=tuple(phases) if type_code == "04" and phases else None,
    )


def raw_inverter(
    type_code: str, body: str, inverter_id: str = "999000000001"
) -> Inverter:
    """Return an inverter of an unknown type code, kept as its raw block."""
    block = f"{inverter_id}{type_code}{body}END"
    return Inverter(
        id=inverter_id,
        type_code=type_code,
        family="unknown",
        ac_voltage_v=None,
        frequency_hz=None,
        temperature_c=None,
        power_w=None,
        round_energy_wh=None,
        channels=(),
        raw=block,
    )


def record(
    *inverters: Inverter,
    power_w: float | None = None,
    ecu_id: str = ECU_ID,
    inverter_count: int | None = None,
    more_records: bool = False,
    timestamp: datetime = WHEN,
    lifetime_energy_kwh: float | None = 2127.9,
    ecu_model: str | None = None,
) -> DecodedFrame:
    """Return a version-18 data record; power defaults to the sum of the channels."""
    if power_w is None:
        power_w = round(sum(c.power_w for i in inverters for c in i.channels))
    return DecodedFrame(
        kind=FrameKind.DATA,
        version="18",
        length=0,
        ecu_id=ecu_id,
        ecu_model=ecu_model,
        timestamp=timestamp,
        power_w=power_w,
        round_energy_kwh=0.0,
        lifetime_energy_kwh=lifetime_energy_kwh,
        inverter_count=len(inverters) if inverter_count is None else inverter_count,
        more_records=more_records,
        inverters=inverters,
    )


def received(
    frame: DecodedFrame, at: datetime | None = None, raw: bytes = b""
) -> FrameEvent:
    """Return the relay's event for ``frame`` received from an ECU on port 8995."""
    return FrameEvent(
        connection_id=1,
        port=8995,
        peer="192.0.2.10:40000",
        direction=Direction.ECU_TO_EMA,
        raw=raw,
        frame=frame,
        received_at=at or datetime.now(UTC),
    )


def splice(data: bytes, extra: str) -> bytes:
    """Append ``extra`` to a record (before its LF) and fix the length field."""
    text = data.decode("ascii").rstrip("\n") + extra
    return (text[:5] + f"{len(text):A>5}" + text[10:]).encode("ascii")
