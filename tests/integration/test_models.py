"""Parsing of the API's payloads, free of Home Assistant."""

from datetime import UTC, datetime
from typing import Any

import pytest

from custom_components.apsystems_ema_proxy.exceptions import InvalidMessage
from custom_components.apsystems_ema_proxy.models import (
    EcuState,
    EcuStatusEvent,
    Frame,
    InverterAddedEvent,
    InverterState,
    ListenResult,
    ProxyState,
    RecordEvent,
    ServerInfo,
    Upstream,
    event_from_message,
)

from .conftest import CAPTURE_ECU, QS1_ID, YC600_ID, load_state


def capture_ecu() -> dict[str, Any]:
    """Return the capture's ECU object."""
    ecu: dict[str, Any] = load_state("state_capture")["ecus"][CAPTURE_ECU]
    return ecu


def test_state_from_capture() -> None:
    """The capture's state parses to the values the ECU reported."""
    state = ProxyState.from_message(load_state("state_capture"))
    ecu = state.ecus[CAPTURE_ECU]
    assert (ecu.model, ecu.power_w, ecu.lifetime_energy_kwh) == ("ECU-R", 190, 2127.9)
    assert ecu.last_seen == datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC)
    assert ecu.last_record_at == datetime(2024, 2, 6, 11, 22, 14)
    assert ecu.upstream == Upstream(
        result="ok", at=datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC), rtt_ms=83.1
    )
    yc600 = ecu.inverters[YC600_ID]
    assert (yc600.family, yc600.type_code, yc600.three_phase) == ("YC600", "07", False)
    assert [c.power_w for c in ecu.inverters[QS1_ID].channels] == [29, 38, 45, 43]


def test_three_phase_inverter() -> None:
    """phase_voltages_v marks three-phase inverters; bad entries are dropped."""
    inverter = load_state("state_mixed")["ecus"]["215000000001"]["inverters"][
        "502000006223"
    ]
    inverter["phase_voltages_v"] = [229, "x", 231.5]
    parsed = InverterState.from_message(inverter)
    assert parsed.three_phase
    assert parsed.phase_voltages_v == (229.0, 231.5)


def test_lenient_about_optional_values() -> None:
    """Wrong types in optional fields become None instead of errors."""
    ecu = capture_ecu() | {
        "power_w": "190",
        "inverters_online": True,
        "warnings": ["clock", 3, ""],
        "upstream": "broken",
        "last_seen": "yesterday",
        "inverters": {"x": "not an object"},
    }
    parsed = EcuState.from_message(ecu)
    assert parsed.power_w is None
    assert parsed.inverters_online is None
    assert parsed.warnings == ("clock",)
    assert parsed.upstream == Upstream()
    assert parsed.last_seen is None
    assert parsed.inverters == {}


def test_time_without_offset_counts_as_utc() -> None:
    """A last_seen without offset is read as UTC, never naive."""
    parsed = EcuState.from_message(capture_ecu() | {"last_seen": "2024-02-06T10:22:20"})
    assert parsed.last_seen == datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("factory", "payload", "match"),
    [
        (ServerInfo.from_message, {"type": "server_info"}, "schema_version"),
        (
            ServerInfo.from_message,
            {"type": "server_info", "schema_version": True, "server_id": "a"},
            "schema_version",
        ),
        (
            ServerInfo.from_message,
            {"type": "server_info", "schema_version": 1, "server_id": ""},
            "server_id",
        ),
        (EcuState.from_message, {"model": "ECU-R"}, "ecu_id"),
        (InverterState.from_message, {"family": "QS1"}, "'id'"),
        (ProxyState.from_message, {"ecus": []}, "ecus"),
        (Frame.from_message, {"raw": "x"}, "seq"),
        (ListenResult.from_message, {"state": None}, "last_seq"),
    ],
)
def test_identifying_fields_are_required(
    factory: Any, payload: dict[str, Any], match: str
) -> None:
    """Missing ids and counters are reported as InvalidMessage."""
    with pytest.raises(InvalidMessage, match=match):
        factory(payload)


def test_server_info_defaults() -> None:
    """min_schema_version defaults to schema_version; version to unknown."""
    info = ServerInfo.from_message(
        {"type": "server_info", "server_id": "abc", "schema_version": 1}
    )
    assert info == ServerInfo("abc", "unknown", 1, 1, False)


def test_events_and_apply() -> None:
    """Events parse by name and change only what they name."""
    state = ProxyState.from_message(load_state("state_capture"))
    ecu = capture_ecu() | {"power_w": 5}
    record = event_from_message(
        {"seq": 1, "event": "record", "data": {"ecu_id": CAPTURE_ECU, "ecu": ecu}}
    )
    assert isinstance(record, RecordEvent)
    assert not record.late
    assert state.apply(record).ecus[CAPTURE_ECU].power_w == 5

    new_inverter = ecu["inverters"][YC600_ID] | {"id": "408000000001"}
    added = event_from_message(
        {
            "seq": 2,
            "event": "inverter_added",
            "data": {"ecu_id": CAPTURE_ECU, "inverter": new_inverter},
        }
    )
    assert isinstance(added, InverterAddedEvent)
    assert "408000000001" in state.apply(added).ecus[CAPTURE_ECU].inverters
    assert state.ecus[CAPTURE_ECU].inverters.keys() == {YC600_ID, QS1_ID}

    status = event_from_message(
        {
            "seq": 3,
            "event": "ecu_status",
            "data": {"ecu_id": CAPTURE_ECU, "upstream": {"result": "cloudless"}},
        }
    )
    assert isinstance(status, EcuStatusEvent)
    assert state.apply(status).ecus[CAPTURE_ECU].upstream.result == "cloudless"

    assert event_from_message({"seq": 4, "event": "future", "data": {}}) is None
    with pytest.raises(InvalidMessage, match="ecu"):
        event_from_message({"seq": 5, "event": "record", "data": {"ecu_id": "1"}})
    with pytest.raises(InvalidMessage, match="data"):
        event_from_message({"seq": 6, "event": "record"})


def test_listen_result_skips_unknown_events() -> None:
    """A replay keeps the events it understands, in order."""
    result = ListenResult.from_message(
        {
            "last_seq": 9,
            "state": None,
            "events": [
                {"seq": 8, "event": "future", "data": {}},
                {
                    "seq": 9,
                    "event": "ecu_status",
                    "data": {"ecu_id": CAPTURE_ECU, "upstream": None},
                },
                "junk",
            ],
        }
    )
    assert result.state is None
    assert [e.seq for e in result.events] == [9]
