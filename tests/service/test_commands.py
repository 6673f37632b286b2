"""The command log: EMA's commands paired with the ECU's answers, kept on disk."""

from __future__ import annotations

import asyncio
import errno
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import pytest
from documents import command_json
from stand_ins import CAPTURE, ECU_HOST, EMA_HOST, EmaConnection, FakeEcu, StandInEma
from stand_ins import free_port_pair as free_port

from ecu_proxy.cloudless import encode_no_more_commands
from ecu_proxy.commands import FILE_NAME, FORMAT, CommandLog
from ecu_proxy.contract.constants import GuardMode
from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_control_poll
from ecu_proxy.hub import Event, Hub
from ecu_proxy.models import Direction, FrameEvent
from ecu_proxy.options import Options
from ecu_proxy.relay import Relay
from ecu_proxy.upstream import UpstreamResolver

if TYPE_CHECKING:
    from ecu_proxy.hub import Subscription

CONTROL = Path(__file__).resolve().parent.parent / "fixtures" / "vectors" / "control"
# Written by the command log of earlier versions: see tests/fixtures/commands.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "commands"
SCHEMA = Path(__file__).parents[2] / "docs" / "state.schema.json"
ECU_ID = "213000000017"
NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
POLL = (CONTROL / "02_fwlog_ECU_A101-poll.txt").read_bytes()
SET_ZONE = (CONTROL / "09_fwlog_EMA_A105-set-timezone.txt").read_bytes()
ACK_ZONE = (CONTROL / "10_fwlog_ECU_A100-ack-A105.txt").read_bytes()
SWITCH = (CONTROL / "14_fwlog_EMA_A111-all-on.txt").read_bytes()
NO_MORE = (CONTROL / "23_fwdoc_EMA_A100-no-more-commands.txt").read_bytes()


def event(
    conn: int, direction: Direction, raw: bytes, at: datetime = NOW
) -> FrameEvent:
    return FrameEvent(conn, 8997, "192.0.2.10", direction, raw, decode_frame(raw), at)


ECU = Direction.ECU_TO_EMA
EMA = Direction.EMA_TO_ECU


def test_a_command_and_its_acknowledgement_become_one_entry(tmp_path: Path) -> None:
    log = CommandLog(tmp_path, clock=lambda: NOW)
    assert log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.OFF) == []
    assert (
        log.observe(event(1, EMA, SET_ZONE), blocked=False, guard=GuardMode.OFF) == []
    )
    [entry] = log.observe(event(1, ECU, ACK_ZONE), blocked=False, guard=GuardMode.OFF)
    assert command_json(entry) == {
        "at": NOW.isoformat(),
        "ecu_id": ECU_ID,
        "command": "A105",
        "inner_command": "A105",
        "action": "set_time_zone",
        "changes_plant": True,
        "parameters": {"time_zone": "Etc/GMT-14"},
        "raw_text": None,
        "outcome": "forwarded",
        "blocked": False,
        "guard": "off",
        "answer": {
            "command": "A105",
            "action": "acknowledgement",
            "result": "done",
            "parameters": {
                "acknowledged": "A105",
                "acknowledged_action": "set_time_zone",
                "timestamp": "20170522135450",
                "result": "done",
            },
        },
    }
    # "No more commands" and the next poll are not commands.
    assert log.observe(event(2, ECU, POLL), blocked=False, guard=GuardMode.OFF) == []
    assert log.observe(event(2, EMA, NO_MORE), blocked=False, guard=GuardMode.OFF) == []
    assert len(log.entries(ECU_ID)) == 1


def test_a_blocked_command_is_finished_at_once(tmp_path: Path) -> None:
    log = CommandLog(tmp_path, clock=lambda: NOW)
    log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.BLOCK_CHANGES)
    [entry] = log.observe(
        event(1, EMA, SWITCH), blocked=True, guard=GuardMode.BLOCK_CHANGES
    )
    assert entry.outcome == "blocked"
    assert entry.answer is None
    assert entry.parameters == {"scope": "all_on", "count": 0, "inverter_ids": []}


def test_an_unanswered_command_closes_at_the_next_poll(tmp_path: Path) -> None:
    log = CommandLog(tmp_path, clock=lambda: NOW)
    log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.OFF)
    assert log.observe(event(1, EMA, SWITCH), blocked=False, guard=GuardMode.OFF) == []
    [entry] = log.observe(event(2, ECU, POLL), blocked=False, guard=GuardMode.OFF)
    assert entry.action == "switch_inverters"
    assert entry.answer is None


