"""Cost of applying one record as the remembered timestamps grow.

Each ECU remembers the timestamps of counted records (up to 20,160). This measures
the time to apply a new record, and a late one (older than the newest), with a
window of 100 timestamps (the baseline) and with a full window; the cost should not
grow with the window.

Run: ``.venv/bin/python bench/bench_state.py``. Target: full / baseline ≤ 2.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import UTC, datetime, timedelta

from ecu_proxy.ecu_state import MAX_SEEN
from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter
from ecu_proxy.state import LiveState

ECU = "216000064136"
START = datetime(2024, 1, 1)
ARRIVAL = datetime(2024, 1, 1, tzinfo=UTC)
ROUNDS = 2000


def record(at: datetime, lifetime: float) -> DecodedFrame:
    block = Inverter(
        id="408000111178",
        type_code="07",
        family="YC600",
        ac_voltage_v=228.0,
        frequency_hz=50.0,
        temperature_c=13.0,
        power_w=34.0,
        round_energy_wh=None,
        channels=(Channel(1, 33.8, 0.5, 17.0, 1.4), Channel(2, 33.8, 0.5, 17.0, 1.4)),
    )
    return DecodedFrame(
        kind=FrameKind.DATA,
        version="18",
        length=302,
        ecu_id=ECU,
        ecu_model="ECU-R",
        timestamp=at,
        power_w=34.0,
        round_energy_kwh=0.0,
        lifetime_energy_kwh=lifetime,
        inverter_count=1,
        more_records=False,
        inverters=(block,),
    )


def prepared(window: int) -> tuple[LiveState, int]:
    """Return a state whose ECU remembers ``window`` one-minute records."""
    state = LiveState()
    for n in range(window):
        at = START + timedelta(minutes=n)
        state.apply_record(record(at, n / 1000), ARRIVAL + timedelta(minutes=n))
    return state, window


def per_record_us(window: int, *, late: bool) -> float:
    """Return the median microseconds to apply one record."""
    state, n = prepared(window)
    times = []
    for k in range(ROUNDS):
        if late:  # fill gaps between remembered minutes of the newer half, in a
            # scattered order (in arrival order they would look like a clock step)
            slot = n // 2 + (k * 37) % (n // 2)
            at = START + timedelta(minutes=slot, seconds=1 + k // (n // 2))
        else:
            at = START + timedelta(minutes=n + k)
        frame = record(at, (n + k) / 1000)
        arrival = ARRIVAL + timedelta(minutes=n + k)
        begin = time.perf_counter()
        state.apply_record(frame, arrival)
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1e6


def main() -> None:
    logging.disable(logging.WARNING)  # the scattered late records are logged
    print("| Record | 100 remembered | 20,160 remembered | ratio |")
    print("| --- | --- | --- | --- |")
    for late in (False, True):
        small = per_record_us(100, late=late)
        full = per_record_us(MAX_SEEN, late=late)
        name = "late (older than the newest)" if late else "new (newest)"
        print(f"| {name} | {small:.1f} µs | {full:.1f} µs | {full / small:.2f} |")


if __name__ == "__main__":
    main()
