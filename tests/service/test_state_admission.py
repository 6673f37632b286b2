"""Forged records cannot grow the state or lock the real ECU out (ecu_admission)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import records
from documents import ecus_json

from ecu_proxy import state as state_module
from ecu_proxy.contract.codec import decode, encode
from ecu_proxy.ecu_admission import (
    MAX_ECUS,
    MAX_ECUS_PER_PEER,
    MAX_INVERTERS_PER_ECU,
    MAX_INVERTERS_TOTAL,
)
from ecu_proxy.state import LiveState, RecordStatus

if TYPE_CHECKING:
    import pytest

    from ecu_proxy.models import DecodedFrame, Inverter

ECU = "216000064136"
YC600 = "408000111178"
QS1 = "806000011223"
REAL_ECU_ADDRESS = "192.168.1.50"
FORGER = "192.168.1.66"
DAY = datetime(2024, 2, 6, 11, 0, 0)
RECEIVED = datetime(2024, 2, 6, 10, 0, 5, tzinfo=UTC)
# 1.409 Wh + 1.419 Wh per YC600 record, in mWh
YC600_ROUND_MWH = 2828


def inverter(inv_id: str) -> Inverter:
    channels = (records.channel(1), records.channel(2, wh=1.419))
    return records.inverter("07", inv_id, channels=channels)


def record(
    at: datetime, ecu_id: str = ECU, inverter_ids: tuple[str, ...] = (YC600,)
) -> DecodedFrame:
    return records.record(
        *(inverter(i) for i in inverter_ids),
        power_w=34.0 * len(inverter_ids),
        ecu_id=ecu_id,
        timestamp=at,
        ecu_model="ECU-R",
    )


def real_round(state: LiveState, n: int) -> None:
    """Apply the real ECU's n-th record (every 5 minutes, from its own address)."""
    at = DAY + timedelta(minutes=5 * n)
    outcome = state.apply_record(
        record(at), RECEIVED + timedelta(minutes=5 * n), REAL_ECU_ADDRESS
    )
    assert outcome.status == RecordStatus.NEW, outcome


def random_id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("0123456789") for _ in range(12 - len(prefix)))


def persisted_size(state: LiveState) -> int:
    return len(json.dumps(encode(state)))


def test_real_ecu_is_tracked_after_10000_forged_records_with_random_ids() -> None:
    rng = random.Random(8)
    state = LiveState()
    real_round(state, 0)  # the real ECU arrives in the middle of the flood
    for n in range(10_000):
        forged = record(
            DAY + timedelta(seconds=rng.randrange(86_400)),
            ecu_id=random_id(rng, "2160"),
            inverter_ids=(random_id(rng, "408"),),
        )
        state.apply_record(forged, RECEIVED, FORGER)
        if n == 5_000:
            real_round(state, 1)
    real_round(state, 2)
    assert ECU in state.ecus
    ecu = state.ecus[ECU]
    assert ecu.inverters[YC600].total_mwh == 3 * YC600_ROUND_MWH  # nothing lost
    assert ecu.records == 3
    assert len(state.ecus) <= 1 + 4  # the forger churns through its own few slots
    assert persisted_size(state) < 20_000


def test_forged_ids_sent_twice_each_do_not_lock_the_real_ecu_out() -> None:
    state = LiveState()
    for n in range(MAX_ECUS):
        forged_id = f"2160000{n:05d}"
        for minutes in (0, 5):  # twice each: they look confirmed
            state.apply_record(
                record(DAY + timedelta(minutes=minutes), ecu_id=forged_id),
                RECEIVED,
                FORGER,
            )
    assert len(state.ecus) == MAX_ECUS_PER_PEER
    real_round(state, 0)
    real_round(state, 1)
    assert state.ecus[ECU].records == 2


def test_unconfirmed_ecus_make_room_when_the_table_is_full() -> None:
    state = LiveState()
    # 32 different addresses (or no address known) each with one record
    for n in range(MAX_ECUS):
        state.apply_record(
            record(DAY, ecu_id=f"2160000{n:05d}"), RECEIVED, f"192.168.2.{n}"
        )
    assert len(state.ecus) == MAX_ECUS
    real_round(state, 0)
    real_round(state, 1)
    assert len(state.ecus) == MAX_ECUS
    assert state.ecus[ECU].records == 2


