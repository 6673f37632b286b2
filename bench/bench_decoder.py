"""Decoder throughput: framing + decoding on one core, against a bare split baseline.

    .venv/bin/python bench/bench_decoder.py [--records N] [--repeat R]

Workloads (each timed R times, best run reported):

* capture:   the real 303-byte capture (ECU-R, 2 inverters), N records in a row.
    - one read per record (how the relay sees an ECU-R: one record per connection)
    - 64 KiB reads (a backlog arriving in bulk)
    - decode only (frames already cut) and framing only
* 100 inverters: one record of 50 YC600 + 50 QS1 blocks (10,886 characters), fed
  in the ECU-R's 1000-byte slices.

Baseline: the same bytes, in the same reads, through ``chunk.split(b"\\n")`` and
``len`` on every piece -- the least any framer must do. ``x baseline`` is how many
times longer the real work takes. Target: >= 20,000 capture-sized records/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from importlib import resources
from typing import TYPE_CHECKING

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.framing import Framer
from ecu_proxy.models import FrameKind

if TYPE_CHECKING:
    from collections.abc import Callable

TARGET_PER_S = 20_000


def capture() -> bytes:
    return resources.files("ecu_proxy").joinpath("data/capture.txt").read_bytes()


def hundred_inverter_record(base: bytes) -> bytes:
    record = decode_frame(base)
    yc600, qs1 = record.inverters
    inverters = [
        dataclasses.replace(yc600, id=f"4080001{n:05d}") for n in range(50)
    ] + [dataclasses.replace(qs1, id=f"8060000{n:05d}") for n in range(50)]
    power = sum(i.power_w or 0 for i in inverters)
    return encode_data_record(
        dataclasses.replace(
            record, inverters=tuple(inverters), inverter_count=100, power_w=power
        )
    )


def frame_and_decode(reads: list[bytes]) -> int:
    framer = Framer()
    good = 0
    for chunk in reads:
        for frame in framer.feed(chunk):
            if decode_frame(frame).kind is FrameKind.DATA:
                good += 1
    return good


def frame_only(reads: list[bytes]) -> int:
    framer = Framer()
    count = 0
    for chunk in reads:
        count += len(framer.feed(chunk))
    return count


def decode_only(frames: list[bytes]) -> int:
    good = 0
    for frame in frames:
        if decode_frame(frame).kind is FrameKind.DATA:
            good += 1
    return good


def baseline(reads: list[bytes]) -> int:
    total = 0
    for chunk in reads:
        for piece in chunk.split(b"\n"):
            total += len(piece)
    return total


def best_of(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    best = float("inf")
    result = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def slices(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def report(
    name: str,
    records: int,
    seconds: float,
    base_seconds: float | None,
    unit: str = "records",
) -> None:
    rate = records / seconds
    each = seconds * 1e6 / records
    line = f"  {name:<38} {rate:>12,.0f} {unit}/s  {each:8.2f} us/{unit[:-1]}"
    if base_seconds:
        line += f"  {seconds / base_seconds:7.1f} x baseline"
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n: int = args.records
    repeat: int = args.repeat

    one = capture()
    per_record = [one] * n
    stream = one * n
    bulk = slices(stream, 65_536)
    frames = [one.rstrip(b"\n")] * n
    big = hundred_inverter_record(one)
    big_n = max(n // 40, 50)
    big_reads = slices(big, 1000) * big_n

    print(f"Python {sys.version.split()[0]} on {platform.machine()}, one core")
    print(f"capture: {len(one)} bytes per record, {n} records, best of {repeat}")

    base_t, _ = best_of(repeat, lambda: baseline(per_record))
    report("baseline split+len, 1 read/record", n, base_t, None)
    t, good = best_of(repeat, lambda: frame_and_decode(per_record))
    assert good == n
    report("frame+decode, 1 read/record", n, t, base_t)
    headline = n / t

    bulk_base_t, _ = best_of(repeat, lambda: baseline(bulk))
    report("baseline split+len, 64 KiB reads", n, bulk_base_t, None)
    t, good = best_of(repeat, lambda: frame_and_decode(bulk))
    assert good == n
    report("frame+decode, 64 KiB reads", n, t, bulk_base_t)
    t, good = best_of(repeat, lambda: frame_only(bulk))
    assert good == n
    report("frame only, 64 KiB reads", n, t, bulk_base_t)
    t, good = best_of(repeat, lambda: decode_only(frames))
    assert good == n
    report("decode only", n, t, base_t)

    print(
        f"100 inverters: {len(big)} bytes per record, {big_n} records in 1000-byte "
        f"reads, best of {repeat}"
    )
    base_t, _ = best_of(repeat, lambda: baseline(big_reads))
    report("baseline split+len", big_n, base_t, None)
    t, good = best_of(repeat, lambda: frame_and_decode(big_reads))
    assert good == big_n
    report("frame+decode", big_n, t, base_t)
    report("frame+decode (inverter blocks)", big_n * 100, t, None, unit="blocks")

    verdict = "meets" if headline >= TARGET_PER_S else "MISSES"
    print(
        f"capture-sized records/s (1 read/record): {headline:,.0f} -- {verdict} "
        f"the target of {TARGET_PER_S:,}"
    )
    return 0 if headline >= TARGET_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
