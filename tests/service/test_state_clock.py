"""Wrong clocks: a record from the future, a host clock behind, daylight saving time."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import records

from ecu_proxy.contract.codec import decode, encode
from ecu_proxy.state import LiveState, RecordStatus
from ecu_proxy.timeline import StampWindow
from ecu_proxy.wire import format_wire_timestamp as wire_time

if TYPE_CHECKING:
    from ecu_proxy.models import DecodedFrame

ECU = "216000064136"
YC600 = "408000111178"
ROUND_MWH = 2828  # 1.409 Wh + 1.419 Wh
# ECU local time is UTC+1 here; the host receives each record 20 s after its round.
OFFSET = timedelta(hours=1)
START = datetime(2024, 10, 26, 14, 0)  # ECU local time


def record(at: datetime, *, lifetime: float, power: float = 190.0) -> DecodedFrame:
    channels = (records.channel(1), records.channel(2, wh=1.419))
    block = records.inverter("07", YC600, channels=channels)
    return records.record(
        dataclasses.replace(block, power_w=power, round_energy_wh=None),
        power_w=power,
        timestamp=at,
        lifetime_energy_kwh=lifetime,
        ecu_model="ECU-R",
    )


def arrival(local: datetime, host_error: timedelta = timedelta(0)) -> datetime:
    """When the host receives the record of ECU time ``local`` (by its own clock)."""
    return (local - OFFSET + timedelta(seconds=20) + host_error).replace(tzinfo=UTC)


def run(state: LiveState, rounds: int, start: datetime = START) -> None:
    for n in range(rounds):
        at = start + timedelta(minutes=5 * n)
        outcome = state.apply_record(record(at, lifetime=100 + n / 100), arrival(at))
        assert outcome.status == RecordStatus.NEW, (n, outcome)


def test_record_a_day_ahead_neither_freezes_live_values_nor_loses_energy() -> None:
    state = LiveState()
    run(state, 3)
    last = START + timedelta(minutes=10)
    # Five minutes later a record arrives stamped 25 hours ahead.
    glitch_at = last + timedelta(hours=25)
    glitch = state.apply_record(
        record(glitch_at, lifetime=101.0, power=55.0),
        arrival(last + timedelta(minutes=5)),
    )
    assert glitch.status == RecordStatus.NEW  # counted, not dropped
    ecu = state.ecus[ECU]
    assert ecu.today == START.date()  # the glitch did not start "tomorrow"
    # The next real rounds are live again at once.
    for n in (4, 5):
        at = START + timedelta(minutes=5 * n)
        outcome = state.apply_record(
            record(at, lifetime=101.5 + n, power=300.0 + n), arrival(at)
        )
        assert outcome.status == RecordStatus.NEW
        assert ecu.last_record_at == at
        assert ecu.power_w == 300.0 + n
        assert ecu.inverters[YC600].power_w == 300.0 + n
        assert ecu.lifetime_energy_kwh == 101.5 + n
    assert ecu.today == START.date()
    inv = ecu.inverters[YC600]
    assert inv.total_mwh == 6 * ROUND_MWH  # every record, the glitch included
    assert inv.today_mwh == 5 * ROUND_MWH  # the glitch's day is not today
    assert wire_time(glitch_at) in state.stored_timestamps(ECU, limit=10)


def test_ecu_clock_that_really_jumps_ahead_is_followed() -> None:
    state = LiveState()
    run(state, 2)
    jumped = START + timedelta(hours=5)
    for n in range(2, 5):  # from now on the ECU clock is 5 hours ahead
        at = jumped + timedelta(minutes=5 * n)
        state.apply_record(
            record(at, lifetime=100 + n / 100),
            arrival(START + timedelta(minutes=5 * n)),
        )
    ecu = state.ecus[ECU]
    assert ecu.last_record_at == jumped + timedelta(minutes=20)
    assert ecu.inverters[YC600].total_mwh == 5 * ROUND_MWH


def test_host_clock_two_days_behind_drops_nothing() -> None:
    state = LiveState()
    run(state, 3)
    # The host restarts without a real-time clock: its clock is two days behind.
    state = decode(LiveState, json.loads(json.dumps(encode(state))))
    behind = timedelta(days=-2)
    for n in range(3, 8):
        at = START + timedelta(minutes=5 * n)
        outcome = state.apply_record(
            record(at, lifetime=100 + n / 100, power=200.0 + n), arrival(at, behind)
        )
        assert outcome.status == RecordStatus.NEW, n
    ecu = state.ecus[ECU]
    assert ecu.inverters[YC600].total_mwh == 8 * ROUND_MWH
    assert ecu.last_record_at == START + timedelta(minutes=35)
    assert ecu.power_w == 207.0
    # NTP then puts the host clock right: records keep counting and stay live.
    for n in range(8, 10):
        at = START + timedelta(minutes=5 * n)
        assert state.apply_record(record(at, lifetime=101.0 + n), arrival(at)).accepted
    assert ecu.last_record_at == START + timedelta(minutes=45)
    assert ecu.inverters[YC600].total_mwh == 10 * ROUND_MWH


def test_new_ecu_behind_a_host_clock_two_days_behind_is_tracked() -> None:
    state = LiveState()
    for n in range(3):
        at = START + timedelta(minutes=5 * n)
        outcome = state.apply_record(
            record(at, lifetime=100 + n / 100), arrival(at, timedelta(days=-2))
        )
        assert outcome.status == RecordStatus.NEW
    assert state.ecus[ECU].inverters[YC600].total_mwh == 3 * ROUND_MWH


def test_end_of_daylight_saving_time_repeats_an_hour_without_losing_it() -> None:
    state = LiveState()
    summer = datetime(2024, 10, 27, 2, 0)  # ECU local summer time, UTC+2
    rounds: list[tuple[datetime, datetime]] = []
    for n in range(12):  # 02:00 to 02:55 summer time
        at = summer + timedelta(minutes=5 * n)
        rounds.append((at, (at - timedelta(hours=2)).replace(tzinfo=UTC)))
    for n in range(12):  # the clock goes back: 02:00 to 02:55 again, winter time
        at = summer + timedelta(minutes=5 * n)
        rounds.append((at, (at - timedelta(hours=1)).replace(tzinfo=UTC)))
    statuses = []
    for n, (at, received) in enumerate(rounds):
        lifetime = 500.0 + (n + 1) / 100  # the ECU's counter moves on
        outcome = state.apply_record(
            record(at, lifetime=lifetime, power=100.0 + n),
            received + timedelta(seconds=20),
        )
        statuses.append(outcome.status)
    assert RecordStatus.DUPLICATE not in statuses
    ecu = state.ecus[ECU]
    assert ecu.inverters[YC600].total_mwh == 24 * ROUND_MWH
    assert ecu.today_mwh == 24 * ROUND_MWH
    assert ecu.today == date(2024, 10, 27)
    # Live values follow the second pass after one record, not after an hour.
    assert statuses[12] == RecordStatus.LATE
    assert statuses[13:] == [RecordStatus.NEW] * 11
    assert ecu.last_record_at == summer + timedelta(minutes=55)
    assert ecu.power_w == 123.0
    assert ecu.lifetime_energy_kwh == lifetime
    # A record of the repeated hour sent again is still a duplicate.
    at, received = rounds[15]
    received += timedelta(seconds=20)
    again = state.apply_record(
        record(at, lifetime=500.0 + 16 / 100, power=115.0), received
    )
    assert again.status == RecordStatus.DUPLICATE
    # Both passes survive a restart.
    restored = decode(LiveState, json.loads(json.dumps(encode(state))))
    assert (
        restored.apply_record(
            record(at, lifetime=500.0 + 16 / 100, power=115.0), received
        ).status
        == RecordStatus.DUPLICATE
    )
    first_pass = rounds[3]
    assert (
        restored.apply_record(
            record(first_pass[0], lifetime=500.0 + 4 / 100, power=103.0), first_pass[1]
        ).status
        == RecordStatus.DUPLICATE
    )


def test_stamp_window_keeps_order_and_forgets_oldest_first() -> None:
    window = StampWindow()
    stamps = [wire_time(START + timedelta(minutes=5 * n)) for n in range(3000)]
    for stamp in stamps[::2]:
        window.add(stamp, 1)
    for stamp in stamps[1::2]:  # late ones land in their place
        window.add(stamp, 2)
    assert list(window) == stamps
    assert window.newest_first(3) == stamps[:-4:-1]
    window.drop_oldest(2000)  # compacts past 1,024 dropped entries
    assert list(window) == stamps[2000:]
    assert window.oldest() == stamps[2000]
    window.drop_before(stamps[2500])
    assert len(window) == 500
    assert stamps[2499] not in window
    assert window.seen(stamps[2501], 2)
    assert not window.seen(stamps[2501], 1)
    window.add(stamps[2501], 1)  # the same timestamp, another record
    saved = window.to_json()
    restored = StampWindow.from_json(saved, "$")
    assert restored.seen(stamps[2501], 1)
    assert restored.seen(stamps[2501], 2)
    assert list(restored) == list(window)
    # Saved by a version without fingerprints: any record of that time is known.
    unknown = {"stamps": saved["stamps"], "marks": [None] * len(saved["marks"])}
    assert StampWindow.from_json(unknown, "$").seen(stamps[2501], 99)


def test_record_refused_before_an_ecu_clock_jump_is_counted_once_it_is_proven() -> None:
    state = LiveState()
    run(state, 2)
    jumped = START + timedelta(days=3)  # the ECU clock is set three days ahead
    statuses = []
    for n in range(2, 5):
        at = jumped + timedelta(minutes=5 * n)
        outcome = state.apply_record(
            record(at, lifetime=100 + n / 100),
            arrival(START + timedelta(minutes=5 * n)),
        )
        statuses.append(outcome.status)
    assert statuses == [RecordStatus.FUTURE, RecordStatus.NEW, RecordStatus.NEW]
    ecu = state.ecus[ECU]
    assert ecu.inverters[YC600].total_mwh == 5 * ROUND_MWH  # the refused one too
    assert ecu.last_record_at == jumped + timedelta(minutes=20)
    assert wire_time(jumped + timedelta(minutes=10)) in state.stored_timestamps(ECU)
