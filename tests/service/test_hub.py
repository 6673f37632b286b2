"""The hub: applying frames, events, subscriptions, frame capture, saving, loading."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from stand_ins import VECTORS

from ecu_proxy.decoder import decode_frame
from ecu_proxy.hub import CAPTURE_RAW_LIMIT, FRAME_BUFFER, SEQ_GAP_AFTER_CRASH, Hub
from ecu_proxy.models import (
    Channel,
    DecodedFrame,
    Direction,
    FrameEvent,
    FrameKind,
    Inverter,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.options import Options
from ecu_proxy.state_file import FORMAT, STATE_FILE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ECU = "216000064136"
YC600 = "408000111178"
DAY = datetime(2024, 2, 6, 11, 0, 0)
RECEIVED = datetime(2024, 2, 6, 10, 0, 5, tzinfo=UTC)
SCHEMA = Path(__file__).parents[2] / "docs" / "state.schema.json"
WAIT = 10.0


def fixed_clock() -> datetime:
    return datetime(2024, 2, 7, 3, 4, 5, tzinfo=UTC)


def inverter(inv_id: str = YC600, type_code: str = "07") -> Inverter:
    return Inverter(
        id=inv_id,
        type_code=type_code,
        family="YC600",
        ac_voltage_v=228.0,
        frequency_hz=50.0,
        temperature_c=13.0,
        power_w=35.0,
        round_energy_wh=None,
        channels=(
            Channel(1, 33.8, 0.5, 17.0, 1.409),
            Channel(2, 33.9, 0.5, 18.0, 1.419),
        ),
    )


def frame_event(
    frame: DecodedFrame,
    direction: Direction = Direction.ECU_TO_EMA,
    raw: bytes = b"APS18AA302AAAAAAA1...END\n",
) -> FrameEvent:
    return FrameEvent(1, 8995, "192.0.2.10:40000", direction, raw, frame, RECEIVED)


def data(at: datetime, *invs: Inverter, lifetime: float = 2127.9) -> FrameEvent:
    inverters = invs or (inverter(),)
    return frame_event(
        DecodedFrame(
            kind=FrameKind.DATA,
            version="18",
            length=302,
            ecu_id=ECU,
            ecu_model="ECU-R",
            timestamp=at,
            power_w=190.0,
            round_energy_kwh=0.0,
            lifetime_energy_kwh=lifetime,
            inverter_count=len(inverters),
            more_records=False,
            inverters=inverters,
        )
    )


def make_hub(data_dir: Path, capture: bool = True) -> Hub:
    options = Options(data_dir=data_dir, capture_frames=capture)
    return Hub(
        options,
        server_id="a" * 32,
        version="9.9.9",
        clock=fixed_clock,
        save_delay=0.01,
    )


STATE_FIXTURES = Path(__file__).parents[1] / "fixtures" / "state"


def corrupt_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob(f"{STATE_FILE}.corrupt-*"))


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = make_hub(tmp_path)
    await h.start()
    yield h
    await h.stop()


# --- the published JSON Schema ----------------------------------------------------


def check_schema(value: Any) -> None:
    root = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(root)
    jsonschema.Draft202012Validator(root).validate(value)


def test_schema_rejects_wrong_documents() -> None:
    with pytest.raises(jsonschema.ValidationError):
        check_schema({"server_id": "x"})
    good = {"server_id": "x", "version": "1", "schema_version": 1, "ecus": {}}
    check_schema(good)
    with pytest.raises(jsonschema.ValidationError):
        check_schema(good | {"extra": 1})
    with pytest.raises(jsonschema.ValidationError):
        check_schema(good | {"ecus": {ECU: {"ecu_id": 5}}})


# --- applying frames -------------------------------------------------------------


async def test_snapshot_matches_schema(hub: Hub) -> None:
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
        raw="7030",
    )
    hub.frame_received(data(DAY, inverter(), unknown))
    hub.upstream_result(UpstreamReport(ECU, 8995, UpstreamResult.OK, RECEIVED, 83.14))
    snapshot = hub.snapshot()
    check_schema(snapshot)
    assert snapshot["server_id"] == "a" * 32
    assert snapshot["version"] == "9.9.9"
    assert snapshot["ecus"][ECU]["upstream"]["rtt_ms"] == 83.1
    assert json.loads(json.dumps(snapshot)) == snapshot


async def test_only_uploads_from_the_ecu_change_state(hub: Hub) -> None:
    echoed = data(DAY)
    hub.frame_received(frame_event(echoed.frame, direction=Direction.EMA_TO_ECU))
    reply = DecodedFrame(
        kind=FrameKind.EMA_REPLY, version=None, length=3, status="1", timestamps=()
    )
    hub.frame_received(frame_event(reply, Direction.EMA_TO_ECU, b"100"))
    assert hub.snapshot()["ecus"] == {}
    assert hub.last_seq == 0
    # both frames are captured all the same
    frames = hub.frames()
    assert [f["decoded"]["kind"] for f in frames] == ["data", "ema_reply"]
    assert frames[1]["raw"] == "100"


async def test_events_for_new_inverters_records_and_status(hub: Hub) -> None:
    sub = hub.subscribe(max_queue=10)
    sub.listen(hub.last_seq)
    hub.frame_received(data(DAY))
    hub.frame_received(data(DAY))  # duplicate: no event
    hub.frame_received(data(DAY - timedelta(minutes=5)))  # late
    hub.upstream_result(UpstreamReport(ECU, 8995, UpstreamResult.CLOUDLESS, RECEIVED))
    hub.upstream_result(UpstreamReport(None, 8997, UpstreamResult.OK, RECEIVED))
    names = []
    for _ in range(4):
        async with asyncio.timeout(WAIT):
            item = await sub.get()
        assert not isinstance(item, str)
        names.append((item.seq, item.name, item.data.get("late")))
    assert names == [
        (1, "inverter_added", None),
        (2, "record", False),
        (3, "record", True),
        (4, "ecu_status", None),
    ]
    assert hub.last_seq == 4
    assert hub.stored_timestamps(ECU) == ["20240206110000", "20240206105500"]


async def test_subscription_waits_for_listen_and_skips_old_events(hub: Hub) -> None:
    sub = hub.subscribe(max_queue=10)
    hub.frame_received(data(DAY))  # two events while not listening
    assert sub.send("hello")
    sub.listen(after_seq=hub.last_seq)
    hub.frame_received(data(DAY + timedelta(minutes=5)))
    async with asyncio.timeout(WAIT):
        assert await sub.get() == "hello"
        item = await sub.get()
    assert not isinstance(item, str)
    assert item.seq == 3
    assert json.loads(item.json) == {
        "type": "event",
        "seq": 3,
        "event": "record",
        "data": item.data,
    }
    sub.close()
    assert hub.subscriber_count == 0
    assert not sub.send("after close")


async def test_overflowing_subscription_is_dropped(hub: Hub) -> None:
    slow = hub.subscribe(max_queue=2)
    other = hub.subscribe(max_queue=100)
    slow.listen(0)
    other.listen(0)
    for i in range(5):
        hub.frame_received(data(DAY + timedelta(minutes=5 * i)))
    assert slow.overflowed.is_set()
    assert hub.subscriber_count == 1
    assert not other.overflowed.is_set()
    seqs = []
    for _ in range(6):
        async with asyncio.timeout(WAIT):
            item = await other.get()
        assert not isinstance(item, str)
        seqs.append(item.seq)
    assert seqs == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="max_queue"):
        hub.subscribe(0)


async def test_frame_buffer_keeps_the_last_200(hub: Hub) -> None:
    for i in range(FRAME_BUFFER + 25):
        hub.frame_received(data(DAY + timedelta(minutes=i)))
    frames = hub.frames()
    assert len(frames) == FRAME_BUFFER
    assert frames[0]["seq"] == 26
    assert frames[-1]["seq"] == FRAME_BUFFER + 25
    assert [f["seq"] for f in hub.frames(3)] == [223, 224, 225]
    assert hub.frames(0) == []


async def test_raw_frame_bytes_that_are_not_text_stay_visible(hub: Hub) -> None:
    garbage = DecodedFrame(kind=FrameKind.INVALID, version=None, length=4, error="x")
    hub.frame_received(frame_event(garbage, raw=b"\xffAPS\n"))
    assert hub.frames()[0]["raw"] == "\\xffAPS\n"


async def test_long_garbage_is_captured_cut_to_the_limit(hub: Hub) -> None:
    garbage = DecodedFrame(kind=FrameKind.INVALID, version=None, length=0, error="x")
    size = CAPTURE_RAW_LIMIT * 6
    hub.frame_received(frame_event(garbage, raw=b"\xff" * size))
    hub.frame_received(frame_event(garbage, raw=b"short"))
    long, short = hub.frames()
    assert long["size"] == size
    assert long["truncated"] is True
    assert long["raw"] == "\\xff" * CAPTURE_RAW_LIMIT
    assert (short["size"], short["truncated"], short["raw"]) == (5, False, "short")


async def test_a_failure_inside_never_reaches_the_relay(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(hub.state, "apply_record", broken)
    monkeypatch.setattr(hub.state, "apply_upstream", broken)
    with caplog.at_level(logging.ERROR):
        hub.frame_received(data(DAY))
        hub.upstream_result(UpstreamReport(ECU, 8995, UpstreamResult.OK, RECEIVED))
    assert len([r for r in caplog.records if "boom" in (r.exc_text or "")]) == 2
    assert len(hub.frames()) == 1


# --- saving and loading ----------------------------------------------------------


async def test_changes_are_saved_soon_and_survive_a_restart(tmp_path: Path) -> None:
    first = make_hub(tmp_path)
    await first.start()
    async with asyncio.timeout(WAIT):
        await first.wait_saved()  # the fresh sequence number goes out first
    first.frame_received(data(DAY))
    async with asyncio.timeout(WAIT):
        await first.wait_saved()
    on_disk = json.loads((tmp_path / STATE_FILE).read_text())
    assert on_disk["format"] == FORMAT
    assert on_disk["last_seq"] == first.last_seq == 2
    assert on_disk["clean"] is False
    first.upstream_result(UpstreamReport(ECU, 8995, UpstreamResult.OK, RECEIVED))
    await first.stop()
    on_disk = json.loads((tmp_path / STATE_FILE).read_text())
    assert on_disk["clean"] is True
    assert on_disk["saved_at"] == "2024-02-07T03:04:05+00:00"

    second = make_hub(tmp_path)
    await second.start()
    assert second.snapshot() == first.snapshot()
    assert second.last_seq == first.last_seq == 3  # clean stop: no gap
    assert second.events_since(3) == []
    second.frame_received(data(DAY))
    assert second.last_seq == 3  # the restored dedupe set knows this record
    second.frame_received(data(DAY + timedelta(minutes=5)))
    assert second.last_seq == 4
    await second.stop()


async def test_sequence_jumps_after_a_crash(tmp_path: Path) -> None:
    first = make_hub(tmp_path)
    await first.start()
    first.frame_received(data(DAY))
    await first.save_now()
    saved = first.last_seq
    first.frame_received(data(DAY + timedelta(minutes=5)))  # never saved
    assert first.last_seq == saved + 1
    # no stop(): as if the process were killed
    second = make_hub(tmp_path)
    await second.start()
    assert second.last_seq == saved + SEQ_GAP_AFTER_CRASH
    assert second.last_seq > first.last_seq
    assert second.events_since(saved + 1) is None  # a client that saw more: full state
    await second.stop()
    await first.stop()


async def test_no_sequence_reuse_after_clean_start_then_kill(tmp_path: Path) -> None:
    first = make_hub(tmp_path)
    await first.start()
    first.frame_received(data(DAY))
    await first.stop()  # clean
    second = make_hub(tmp_path)
    await second.start()
    # Before any event or debounced save, the file already says "running".
    assert json.loads((tmp_path / STATE_FILE).read_text())["clean"] is False
    second.frame_received(data(DAY + timedelta(minutes=5)))
    handed_out = second.last_seq
    # killed here (no stop, no save): the next start must not reuse that number
    third = make_hub(tmp_path)
    await third.start()
    assert third.last_seq > handed_out
    await third.stop()
    await second.stop()


async def test_corrupt_state_file_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_bytes(b'{"format": 1, "last_seq": 77, "ecus": {"21')
    hub = make_hub(tmp_path)
    with caplog.at_level(logging.ERROR):
        await hub.start()
    aside = tmp_path / f"{STATE_FILE}.corrupt-20240207T030405Z"
    assert aside.exists()
    assert "moved it to state.json.corrupt-20240207T030405Z" in caplog.text
    assert hub.snapshot()["ecus"] == {}
    assert hub.last_seq > 77  # numbers keep going up even so
    hub.frame_received(data(DAY))
    await hub.stop()
    assert json.loads((tmp_path / STATE_FILE).read_text())["ecus"][ECU]


@pytest.mark.parametrize(
    "document",
    [
        {"format": 1, "last_seq": 3, "ecus": {ECU: {"ecu_id": ECU, "seen": [7]}}},
        {"format": 1, "last_seq": 3, "ecus": {ECU: {"ecu_id": "wrong"}}},
        {"format": FORMAT, "last_seq": 3, "ecus": {ECU: {"ecu_id": "wrong"}}},
        {"format": FORMAT + 1, "last_seq": 3, "ecus": {}},
    ],
)
async def test_unusable_documents_are_moved_aside(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps(document))
    hub = make_hub(tmp_path)
    await hub.start()
    assert corrupt_files(tmp_path)
    assert hub.snapshot()["ecus"] == {}
    assert hub.last_seq >= 3
    await hub.stop()


@pytest.mark.parametrize("name", ["format-1-v0.1.0.json", "format-1-latest.json"])
async def test_format_1_file_is_migrated_on_start(tmp_path: Path, name: str) -> None:
    # Written by the hub of earlier versions: see tests/fixtures/state.
    (tmp_path / STATE_FILE).write_bytes((STATE_FIXTURES / name).read_bytes())
    hub = make_hub(tmp_path)
    await hub.start()
    assert hub.last_seq == 11  # it was stopped cleanly: no gap
    ecu = hub.snapshot()["ecus"][ECU]
    assert ecu["lifetime_energy_kwh"] == 2128.1
    total = ecu["inverters"][YC600]["energy_total_kwh"]
    # The capture the file was made from, as its third record: already counted.
    capture = decode_frame((VECTORS / "ECU-R_YC600-QS1_1.txt").read_bytes().strip())
    assert capture.timestamp is not None
    assert capture.lifetime_energy_kwh is not None

    def nth(n: int) -> FrameEvent:
        assert capture.timestamp is not None
        assert capture.lifetime_energy_kwh is not None
        return frame_event(
            dataclasses.replace(
                capture,
                timestamp=capture.timestamp + timedelta(minutes=5 * n),
                lifetime_energy_kwh=capture.lifetime_energy_kwh + n / 10,
            )
        )

    hub.frame_received(nth(2))
    assert hub.last_seq == 11
    hub.frame_received(nth(3))
    assert hub.last_seq == 12
    ecu = hub.snapshot()["ecus"][ECU]
    assert ecu["inverters"][YC600]["energy_total_kwh"] > total
    await hub.stop()
    on_disk = json.loads((tmp_path / STATE_FILE).read_text())
    assert on_disk["format"] == FORMAT
    assert on_disk["clean"] is True
    assert on_disk["ecus"][ECU]["seen"]["stamps"][-1] == "20240206113714"


async def test_waiting_for_durability_skips_the_debounce_and_batches(
    tmp_path: Path,
) -> None:
    hub = Hub(
        Options(data_dir=tmp_path, capture_frames=False),
        server_id="0" * 32,
        version="test",
        save_delay=3600.0,  # the debounce alone would never save in this test
    )
    await hub.start()
    try:
        before = hub.save_count
        marks = []
        for n in range(20):
            hub.frame_received(data(DAY + timedelta(minutes=5 * n)))
            marks.append(hub.record_mark())
        assert not hub.is_durable(marks[-1])
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(hub.wait_durable(m) for m in marks))
        assert hub.is_durable(marks[-1])
        # One write covered all twenty records (a second may have been under way).
        assert hub.save_count - before <= 2
        stored = json.loads((tmp_path / STATE_FILE).read_text())
        assert len(stored["ecus"][ECU]["seen"]["stamps"]) == 20
    finally:
        await hub.stop()


async def test_full_disk_degrades_but_keeps_live_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("ecu_proxy.hub.SAVE_RETRY_DELAY", 0.01)
    hub = Hub(
        Options(data_dir=tmp_path, capture_frames=False),
        server_id="0" * 32,
        version="test",
        save_delay=0.0,
    )
    await hub.start()
    real_write = hub.store.write_text
    failures = 0

    def full(text: str, generation: int = 0) -> bool:
        nonlocal failures
        failures += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hub.store, "write_text", full)
    try:
        hub.frame_received(data(DAY))
        assert ECU in hub.snapshot()["ecus"]  # live data goes on
        mark = hub.record_mark()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await hub.wait_durable(mark)
        assert failures >= 3  # retried
        problem = hub.disk_problem
        assert problem is not None
        assert "No space left" in problem
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1  # said once
        monkeypatch.setattr(hub.store, "write_text", real_write)
        async with asyncio.timeout(WAIT):
            await hub.wait_durable(mark)
        assert hub.disk_problem is None
        monkeypatch.setattr(hub.store, "write_text", full)
    finally:
        assert await hub.stop() is False  # the last save failed, and it says so


async def test_health_names_a_command_log_that_cannot_be_saved(
    tmp_path: Path,
) -> None:
    hub = Hub(Options(data_dir=tmp_path), server_id="0" * 32, version="test")
    await hub.start()
    try:
        healthy = hub.disk_problem
        assert healthy is None
        problem = "cannot save the command log to commands.json: Read-only"
        hub.commands.store.disk_problem = problem
        assert hub.disk_problem == problem
        hub.store.disk_problem = "cannot save state to state.json: No space"
        assert hub.disk_problem == hub.store.disk_problem  # the state's comes first
    finally:
        hub.store.disk_problem = hub.commands.store.disk_problem = None
        await hub.stop()


async def test_unreadable_data_folder_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / STATE_FILE).write_text("kept as it is")

    def refuse() -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    hub = Hub(Options(data_dir=tmp_path), server_id="0" * 32, version="test")
    monkeypatch.setattr(hub.store, "load", refuse)
    await hub.start()
    try:
        hub.frame_received(data(DAY))
        assert ECU in hub.snapshot()["ecus"]
        assert hub.disk_problem is not None
        assert "Read-only" in hub.disk_problem
    finally:
        assert await hub.stop() is False
    assert (tmp_path / STATE_FILE).read_text() == "kept as it is"
