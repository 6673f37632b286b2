"""Live state and energy accounting, fed with decoded records built in the test."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, date, datetime, timedelta

import pytest
import records
from documents import ecu_json, ecus_json
from hypothesis import given, settings
from hypothesis import strategies as st

from ecu_proxy.contract.codec import ContractError, decode, encode
from ecu_proxy.models import (
    DecodedFrame,
    FrameKind,
    Inverter,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.state import (
    LIFETIME_RESET_RECORDS,
    MAX_ECUS,
    LiveState,
    RecordStatus,
)
from ecu_proxy.wire import format_wire_timestamp as wire_time

ECU = "216000064136"
ECU2 = "215000003925"
YC600 = "408000111178"
QS1 = "806000011223"
DAY = datetime(2024, 2, 6, 11, 0, 0)
RECEIVED = datetime(2024, 2, 6, 10, 0, 5, tzinfo=UTC)
NAMED = {"type_code": "07", "family": "YC600"}


def inverter(
    inv_id: str = YC600,
    energies_wh: tuple[float, ...] = (1.409, 1.419),
    *,
    power: float = 17.0,
    type_code: str = "07",
    family: str = "YC600",
) -> Inverter:
    channels = tuple(
        records.channel(n, watts=power, wh=wh) for n, wh in enumerate(energies_wh, 1)
    )
    block = records.inverter("07", inv_id, channels=channels)
    return dataclasses.replace(
        block, type_code=type_code, family=family, round_energy_wh=None
    )


def record(
    at: datetime,
    inverters: tuple[Inverter, ...] = (),
    *,
    ecu_id: str = ECU,
    lifetime: float | None = 2127.9,
    power: float = 190.0,
) -> DecodedFrame:
    return records.record(
        *(inverters or (inverter(),)),
        power_w=power,
        ecu_id=ecu_id,
        timestamp=at,
        lifetime_energy_kwh=lifetime,
        ecu_model="ECU-R",
    )


def ecu_doc(state: LiveState, ecu_id: str = ECU) -> dict[str, object]:
    return ecu_json(state.ecus[ecu_id])


def test_first_record_sets_live_values_and_energy() -> None:
    state = LiveState()
    outcome = state.apply_record(
        record(DAY, (inverter(), inverter(QS1, (2.309, 3.07, 3.569, 3.437)))),
        RECEIVED,
    )
    assert outcome.status == RecordStatus.NEW
    assert outcome.new_ecu
    assert outcome.added_inverters == (YC600, QS1)
    doc = ecu_json(state.ecus[ECU])
    assert doc["model"] == "ECU-R"
    assert doc["power_w"] == 190.0
    assert doc["lifetime_energy_kwh"] == 2127.9
    assert doc["last_record_at"] == "2024-02-06T11:00:00"
    assert doc["last_seen"] == "2024-02-06T10:00:05+00:00"
    assert doc["today"] == "2024-02-06"
    assert doc["energy_today_kwh"] == pytest.approx(0.015213)
    assert doc["inverter_count"] == 2
    assert doc["inverters_online"] == 2
    yc = doc["inverters"][YC600]
    assert yc["online"] is True
    assert yc["energy_today_kwh"] == pytest.approx(0.002828)
    assert yc["energy_total_kwh"] == pytest.approx(0.002828)
    assert [c["energy_total_kwh"] for c in yc["channels"]] == pytest.approx(
        [0.001409, 0.001419]
    )
    qs = doc["inverters"][QS1]
    assert len(qs["channels"]) == 4
    assert qs["energy_today_kwh"] == pytest.approx(0.012385)


def test_duplicate_record_counts_once() -> None:
    state = LiveState()
    frame = record(DAY)
    assert state.apply_record(frame, RECEIVED).accepted
    again = state.apply_record(frame, RECEIVED + timedelta(minutes=5))
    assert again.status == RecordStatus.DUPLICATE
    assert not again.accepted
    inv = state.ecus[ECU].inverters[YC600]
    assert inv.total_mwh == 2828
    assert state.ecus[ECU].today_mwh == 2828
    assert state.ecus[ECU].last_seen == RECEIVED


def test_older_record_counts_energy_but_not_live_values() -> None:
    state = LiveState()
    newer = record(DAY + timedelta(minutes=5), (inverter(power=20.0),), power=40.0)
    older = record(DAY, (inverter(power=5.0),), power=10.0, lifetime=2127.8)
    state.apply_record(newer, RECEIVED)
    outcome = state.apply_record(older, RECEIVED + timedelta(seconds=30))
    assert outcome.status == RecordStatus.LATE
    assert outcome.late
    ecu = state.ecus[ECU]
    assert ecu.power_w == 40.0
    assert ecu.lifetime_energy_kwh == 2127.9
    assert ecu.last_record_at == DAY + timedelta(minutes=5)
    assert ecu.inverters[YC600].power_w == 40.0
    assert ecu.inverters[YC600].channels[1].power_w == 20.0
    assert ecu.today_mwh == 2 * 2828
    assert ecu.inverters[YC600].total_mwh == 2 * 2828


def test_night_resend_of_yesterday_after_today_started() -> None:
    """Yesterday's records re-sent after today's first records: totals only."""
    state = LiveState()
    yesterday = [DAY + timedelta(minutes=5 * i) for i in range(3)]
    today = [DAY + timedelta(days=1, hours=-3, minutes=5 * i) for i in range(2)]
    state.apply_record(record(yesterday[0]), RECEIVED)
    # yesterday[1] and [2] never arrived; the ECU re-sends them later
    for at in today:
        state.apply_record(record(at, (inverter(energies_wh=(1.0, 1.0)),)), RECEIVED)
    ecu = state.ecus[ECU]
    assert ecu.today == date(2024, 2, 7)
    assert ecu.today_mwh == 4000
    for at in yesterday:  # the first one is a duplicate
        state.apply_record(record(at), RECEIVED + timedelta(hours=1))
    assert ecu.today == date(2024, 2, 7)
    assert ecu.today_mwh == 4000  # yesterday's energy is not today's
    assert ecu.inverters[YC600].today_mwh == 4000
    assert ecu.inverters[YC600].total_mwh == 4000 + 3 * 2828
    assert ecu.inverters[YC600].channels[1].total_mwh == 2000 + 3 * 1409
    assert ecu.last_record_at == today[-1]
    assert state.stored_timestamps(ECU) == [
        wire_time(at) for at in sorted(today + yesterday, reverse=True)
    ]


def test_midnight_rollover_resets_today_for_all_inverters() -> None:
    state = LiveState()
    both = (inverter(), inverter(QS1, (2.0, 2.0, 2.0, 2.0)))
    state.apply_record(record(datetime(2024, 2, 6, 17, 40), both), RECEIVED)
    state.apply_record(record(datetime(2024, 2, 6, 17, 45), both), RECEIVED)
    ecu = state.ecus[ECU]
    assert ecu.today_mwh == 2 * (2828 + 8000)
    # next morning only the YC600 reports in the first round
    state.apply_record(record(datetime(2024, 2, 7, 8, 5)), RECEIVED)
    assert ecu.today == date(2024, 2, 7)
    assert ecu.today_mwh == 2828
    assert ecu.inverters[YC600].today_mwh == 2828
    assert ecu.inverters[QS1].today_mwh == 0
    assert all(c.today_mwh == 0 for c in ecu.inverters[QS1].channels.values())
    assert ecu.inverters[QS1].total_mwh == 16000
    assert ecu.inverters[QS1].online is False
    assert ecu.inverters[YC600].online is True
    doc = ecu_json(ecu)
    assert doc["inverters_online"] == 1
    assert doc["inverter_count"] == 1
    assert set(doc["inverters"]) == {YC600, QS1}


def test_late_record_of_today_counts_into_today() -> None:
    state = LiveState()
    state.apply_record(record(DAY + timedelta(minutes=10)), RECEIVED)
    state.apply_record(record(DAY), RECEIVED)
    assert state.ecus[ECU].today_mwh == 2 * 2828


def test_lifetime_never_decreases(caplog: pytest.LogCaptureFixture) -> None:
    state = LiveState()
    ecu_id = ECU
    state.apply_record(record(DAY, lifetime=2127.9), RECEIVED)
    with caplog.at_level(logging.WARNING, logger="ecu_proxy.state"):
        state.apply_record(record(DAY + timedelta(minutes=5), lifetime=0.0), RECEIVED)
        state.apply_record(
            record(DAY + timedelta(minutes=10), lifetime=2127.8), RECEIVED
        )
    assert state.ecus[ecu_id].lifetime_energy_kwh == 2127.9
    glitches = [r for r in caplog.records if "lifetime" in r.getMessage()]
    assert len(glitches) == 2
    assert "2127.8" in glitches[1].getMessage()
    state.apply_record(record(DAY + timedelta(minutes=15), lifetime=2128.0), RECEIVED)
    assert state.ecus[ecu_id].lifetime_energy_kwh == 2128.0
    # a late record never moves the counter, even when its value is higher
    state.apply_record(record(DAY + timedelta(minutes=1), lifetime=2200.0), RECEIVED)
    assert state.ecus[ecu_id].lifetime_energy_kwh == 2128.0
    # a record without the counter leaves it alone
    state.apply_record(record(DAY + timedelta(minutes=20), lifetime=None), RECEIVED)
    assert state.ecus[ecu_id].lifetime_energy_kwh == 2128.0


def test_lifetime_reset_is_accepted_only_after_an_hour_of_agreement() -> None:
    state = LiveState()
    state.apply_record(record(DAY, lifetime=2127.9), RECEIVED)
    step = timedelta(minutes=5)
    # One short dip, then a good value: the streak starts over.
    state.apply_record(record(DAY + step, lifetime=0.1), RECEIVED)
    state.apply_record(record(DAY + 2 * step, lifetime=2128.0), RECEIVED)
    for n in range(1, LIFETIME_RESET_RECORDS):
        state.apply_record(record(DAY + (2 + n) * step, lifetime=n / 10), RECEIVED)
        assert state.ecus[ECU].lifetime_energy_kwh == 2128.0
    # The counter survives a restart in the middle of the streak.
    state = decode(LiveState, encode(state))
    last = LIFETIME_RESET_RECORDS / 10
    state.apply_record(
        record(DAY + (2 + LIFETIME_RESET_RECORDS) * step, lifetime=last), RECEIVED
    )
    assert state.ecus[ECU].lifetime_energy_kwh == last
    assert state.ecus[ECU].lifetime_lower_streak == 0


def test_two_ecus_are_independent() -> None:
    state = LiveState()
    state.apply_record(record(DAY, ecu_id=ECU, power=190.0), RECEIVED)
    other = inverter("801000085070", (5.0, 5.0, 5.0, 5.0), type_code="08")
    state.apply_record(
        record(DAY, (other,), ecu_id=ECU2, power=400.0, lifetime=10.5), RECEIVED
    )
    # the same timestamp from the other ECU is not a duplicate
    assert set(state.ecus) == {ECU, ECU2}
    assert state.ecus[ECU].power_w == 190.0
    assert state.ecus[ECU2].power_w == 400.0
    assert state.ecus[ECU2].lifetime_energy_kwh == 10.5
    assert state.ecus[ECU].today_mwh == 2828
    assert state.ecus[ECU2].today_mwh == 20000
    assert set(state.ecus[ECU2].inverters) == {"801000085070"}
    assert list(ecus_json(state)) == sorted([ECU, ECU2])


def test_unknown_inverter_type_is_kept_raw() -> None:
    raw_block = "70300002130099" + "1" * 40
    unknown = Inverter(
        id="703000021300",
        type_code="99",
        family="unknown",
        ac_voltage_v=None,
        frequency_hz=None,
        temperature_c=None,
        power_w=None,
        round_energy_wh=None,
        channels=(),
        raw=raw_block,
    )
    state = LiveState()
    outcome = state.apply_record(record(DAY, (inverter(), unknown)), RECEIVED)
    assert outcome.added_inverters == (YC600, "703000021300")
    doc = ecu_json(state.ecus[ECU])["inverters"]["703000021300"]
    assert doc["raw"] == raw_block
    assert doc["type_code"] == "99"
    assert doc["online"] is True
    assert doc["power_w"] is None
    assert doc["channels"] == []
    assert doc["energy_total_kwh"] == 0.0
    assert state.ecus[ECU].today_mwh == 2828


def test_inverter_energy_without_channels_uses_block_energy() -> None:
    block = Inverter(
        id="502000006223",
        type_code="04",
        family="YC1000",
        ac_voltage_v=230.0,
        frequency_hz=50.0,
        temperature_c=30.0,
        power_w=500.0,
        round_energy_wh=41.5,
        channels=(),
        phase_voltages_v=(230.0, 231.0, 229.0),
    )
    state = LiveState()
    state.apply_record(record(DAY, (block,)), RECEIVED)
    inv = ecu_json(state.ecus[ECU])["inverters"]["502000006223"]
    assert inv["energy_total_kwh"] == pytest.approx(0.0415)
    assert inv["phase_voltages_v"] == [230.0, 231.0, 229.0]


def test_new_inverter_in_late_record_is_known_but_offline() -> None:
    state = LiveState()
    state.apply_record(record(DAY + timedelta(minutes=5)), RECEIVED)
    outcome = state.apply_record(
        record(DAY, (inverter(), inverter(QS1, (1.0, 1.0, 1.0, 1.0)))), RECEIVED
    )
    assert outcome.late
    assert outcome.added_inverters == (QS1,)
    qs = state.ecus[ECU].inverters[QS1]
    assert qs.online is False
    assert qs.total_mwh == 4000
    assert qs.last_record_at == DAY
    assert state.ecus[ECU].inverters_online == 1


def test_record_older_than_dedupe_window_is_ignored() -> None:
    state = LiveState()
    state.apply_record(record(DAY), RECEIVED)
    too_old = state.apply_record(record(DAY - timedelta(days=15)), RECEIVED)
    assert too_old.status == RecordStatus.TOO_OLD
    assert state.ecus[ECU].inverters[YC600].total_mwh == 2828
    within = state.apply_record(record(DAY - timedelta(days=13)), RECEIVED)
    assert within.status == RecordStatus.LATE


def test_dedupe_set_is_pruned_on_new_days() -> None:
    state = LiveState()
    for day in range(20):
        state.apply_record(
            record(DAY + timedelta(days=day)), RECEIVED + timedelta(days=day)
        )
    stamps = state.stored_timestamps(ECU, limit=1000)
    assert len(stamps) == 15  # newest day and the 14 before it
    assert stamps[0] == wire_time(DAY + timedelta(days=19))
    assert state.stored_timestamps(ECU, limit=3) == stamps[:3]
    assert state.stored_timestamps("000000000000") == []


def test_record_far_ahead_of_its_arrival_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = LiveState()
    state.apply_record(record(DAY), RECEIVED)
    with caplog.at_level(logging.WARNING, logger="ecu_proxy.state"):
        glitch = state.apply_record(record(datetime(2099, 12, 31, 23, 59)), RECEIVED)
    assert glitch.status == RecordStatus.FUTURE
    assert "too far ahead" in caplog.text
    # Nothing moved: the next real record still counts and is live.
    after = state.apply_record(record(DAY + timedelta(minutes=5)), RECEIVED)
    assert after.status == RecordStatus.NEW
    assert state.ecus[ECU].today == DAY.date()
    assert state.stored_timestamps(ECU) == [
        wire_time(DAY + timedelta(minutes=5)),
        wire_time(DAY),
    ]
    # A local clock up to UTC+14 is not "ahead".
    east = state.apply_record(
        record(RECEIVED.replace(tzinfo=None) + timedelta(hours=14)), RECEIVED
    )
    assert east.status == RecordStatus.NEW


def test_ecu_count_is_capped() -> None:
    state = LiveState()
    for n in range(MAX_ECUS):
        # two records each: confirmed ECUs, which newcomers cannot push out
        for minutes in (0, 5):
            at = DAY + timedelta(minutes=minutes)
            assert state.apply_record(record(at, ecu_id=f"2160{n:08d}"), RECEIVED)
    refused = state.apply_record(record(DAY, ecu_id="216099999999"), RECEIVED)
    assert refused.status == RecordStatus.TOO_MANY_ECUS
    upstream = UpstreamReport("216099999999", 8997, UpstreamResult.OK, RECEIVED)
    assert state.apply_upstream(upstream) is None
    assert len(state.ecus) == MAX_ECUS
    # ECUs already known keep working.
    again = state.apply_record(
        record(DAY + timedelta(minutes=10), ecu_id="216000000000"), RECEIVED
    )
    assert again.status == RecordStatus.NEW


def test_incomplete_record_changes_nothing() -> None:
    state = LiveState()
    frame = DecodedFrame(kind=FrameKind.DATA, version="18", length=10, ecu_id=ECU)
    assert state.apply_record(frame, RECEIVED).status == RecordStatus.INCOMPLETE
    assert state.ecus == {}


def test_upstream_result_is_per_ecu() -> None:
    state = LiveState()
    at = datetime(2024, 2, 6, 10, 0, 6, tzinfo=UTC)
    report = UpstreamReport(ECU, 8995, UpstreamResult.OK, at, rtt_ms=83.14)
    assert state.apply_upstream(report) == ECU
    up = ecu_json(state.ecus[ECU])["upstream"]
    assert up == {
        "result": "ok",
        "at": "2024-02-06T10:00:06+00:00",
        "rtt_ms": 83.1,
        "detail": None,
    }
    unknown = UpstreamReport(None, 8995, UpstreamResult.TIMEOUT, at)
    assert state.apply_upstream(unknown) is None
    assert list(state.ecus) == [ECU]


def test_persisted_form_round_trips_and_keeps_dedupe() -> None:
    state = LiveState()
    state.apply_record(record(DAY, (inverter(), inverter(QS1, (1, 2, 3, 4)))), RECEIVED)
    state.apply_record(record(DAY + timedelta(minutes=5)), RECEIVED)
    state.apply_upstream(
        UpstreamReport(ECU, 8995, UpstreamResult.TIMEOUT, RECEIVED, detail="no reply")
    )
    text = json.dumps(encode(state))
    restored = decode(LiveState, json.loads(text))
    assert ecus_json(restored) == ecus_json(state)
    again = restored.apply_record(record(DAY), RECEIVED)
    assert again.status == RecordStatus.DUPLICATE
    assert restored.stored_timestamps(ECU) == state.stored_timestamps(ECU)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {ECU: []},
        {ECU: {"ecu_id": "other"}},
        {ECU: {"ecu_id": ECU, "seen": {"stamps": ["2024"], "marks": [None]}}},
        {ECU: {"ecu_id": ECU, "seen": {"stamps": [], "marks": [1]}}},
        {ECU: {"ecu_id": ECU, "today_mwh": -1}},
        {ECU: {"ecu_id": ECU, "today": "yesterday"}},
        {ECU: {"ecu_id": ECU, "inverters": {YC600: {"id": YC600}}}},
        {
            ECU: {
                "ecu_id": ECU,
                "inverters": {QS1: {"id": YC600, "type_code": "07", "family": "YC600"}},
            }
        },
        {ECU: {"ecu_id": ECU, "upstream": {"result": "maybe"}}},
        {ECU: {"ecu_id": ECU, "last_seen": "soon"}},
    ],
)
def test_bad_persisted_shapes_are_rejected(document: object) -> None:
    with pytest.raises(ContractError):
        decode(LiveState, document)


minutes = st.integers(min_value=0, max_value=2 * 24 * 12 - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(minutes, min_size=1, max_size=40))
def test_any_arrival_order_counts_each_record_once(slots: list[int]) -> None:
    """Property: energy and lifetime depend on the set of records, not the order."""
    state = LiveState()
    start = datetime(2024, 6, 1, 0, 0)
    for slot in slots:  # duplicates and any order
        at = start + timedelta(minutes=5 * slot)
        state.apply_record(
            record(
                at,
                (inverter(energies_wh=(slot + 1, 1.0)),),
                lifetime=1000 + slot / 10,
            ),
            datetime(2024, 6, 3, tzinfo=UTC),  # all of them arrive later
        )
    unique = set(slots)
    newest = max(unique)
    ecu = state.ecus[ECU]
    inv = ecu.inverters[YC600]
    assert inv.channels[1].total_mwh == sum((s + 1) * 1000 for s in unique)
    assert inv.total_mwh == sum((s + 2) * 1000 for s in unique)
    newest_day = (start + timedelta(minutes=5 * newest)).date()
    assert ecu.today == newest_day
    expected_today = sum(
        (s + 2) * 1000
        for s in unique
        if (start + timedelta(minutes=5 * s)).date() == newest_day
    )
    assert ecu.today_mwh == expected_today
    assert ecu.last_record_at == start + timedelta(minutes=5 * newest)
    assert ecu.lifetime_energy_kwh == 1000 + newest / 10
