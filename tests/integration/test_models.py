"""The integration's picture of the service, built from contract messages."""

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from custom_components.apsystems_ema_proxy.contract.codec import ContractError, decode
from custom_components.apsystems_ema_proxy.contract.constants import (
    CommandOutcome,
    GuardMode,
    UpstreamResult,
)
from custom_components.apsystems_ema_proxy.contract.messages import (
    EmaCommandData,
    ListenResult,
    decode_event,
)
from custom_components.apsystems_ema_proxy.contract.state import (
    CommandAnswer,
    Document,
    Ecu,
    Upstream,
)
from custom_components.apsystems_ema_proxy.models import (
    ProxyState,
    answer_text,
    command_name,
    empty_ecu,
)

from .conftest import CAPTURE_ECU, QS1_ID, YC600_ID, load_state

NO_UPLOAD = {"result": None, "at": None, "rtt_ms": None, "detail": None}


def capture_state() -> ProxyState:
    """Return the capture's state as the integration keeps it."""
    return ProxyState.from_document(decode(Document, load_state("state_capture")))


def capture_ecu() -> dict[str, Any]:
    """Return the capture's ECU object."""
    ecu: dict[str, Any] = load_state("state_capture")["ecus"][CAPTURE_ECU]
    return ecu


def test_state_from_capture() -> None:
    """The capture's state holds the values the ECU reported."""
    ecu = capture_state().ecus[CAPTURE_ECU]
    assert (ecu.model, ecu.power_w, ecu.lifetime_energy_kwh) == ("ECU-R", 190, 2127.9)
    assert ecu.last_seen == datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC)
    assert ecu.last_record_at == datetime(2024, 2, 6, 11, 22, 14)
    assert ecu.upstream == Upstream(
        UpstreamResult.OK, datetime(2024, 2, 6, 10, 22, 20, tzinfo=UTC), 83.1, None
    )
    yc600 = ecu.inverters[YC600_ID]
    assert (yc600.family, yc600.type_code, yc600.three_phase) == ("YC600", "07", False)
    assert [c.power_w for c in ecu.inverters[QS1_ID].channels] == [29, 38, 45, 43]


def test_three_phase_inverter() -> None:
    """phase_voltages_v marks three-phase inverters."""
    mixed = decode(Document, load_state("state_mixed"))
    inverter = mixed.ecus["215000000001"].inverters["502000006223"]
    assert inverter.three_phase
    assert inverter.phase_voltages_v == [229.0, 231.0, 230.0]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"power_w": "190"}, "$.power_w"),
        ({"upstream": "broken"}, "$.upstream"),
        ({"last_seen": "yesterday"}, "$.last_seen"),
        ({"inverters": {"x": "not an object"}}, "$.inverters.x"),
    ],
)
def test_values_of_the_wrong_type_are_refused(
    change: dict[str, Any], where: str
) -> None:
    """A value the contract does not admit is an error that names its path."""
    with pytest.raises(ContractError, match=rf"^{re.escape(where)}:"):
        decode(Ecu, capture_ecu() | change)


def test_events_and_apply() -> None:
    """Events change only what they name."""
    state = capture_state()
    ecu = capture_ecu() | {"power_w": 5}
    record = decode_event(
        {
            "type": "event",
            "seq": 1,
            "event": "record",
            "data": {"ecu_id": CAPTURE_ECU, "ecu": ecu, "late": False},
        }
    )
    assert record is not None
    assert state.apply(record).ecus[CAPTURE_ECU].power_w == 5

    new_inverter = dict(ecu["inverters"][YC600_ID]) | {"id": "408000000001"}
    added = decode_event(
        {
            "seq": 2,
            "event": "inverter_added",
            "data": {"ecu_id": CAPTURE_ECU, "inverter": new_inverter},
        }
    )
    assert added is not None
    applied = state.apply(added).ecus[CAPTURE_ECU].inverters["408000000001"]
    assert applied.peak_power_today_w is None  # its record event brings them
    assert state.ecus[CAPTURE_ECU].inverters.keys() == {YC600_ID, QS1_ID}

    status = decode_event(
        {
            "seq": 3,
            "event": "ecu_status",
            "data": {
                "ecu_id": CAPTURE_ECU,
                "upstream": NO_UPLOAD | {"result": "cloudless"},
            },
        }
    )
    assert status is not None
    assert state.apply(status).ecus[CAPTURE_ECU].upstream.result == "cloudless"

    unknown_ecu = decode_event(
        {
            "seq": 4,
            "event": "ecu_status",
            "data": {"ecu_id": "1", "upstream": NO_UPLOAD},
        }
    )
    assert unknown_ecu is not None
    assert state.apply(unknown_ecu).ecus["1"] == empty_ecu("1")

    assert decode_event({"seq": 5, "event": "future", "data": {}}) is None
    with pytest.raises(ContractError, match="ecu"):
        decode_event({"seq": 6, "event": "record", "data": {"ecu_id": "1"}})
    with pytest.raises(ContractError, match="data"):
        decode_event({"seq": 7, "event": "record"})


def test_listen_result_skips_unknown_events() -> None:
    """A replay keeps the events it understands, in order."""
    result = decode(
        ListenResult,
        {
            "last_seq": 9,
            "state": None,
            "events": [
                {"seq": 8, "event": "future", "data": {}},
                {
                    "seq": 9,
                    "event": "ecu_status",
                    "data": {"ecu_id": CAPTURE_ECU, "upstream": NO_UPLOAD},
                },
            ],
        },
    )
    assert result.state is None
    assert [e.seq for e in result.events] == [9]
    with pytest.raises(ContractError, match=r"events\[0\]"):
        decode(ListenResult, {"last_seq": 9, "state": None, "events": ["junk"]})


def test_command_words() -> None:
    """The command shown is the inner one; the answer names its result."""
    command = EmaCommandData(
        at=datetime(2024, 2, 6, tzinfo=UTC),
        ecu_id=CAPTURE_ECU,
        command="A101",
        inner_command="A105",
        action="set_time_zone",
        changes_plant=True,
        parameters={},
        raw_text=None,
        outcome=CommandOutcome.FORWARDED,
        blocked=False,
        guard=GuardMode.OFF,
        answer=None,
        blocked_count=0,
    )
    assert command_name(command) == "A105"
    assert answer_text(command) is None
    assert command_name(dataclasses.replace(command, inner_command=None)) == "A101"
    acknowledged = CommandAnswer("A100", "acknowledgement", "done", {})
    assert answer_text(dataclasses.replace(command, answer=acknowledged)) == (
        "acknowledgement: done"
    )
