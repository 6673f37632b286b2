"""Peak power today and ever, energy this hour: computed from counted records."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from documents import ecus_json
from records import ECU_ID, channel, inverter, record

from ecu_proxy.contract.codec import ContractError, decode, encode
from ecu_proxy.models import DecodedFrame
from ecu_proxy.peaks import EcuPeaks, Peak
from ecu_proxy.state import LiveState

INV_A = "408000111178"
INV_B = "806000011223"
MORNING = datetime(2026, 6, 1, 10, 2, 14)


def _record(at: datetime, watts_a: float, watts_b: float, wh: float) -> DecodedFrame:
    """Return a record of two single-channel-pair inverters, `wh` per channel."""
    frame = record(
        inverter("07", INV_A, channels=(channel(1, watts=watts_a, wh=wh),) * 2),
        inverter("07", INV_B, channels=(channel(1, watts=watts_b, wh=wh),) * 2),
    )
    return dataclasses.replace(frame, timestamp=at)


def _apply(state: LiveState, frame: DecodedFrame) -> None:
    assert frame.timestamp is not None
    # Arrival in UTC a few seconds after the ECU-local stamp (zone: UTC).
    state.apply_record(
        frame, frame.timestamp.replace(tzinfo=UTC) + timedelta(seconds=5)
    )


def _ecu(state: LiveState) -> dict[str, object]:
    doc: dict[str, object] = ecus_json(state)[ECU_ID]
    return doc


def _inv(state: LiveState, inv_id: str) -> dict[str, object]:
    inverters = _ecu(state)["inverters"]
    assert isinstance(inverters, dict)
    doc: dict[str, object] = inverters[inv_id]
    return doc


def test_peaks_follow_the_highest_power_and_reset_today_each_day() -> None:
    state = LiveState()
    _apply(state, _record(MORNING, 100, 50, 1.0))
    _apply(state, _record(MORNING + timedelta(minutes=5), 300, 40, 1.0))
    _apply(state, _record(MORNING + timedelta(minutes=10), 200, 60, 1.0))
    assert _ecu(state)["peak_power_today_w"] == 2 * 300 + 2 * 40
    assert _inv(state, INV_A)["peak_power_today_w"] == 600
    assert _inv(state, INV_B)["peak_power_today_w"] == 120
    assert _inv(state, INV_B)["peak_power_ever_w"] == 120

    _apply(state, _record(MORNING + timedelta(days=1), 10, 5, 0.1))
    assert _ecu(state)["peak_power_today_w"] == 30
    assert _ecu(state)["peak_power_ever_w"] == 680
    assert _inv(state, INV_A)["peak_power_today_w"] == 20
    assert _inv(state, INV_A)["peak_power_ever_w"] == 600


def test_late_record_of_an_older_day_raises_only_the_all_time_peak() -> None:
    state = LiveState()
    _apply(state, _record(MORNING, 100, 100, 1.0))
    _apply(state, _record(MORNING - timedelta(days=1), 900, 900, 1.0))
    assert _ecu(state)["peak_power_today_w"] == 400
    assert _ecu(state)["peak_power_ever_w"] == 3600


def test_energy_this_hour_restarts_at_zero_on_the_hour() -> None:
    state = LiveState()
    # 4 channels x 1.5 Wh per record.
    _apply(state, _record(datetime(2026, 6, 1, 10, 2, 14), 100, 100, 1.5))
    _apply(state, _record(datetime(2026, 6, 1, 10, 57, 14), 100, 100, 1.5))
    assert _ecu(state)["energy_this_hour_kwh"] == 0.012
    assert _ecu(state)["hour_start"] == "2026-06-01T10:00:00"

    _apply(state, _record(datetime(2026, 6, 1, 11, 2, 14), 100, 100, 0.25))
    assert _ecu(state)["energy_this_hour_kwh"] == 0.001
    assert _ecu(state)["hour_start"] == "2026-06-01T11:00:00"

    # A late record of the previous hour does not count; one of this hour does.
    _apply(state, _record(datetime(2026, 6, 1, 10, 30, 0), 100, 100, 1.0))
    _apply(state, _record(datetime(2026, 6, 1, 11, 1, 0), 100, 100, 1.0))
    assert _ecu(state)["energy_this_hour_kwh"] == 0.005


def test_a_duplicate_record_counts_once() -> None:
    state = LiveState()
    frame = _record(MORNING, 100, 100, 1.0)
    _apply(state, frame)
    _apply(state, frame)
    assert _ecu(state)["energy_this_hour_kwh"] == 0.004


def test_unusable_power_readings_are_ignored() -> None:
    peak = Peak()
    for reading in (None, float("nan"), float("inf"), -5.0):
        peak.note(reading, today=True)
    assert peak == Peak()
    peak.note(12.5, today=True)
    assert peak == Peak(today_w=12.5, ever_w=12.5)


def test_peaks_survive_persistence() -> None:
    state = LiveState()
    _apply(state, _record(MORNING, 100, 70, 1.0))
    text = json.dumps(encode(state))
    restored = decode(LiveState, json.loads(text))
    assert ecus_json(restored) == ecus_json(state)
    _apply(restored, _record(MORNING + timedelta(minutes=5), 10, 10, 1.0))
    assert _ecu(restored)["peak_power_today_w"] == 340
    assert _ecu(restored)["energy_this_hour_kwh"] == 0.008


def test_a_state_file_from_before_peaks_loads_empty() -> None:
    state = LiveState()
    _apply(state, _record(MORNING, 100, 70, 1.0))
    persisted = encode(state)
    del persisted[ECU_ID]["peaks"]
    restored = decode(LiveState, persisted)
    assert _ecu(restored)["peak_power_ever_w"] is None
    assert _inv(restored, INV_A)["peak_power_ever_w"] is None
    assert _ecu(restored)["energy_this_hour_kwh"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"hour_mwh": -1},
        {"hour_mwh": True},
        {"day": "June"},
        {"hour": 5},
        {"ecu": {"ever_w": "high"}},
        {"ecu": {"ever_w": -1}},
        {"inverters": []},
    ],
)
def test_bad_persisted_peaks_are_a_format_error(raw: object) -> None:
    with pytest.raises(ContractError):
        decode(EcuPeaks, raw)