async def test_entries_survive_a_restart_and_expire_after_the_retention(
    tmp_path: Path,
) -> None:
    clock = [NOW]
    log = CommandLog(tmp_path, clock=lambda: clock[0], retention=timedelta(days=2))
    await log.start()
    log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.OFF)
    log.observe(event(1, EMA, SWITCH), blocked=True, guard=GuardMode.OFF)
    await log.stop()
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert saved["format"] == FORMAT
    assert saved["clean"] is True
    assert [e["action"] for e in saved["ecus"][ECU_ID]] == ["switch_inverters"]

    again = CommandLog(tmp_path, clock=lambda: clock[0], retention=timedelta(days=2))
    await again.start()
    await again.stop()
    assert [command_json(e) for e in again.entries(ECU_ID)] == [
        command_json(e) for e in log.entries(ECU_ID)
    ]
    clock[0] = NOW + timedelta(days=3)
    later = CommandLog(tmp_path, clock=lambda: clock[0], retention=timedelta(days=2))
    await later.start()
    await later.stop()
    assert later.entries(ECU_ID) == []
    assert json.loads((tmp_path / FILE_NAME).read_text())["ecus"] == {}


async def test_a_change_is_saved_after_the_delay_without_a_stop(
    tmp_path: Path,
) -> None:
    log = CommandLog(tmp_path, clock=lambda: NOW, save_delay=0.01)
    await log.start()
    try:
        await log.store.wait_saved()  # the first save of a fresh start
        log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.OFF)
        log.observe(event(1, EMA, SWITCH), blocked=True, guard=GuardMode.OFF)
        async with asyncio.timeout(10):
            await log.store.wait_saved()
        saved = json.loads((tmp_path / FILE_NAME).read_text())
        assert saved["clean"] is False
        assert [e["action"] for e in saved["ecus"][ECU_ID]] == ["switch_inverters"]
    finally:
        await log.stop()


async def test_a_file_written_before_the_store_still_loads(tmp_path: Path) -> None:
    # format 1 as the command log's own saver wrote it: no saved_at, no clean
    written = (FIXTURES / "format-1.json").read_bytes()
    (tmp_path / FILE_NAME).write_bytes(written)
    log = CommandLog(tmp_path, clock=lambda: datetime(2024, 2, 8, tzinfo=UTC))
    await log.start()
    await log.stop()
    by_ecu = json.loads(written)["ecus"]
    for ecu_id in ("213000000017", "216000064136"):
        assert [command_json(e) for e in log.entries(ecu_id)] == by_ecu[ecu_id]
    [answered, unanswered] = log.entries("213000000017")
    assert answered.answer is not None
    assert answered.answer.result == "done"
    assert unanswered.answer is None
    [blocked] = log.entries("216000064136")
    assert blocked.outcome == "blocked"
    assert blocked.guard == "block_changes"
    rewritten = json.loads((tmp_path / FILE_NAME).read_text())
    assert rewritten["format"] == FORMAT
    assert rewritten["ecus"] == by_ecu
    assert corrupt_files(tmp_path) == []


def corrupt_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob(f"{FILE_NAME}.corrupt-*"))


def stored(entry: dict[str, object], **changes: object) -> str:
    return json.dumps({"format": 1, "ecus": {ECU_ID: [{**entry, **changes}]}})


ENTRY = json.loads((FIXTURES / "format-1.json").read_text())["ecus"][ECU_ID][1]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": 9, "ecus": {}}',
        '{"format": 1}',
        '{"format": 1, "ecus": []}',
        stored(ENTRY, at="2024-02-07T08:05:00"),  # no zone: cannot expire
        stored(ENTRY, outcome="ignored"),
        '{"format": 1, "ecus": {}, "x": NaN}',
    ],
)
async def test_an_unreadable_file_is_moved_aside_and_the_log_starts_empty(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    log = CommandLog(tmp_path, clock=lambda: NOW)
    await log.start()
    assert log.entries(ECU_ID) == []
    [aside] = corrupt_files(tmp_path)
    assert aside.read_text() == content  # kept, not deleted
    assert f"{FILE_NAME} unusable" in caplog.text
    log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.OFF)
    log.observe(event(1, EMA, SWITCH), blocked=True, guard=GuardMode.OFF)
    await log.stop()
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert [e["action"] for e in saved["ecus"][ECU_ID]] == ["switch_inverters"]


