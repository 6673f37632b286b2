"""Control-port frames decode to the action and parameters of the protocol spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from documents import frame_json

from ecu_proxy.control import PLANT_CHANGING, Action, decode_control
from ecu_proxy.decoder import decode_frame
from ecu_proxy.models import FrameKind

CONTROL = Path(__file__).resolve().parent.parent / "fixtures" / "vectors" / "control"
DEV_ECU = "213000000017"
TEST_ECU = "123456789013"

# file -> (outer command, inner command, action, changes the plant, parameters)
EXPECTED: dict[str, tuple[str, str, Action, bool, dict[str, Any]]] = {
    "02_fwlog_ECU_A101-poll.txt": ("A101", "A101", Action.POLL, False, {}),
    "03_fwlog_EMA_A101-reply-cmd-A118.txt": (
        "A101",
        "A118",
        Action.REQUEST_REPORTS,
        False,
        {},
    ),
    "04_fwlog_ECU_A102-inverter-list-1inv.txt": (
        "A102",
        "A102",
        Action.INVERTER_LIST_REPORT,
        False,
        {
            "firmware": "ECU_R_M3_1.0SAA--2",
            "count": 1,
            "inverter_ids": ["201702160001"],
        },
    ),
    "05_fwlog_ECU_A104-timezone-report.txt": (
        "A104",
        "A104",
        Action.TIME_ZONE_REPORT,
        False,
        {"time_zone": "Etc/GMT+8"},
    ),
    "06_fwlog_ECU_A106-comm-config-report.txt": (
        "A106",
        "A106",
        Action.EMA_SERVER_REPORT,
        False,
        {
            "servers": [
                {"channel": "1", "host": "eee.apsema.com", "ports": [8093, 8093]},
                {"channel": "2", "host": "111.apsema.com", "ports": [8997, 8997]},
            ]
        },
    ),
    "07_fwlog_ECU_A113-protection5-report.txt": (
        "A113",
        "A113",
        Action.PROTECTION_REPORT,
        False,
        {},
    ),
    "08_fwlog_ECU_A100-ack-A114.txt": (
        "A100",
        "A114",
        Action.ACKNOWLEDGEMENT,
        False,
        {
            "acknowledged": "A114",
            "acknowledged_action": "report",
            "timestamp": "20170522133749",
            "result": "done",
        },
    ),
    "09_fwlog_EMA_A105-set-timezone.txt": (
        "A105",
        "A105",
        Action.SET_TIME_ZONE,
        True,
        {"time_zone": "Etc/GMT-14"},
    ),
    "10_fwlog_ECU_A100-ack-A105.txt": (
        "A100",
        "A105",
        Action.ACKNOWLEDGEMENT,
        False,
        {
            "acknowledged": "A105",
            "acknowledged_action": "set_time_zone",
            "timestamp": "20170522135450",
            "result": "done",
        },
    ),
    "11_fwlog_EMA_A103-clear-inverters.txt": (
        "A103",
        "A103",
        Action.SET_INVERTER_LIST,
        True,
        {"mode": "clear", "count": 0, "inverter_ids": []},
    ),
    "12_fwlog_EMA_A103-add-2-inverters.txt": (
        "A103",
        "A103",
        Action.SET_INVERTER_LIST,
        True,
        {"mode": "add", "count": 2, "inverter_ids": ["201703150001", "201703220001"]},
    ),
    "13_fwlog_ECU_A102-inverter-list-2inv.txt": (
        "A102",
        "A102",
        Action.INVERTER_LIST_REPORT,
        False,
        {
            "firmware": "ECU_R_M3_1.0SAA--2",
            "count": 2,
            "inverter_ids": ["201703150001", "201703220001"],
        },
    ),
    "14_fwlog_EMA_A111-all-on.txt": (
        "A111",
        "A111",
        Action.SWITCH_INVERTERS,
        True,
        {"scope": "all_on", "count": 0, "inverter_ids": []},
    ),
    "17_fwlog_EMA_A112-clear-gfdi.txt": (
        "A112",
        "A112",
        Action.CLEAR_GFDI,
        True,
        {"count": 0, "inverter_ids": []},
    ),
    "19_fwlog_EMA_A132-set-protection17.txt": (
        "A132",
        "A132",
        Action.SET_PROTECTION,
        True,
        {},
    ),
    "20_fwlog_ECU_A130-protection17-report.txt": (
        "A130",
        "A130",
        Action.PROTECTION_REPORT,
        False,
        {},
    ),
    "21_fwlog_ECU_A120-protection13-report.txt": (
        "A120",
        "A120",
        Action.PROTECTION_REPORT,
        False,
        {},
    ),
    "22_fwlog_ECU_A104-timezone-report-after-change.txt": (
        "A104",
        "A104",
        Action.TIME_ZONE_REPORT,
        False,
        {"time_zone": "Etc/GMT-14"},
    ),
    "23_fwdoc_EMA_A100-no-more-commands.txt": (
        "A100",
        "A101",
        Action.NO_MORE_COMMANDS,
        False,
        {},
    ),
    "24_vendordoc_EMA_A119-ecu-flag.txt": (
        "A119",
        "A119",
        Action.SET_REPORTING,
        True,
        {"reporting": "on"},
    ),
    "25_vendordoc_ECU_A119-response.txt": (
        "A119",
        "A119",
        Action.SET_REPORTING,
        True,
        {"reporting": "off"},
    ),
    "28_vendordoc_EMA_A150.txt": ("A150", "A150", Action.UNKNOWN, True, {}),
    "29_vendordoc_EMA_A108-custom-cmd.txt": (
        "A108",
        "A108",
        Action.CUSTOM_COMMAND,
        True,
        {"text": "restart NTP"},
    ),
    "30_vendordoc_ECU_A100-ack-flag2.txt": (
        "A100",
        "A134",
        Action.ACKNOWLEDGEMENT,
        False,
        {
            "acknowledged": "A134",
            "acknowledged_action": "unknown",
            "timestamp": None,
            "result": "unknown_command",
        },
    ),
    "31_vendordoc_ECU_A100-ack-A138-odd.txt": (
        "A100",
        "A138",
        Action.ACKNOWLEDGEMENT,
        False,
        {
            "acknowledged": "A138",
            "acknowledged_action": "unknown",
            "timestamp": None,
            "result": "done",
        },
    ),
}
TRUNCATED = "18_fwlog_EMA_A127-set-ird_TRUNCATED-in-publication.txt"


def test_every_shared_frame_has_an_expectation() -> None:
    files = {p.name for p in CONTROL.glob("*.txt")}
    assert files == {*EXPECTED, TRUNCATED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_frame_decodes_to_its_action(name: str) -> None:
    command, inner, action, changes, parameters = EXPECTED[name]
    raw = (CONTROL / name).read_bytes()
    frame = decode_frame(raw)
    assert frame.kind is FrameKind.CONTROL, frame.error
    assert frame.command == command
    assert frame.control is not None
    assert frame.control.inner_command == inner
    assert frame.control.action is action
    assert frame.control.changes_plant is changes
    assert frame.control.parameters == parameters
    # The development build writes "00000000A--2" where its id belongs.
    expected_id = (
        None if "A102" in name else (TEST_ECU if "vendordoc" in name else DEV_ECU)
    )
    assert frame.ecu_id == expected_id


def test_unknown_command_keeps_its_raw_text() -> None:
    frame = decode_frame((CONTROL / "28_vendordoc_EMA_A150.txt").read_bytes())
    assert frame.control is not None
    assert frame.control.raw_text == (
        "000200000000000000END201703150001U201703150002END201703220001U201703220002END"
    )
    out = frame_json(frame)
    assert out["action"] == "unknown"
    assert out["raw_text"] == frame.control.raw_text


def test_truncated_publication_is_invalid() -> None:
    frame = decode_frame((CONTROL / TRUNCATED).read_bytes())
    assert frame.kind is FrameKind.INVALID
    assert frame.error is not None
    assert frame.error.startswith("truncated")


def test_body_too_short_for_its_command_keeps_the_action_and_says_why() -> None:
    # Length field and length agree, but an A105 needs a timestamp and a zone.
    body = f"A105AAA0{DEV_ECU}2017052213END"
    text = f"APS13{10 + len(body):05d}{body}"
    frame = decode_frame(text.encode())
    assert frame.kind is FrameKind.CONTROL
    assert frame.control is not None
    assert frame.control.action is Action.SET_TIME_ZONE
    assert frame.control.changes_plant is True
    assert frame.control.parameters == {}
    assert frame.control.raw_text == "2017052213END"
    assert frame.control.problem == (
        "truncated: an A105 command needs at least 47 characters, got 43"
    )


def test_too_short_acknowledgement_is_not_a_plant_change() -> None:
    details = decode_control(f"APS1300040A100AAA0{DEV_ECU}A105201705")
    assert not isinstance(details, str)
    assert details.action is Action.ACKNOWLEDGEMENT
    assert details.changes_plant is False
    assert details.problem is not None


def test_text_without_a_command_header_is_an_error() -> None:
    assert decode_control("APS1300020A105AAA0") == (
        "truncated: a control frame needs at least 30 characters, got 18"
    )


def test_switch_list_carries_inverter_ids() -> None:
    body = f"A111AAA0{DEV_ECU}2000220170524095139END4080001111781END8060002222220END"
    text = f"APS13{10 + len(body) + 0:05d}{body}"
    details = decode_control(text)
    assert not isinstance(details, str)
    assert details.parameters == {
        "scope": "list",
        "count": 2,
        "inverter_ids": ["408000111178", "806000222222"],
    }


def test_json_form_of_a_control_frame() -> None:
    frame = decode_frame((CONTROL / "09_fwlog_EMA_A105-set-timezone.txt").read_bytes())
    assert frame_json(frame) == {
        "kind": "control",
        "version": "13",
        "length": 57,
        "command": "A105",
        "ecu_id": DEV_ECU,
        "inner_command": "A105",
        "action": "set_time_zone",
        "changes_plant": True,
        "parameters": {"time_zone": "Etc/GMT-14"},
        "raw_text": None,
        "problem": None,
    }


def test_plant_changing_actions_are_commands_not_reports() -> None:
    assert Action.UNKNOWN in PLANT_CHANGING
    for action in PLANT_CHANGING:
        assert not action.value.endswith("_report")
