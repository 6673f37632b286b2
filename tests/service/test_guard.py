"""The guard's policy, options, counting and once-a-day log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from documents import guard_json

from ecu_proxy.contract.constants import GuardMode
from ecu_proxy.control import PLANT_CHANGING
from ecu_proxy.decoder import decode_frame
from ecu_proxy.guard import (
    BLOCKABLE_ACTIONS,
    CommandGate,
    Guard,
    GuardSettings,
)
from ecu_proxy.options import Options, OptionsError, options_from_mapping

CONTROL = Path(__file__).resolve().parent.parent / "fixtures" / "vectors" / "control"
ECU_ID = "213000000017"
SWITCH = (CONTROL / "14_fwlog_EMA_A111-all-on.txt").read_bytes()
ZONE = (CONTROL / "09_fwlog_EMA_A105-set-timezone.txt").read_bytes()
REPORTS = (CONTROL / "03_fwlog_EMA_A101-reply-cmd-A118.txt").read_bytes()


def test_reads_and_reports_pass_in_every_mode() -> None:
    for mode in GuardMode:
        guard = Guard(GuardSettings(mode, tuple(sorted(BLOCKABLE_ACTIONS))))
        assert not guard.blocks(decode_frame(REPORTS))


def test_modes() -> None:
    assert not Guard(GuardSettings()).blocks(decode_frame(SWITCH))
    assert Guard(GuardSettings(GuardMode.BLOCK_CHANGES)).blocks(decode_frame(ZONE))
    listed = Guard(GuardSettings(GuardMode.BLOCK_LISTED, ("set_time_zone",)))
    assert listed.blocks(decode_frame(ZONE))
    assert not listed.blocks(decode_frame(SWITCH))


def test_off_gives_no_gate() -> None:
    assert Guard(GuardSettings()).gate(1) is None
    assert isinstance(
        Guard(GuardSettings(GuardMode.BLOCK_CHANGES)).gate(1), CommandGate
    )


def test_blockable_actions_are_the_plant_changing_ones() -> None:
    assert {a.value for a in PLANT_CHANGING} == BLOCKABLE_ACTIONS


def test_options_from_the_addon() -> None:
    options = options_from_mapping(
        {"ema_command_guard": "block_listed", "blocked_actions": ["set_protection"]}
    ).validate()
    assert options.guard == GuardSettings(GuardMode.BLOCK_LISTED, ("set_protection",))
    assert Options().guard == GuardSettings(GuardMode.OFF, ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ema_command_guard": "sometimes"}, "ema_command_guard"),
        ({"blocked_actions": ["poll"]}, "not an action that changes the plant"),
        ({"ema_command_guard": "block_listed"}, "blocked_actions is empty"),
    ],
)
def test_bad_options_are_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        options_from_mapping(raw).validate()


def test_a_blocked_command_is_counted_each_time_and_logged_once_a_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [datetime(2026, 5, 1, 10, tzinfo=UTC)]
    guard = Guard(GuardSettings(GuardMode.BLOCK_CHANGES), clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="ecu_proxy.guard")

    def block(conn: int, raw: bytes) -> None:
        gate = guard.gate(conn)
        assert gate is not None
        assert gate.feed(raw, ECU_ID) == b""
        assert gate.take_reply() is not None
        assert gate.take_reply() is None

    block(1, SWITCH)
    block(2, SWITCH.replace(b"20170524095139", b"20170524101500"))  # sent again
    block(3, ZONE)
    assert len(caplog.records) == 2  # one line per distinct command
    now[0] += timedelta(days=1)
    block(4, SWITCH)
    assert len(caplog.records) == 3  # and again the next day
    assert guard_json(guard) == {
        "mode": "block_changes",
        "blocked_actions": [],
        "blocked_total": 4,
        "blocked_by_ecu": {ECU_ID: 4},
        "blocked_by_action": {"set_time_zone": 1, "switch_inverters": 3},
    }
    assert "A111" in caplog.records[0].getMessage()


def test_gate_passes_data_replies_and_trailing_lf() -> None:
    gate = Guard(GuardSettings(GuardMode.BLOCK_CHANGES)).gate(1)
    assert gate is not None
    assert gate.feed(REPORTS[:20], ECU_ID) == b""
    assert gate.feed(REPORTS[20:] + b"\n", ECU_ID) == REPORTS + b"\n"
    other = Guard(GuardSettings(GuardMode.BLOCK_CHANGES)).gate(2)
    assert other is not None
    assert other.feed(b"10120240206112214", ECU_ID) == b"10120240206112214"
    assert other.feed(SWITCH, ECU_ID) == SWITCH  # after non-APS bytes: pass-through


def test_gate_without_an_ecu_id_forwards() -> None:
    gate = Guard(GuardSettings(GuardMode.BLOCK_CHANGES)).gate(1)
    assert gate is not None
    nameless = SWITCH.replace(ECU_ID.encode(), b"00000000A--2")
    assert gate.feed(nameless, None) == nameless


def test_a_long_inverter_list_is_still_judged() -> None:
    ids = "".join(f"{408000000000 + n:012d}0END" for n in range(999))
    body = f"A111AAA0{ECU_ID}2099920170524095139END{ids}"
    frame = f"APS13{10 + len(body):05d}{body}".encode()
    assert len(frame) > 16_000
    gate = Guard(GuardSettings(GuardMode.BLOCK_CHANGES)).gate(1)
    assert gate is not None
    assert gate.feed(frame[:9000], ECU_ID) == b""
    assert gate.feed(frame[9000:], ECU_ID) == b""
    assert gate.blocked is not None
    assert gate.blocked.frame.control is not None
    assert len(gate.blocked.frame.control.parameters["inverter_ids"]) == 999