async def test_entries_filed_under_another_ecu_are_dropped(tmp_path: Path) -> None:
    document = {"format": 1, "ecus": {ECU_ID: [ENTRY], "216000064136": [ENTRY]}}
    (tmp_path / FILE_NAME).write_text(json.dumps(document))
    log = CommandLog(tmp_path, clock=lambda: datetime(2024, 2, 8, tzinfo=UTC))
    await log.start()
    await log.stop()
    assert [command_json(e) for e in log.entries(ECU_ID)] == [ENTRY]
    assert log.entries("216000064136") == []


async def test_a_refused_save_is_said_once_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = threading.Semaphore(0)

    def refuse(path: Path, data: bytes, mode: int = 0o600) -> None:
        failures.release()
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("ecu_proxy.storage.write_atomic", refuse)
    log = CommandLog(tmp_path, clock=lambda: NOW, save_delay=0.0, retry_delay=0.01)
    await log.start()
    log.observe(event(1, ECU, POLL), blocked=False, guard=GuardMode.OFF)
    log.observe(event(1, EMA, SWITCH), blocked=True, guard=GuardMode.OFF)
    for _ in range(3):  # the first save and two retries fail
        assert await asyncio.to_thread(failures.acquire, timeout=10)
    assert log.store.disk_problem is not None
    assert "Read-only" in log.store.disk_problem
    assert [e.action for e in log.entries(ECU_ID)] == ["switch_inverters"]
    await log.stop()
    problems = [m for m in caplog.messages if "cannot save the command log" in m]
    assert len(problems) == 1
    assert FILE_NAME in problems[0]
    assert not (tmp_path / FILE_NAME).exists()


async def next_event(sub: Subscription, name: str) -> Event:
    async with asyncio.timeout(10):
        while True:
            item = await sub.get()
            if isinstance(item, Event) and item.name == name:
                return item


async def test_relay_and_hub_publish_a_blocked_command_and_keep_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    options = Options(
        listen=ECU_HOST,
        ports=(port,),
        ema_host=EMA_HOST,
        data_dir=tmp_path,
        connect_timeout=5.0,
        ema_command_guard=GuardMode.BLOCK_CHANGES,
    ).validate()
    hub = Hub(options, server_id="a" * 32, version="9.9.9")
    await hub.start()
    sub = hub.subscribe(100)
    sub.listen(hub.last_seq)

    async def handler(conn: EmaConnection) -> None:
        await conn.read_frame()
        await conn.send(SWITCH)
        await conn.read_to_eof()

    ema = StandInEma(port, handler=handler)
    await ema.start()
    upstream = UpstreamResolver(EMA_HOST, (), tmp_path, allow_local=True)
    relay = Relay(options, hub, upstream=upstream, cloudless=None, guard=hub.guard)
    await relay.start()
    try:
        ecu = await FakeEcu.connect(relay.bound_ports[port])
        await ecu.send(encode_control_poll(ECU_ID))
        assert await ecu.read_to_eof() == encode_no_more_commands(ECU_ID)
        published = await next_event(sub, "ema_command")
    finally:
        await relay.stop()
        await ema.stop()
        await hub.stop()
    assert published.data["action"] == "switch_inverters"
    assert published.data["blocked"] is True
    assert published.data["guard"] == "block_changes"
    assert published.data["blocked_count"] == 1

    restarted = Hub(options, server_id="a" * 32, version="9.9.9")
    await restarted.start()
    try:
        assert [e.action for e in restarted.commands.entries(ECU_ID)] == [
            "switch_inverters"
        ]
        snapshot = restarted.snapshot()
        assert snapshot["guard"]["mode"] == "block_changes"
        jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(
            snapshot
        )
    finally:
        await restarted.stop()


async def test_state_lists_the_commands_of_each_ecu(tmp_path: Path) -> None:
    hub = Hub(Options(data_dir=tmp_path), server_id="a" * 32, version="9.9.9")
    await hub.start()
    try:
        now = datetime.now(UTC)
        data = CAPTURE.removesuffix(b"\n")
        hub.frame_received(event(7, ECU, data, now))
        ecu_id = "216000064136"
        poll = encode_control_poll(ecu_id).removesuffix(b"\n")
        hub.frame_received(event(8, ECU, poll, now))
        switch = SWITCH.replace(ECU_ID.encode(), ecu_id.encode())
        hub.frame_received(event(8, EMA, switch, now))
        hub.frame_received(event(9, ECU, poll, now))
        snapshot = hub.snapshot()
    finally:
        await hub.stop()
    [command] = snapshot["ecus"]["216000064136"]["commands"]
    assert command["action"] == "switch_inverters"
    assert command["outcome"] == "forwarded"
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(snapshot)