def test_forged_inverters_under_the_real_id_stay_within_the_cap() -> None:
    rng = random.Random(3)
    state = LiveState()
    real_round(state, 0)
    real_round(state, 1)
    for n in range(40):  # 40 records of 1,000 random inverters each
        ids = (YC600, *(random_id(rng, "408") for _ in range(1000)))
        state.apply_record(
            record(DAY + timedelta(minutes=10, seconds=n), inverter_ids=ids),
            RECEIVED,
            FORGER,
        )
    real_round(state, 3)
    ecu = state.ecus[ECU]
    assert len(ecu.inverters) <= MAX_INVERTERS_PER_ECU
    assert YC600 in ecu.inverters  # confirmed: never pushed out
    assert ecu.inverters[YC600].online
    assert persisted_size(state) < MAX_INVERTERS_PER_ECU * 1_000
    assert len(json.dumps(ecus_json(state))) < MAX_INVERTERS_PER_ECU * 1_000


def test_a_new_real_inverter_replaces_an_unconfirmed_one() -> None:
    state = LiveState()
    state.admission.max_inverters_per_ecu = 3
    real_round(state, 0)
    real_round(state, 1)
    forged = record(
        DAY + timedelta(minutes=7), inverter_ids=("408000000001", "408000000002")
    )
    state.apply_record(forged, RECEIVED, FORGER)
    assert len(state.ecus[ECU].inverters) == 3
    # The owner adds a QS1: it takes the place of a forged one seen once.
    both = (YC600, QS1)
    for n in (2, 3):
        state.apply_record(
            record(DAY + timedelta(minutes=5 * n), inverter_ids=both),
            RECEIVED + timedelta(minutes=5 * n),
            REAL_ECU_ADDRESS,
        )
    inverters = state.ecus[ECU].inverters
    assert QS1 in inverters
    assert inverters[QS1].records == 2
    assert inverters[YC600].total_mwh == 4 * YC600_ROUND_MWH
    assert len(inverters) == 3


def test_inverters_over_all_ecus_are_capped() -> None:
    state = LiveState()
    state.admission.max_inverters_total = 5
    for n in range(4):
        ids = tuple(f"4080000{n}{k:04d}" for k in range(3))
        for minutes in (0, 5):
            state.apply_record(
                record(DAY + timedelta(minutes=minutes), f"2160000{n:05d}", ids),
                RECEIVED,
                f"192.168.3.{n}",
            )
    assert sum(len(e.inverters) for e in state.ecus.values()) <= 5


def test_default_caps_leave_room_for_a_large_installation() -> None:
    assert MAX_INVERTERS_PER_ECU >= 100  # the ECU-R's own limit
    assert MAX_INVERTERS_TOTAL >= 4 * MAX_INVERTERS_PER_ECU


def test_record_counts_survive_a_restart() -> None:
    state = LiveState()
    real_round(state, 0)
    real_round(state, 1)
    saved = json.loads(json.dumps(encode(state)))
    restored = decode(LiveState, saved)
    assert restored.ecus[ECU].records == 2
    assert restored.ecus[ECU].inverters[YC600].records == 2
    # Files of older versions without the counts: see test_storage (format 1).


def test_remembered_timestamps_over_all_ecus_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_module, "MAX_SEEN_TOTAL", 300)
    state = LiveState()
    real_round(state, 0)
    real_round(state, 1)
    for k in range(3):  # three forged ECUs, 200 records each
        for n in range(200):
            at = DAY + timedelta(minutes=n)
            state.apply_record(
                record(at, ecu_id=f"21600000000{k}"), RECEIVED, f"192.168.4.{k}"
            )
    total = sum(len(e.seen) for e in state.ecus.values())
    assert total <= 300
    assert len(state.ecus[ECU].seen) == 2  # the ECU remembering least keeps all
