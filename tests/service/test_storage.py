"""The state file's store: atomic writes, bad files moved aside, format migration."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from documents import ecus_json

from ecu_proxy.ecu_admission import CONFIRMING_RECORDS
from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter, UpstreamResult
from ecu_proxy.state import LiveState, RecordStatus
from ecu_proxy.state_file import FORMAT, STATE_FILE, SavedState, state_store
from ecu_proxy.storage import Store

ECU = "216000064136"
ECU3 = "203000000001"
YC600 = "408000111178"
QS1 = "806000011223"
# Written by the hub of earlier versions (two ECUs, a late record, upload results,
# a three-phase block with raw text), stopped cleanly: see tests/fixtures/state.
STATE_FIXTURES = Path(__file__).parents[1] / "fixtures" / "state"
RELEASED = STATE_FIXTURES / "format-1-v0.1.0.json"
LATEST = STATE_FIXTURES / "format-1-latest.json"


def clock() -> datetime:
    return datetime(2024, 2, 7, 3, 4, 5, tzinfo=UTC)


def store(tmp_path: Path) -> Store[SavedState]:
    return state_store(tmp_path / "data", clock=clock)


def current(last_seq: int = 5) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "saved_at": None,
        "clean": True,
        "last_seq": last_seq,
        "ecus": {},
    }


def save(s: Store[SavedState], document: dict[str, Any], generation: int = 0) -> bool:
    return s.write_text(json.dumps(document), generation)


def last_seq(s: Store[SavedState]) -> int | None:
    loaded = s.load()
    return loaded.data.last_seq if loaded.data is not None else None


def fixture_v1() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(LATEST.read_text())
    return document


def test_missing_file_means_fresh_start(tmp_path: Path) -> None:
    loaded = store(tmp_path).load()
    assert loaded.data is None
    assert loaded.problem is None


def test_save_then_load(tmp_path: Path) -> None:
    s = store(tmp_path)
    state = LiveState()
    state.apply_record(record(datetime(2024, 2, 6, 11, 0)), clock())
    assert s.write_text(s.dump(SavedState(last_seq=9, ecus=state), clean=True))
    loaded = s.load()
    assert loaded.data is not None
    assert loaded.data.last_seq == 9
    assert ecus_json(loaded.data.ecus) == ecus_json(state)
    assert loaded.clean is True
    assert loaded.migrated_from is None
    on_disk = json.loads(s.path.read_text())
    assert on_disk["format"] == FORMAT
    assert on_disk["saved_at"] == "2024-02-07T03:04:05+00:00"
    mode = stat.S_IMODE(os.stat(s.path).st_mode)
    assert mode == 0o600
    assert sorted(p.name for p in s.path.parent.iterdir()) == [STATE_FILE]


def test_older_generation_never_replaces_newer(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert save(s, current(2), generation=2)
    assert not save(s, current(1), generation=1)
    assert json.loads(s.path.read_text())["last_seq"] == 2
    assert save(s, current(3), generation=3)
    assert json.loads(s.path.read_text())["last_seq"] == 3


def test_leftover_temp_file_is_removed(tmp_path: Path) -> None:
    s = store(tmp_path)
    save(s, current(4))
    tmp = s.path.parent / f".{STATE_FILE}.tmp"
    tmp.write_text('{"format": 1, "last_')  # a write cut short by a crash
    assert last_seq(s) == 4
    assert not tmp.exists()


def test_state_loads_when_the_folder_refuses_to_tidy_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path)
    save(s, current(5))
    tmp = s.path.parent / f".{STATE_FILE}.tmp"
    tmp.write_text("{")
    real_unlink = type(tmp).unlink

    def refuse(path: Path, missing_ok: bool = False) -> None:
        if path == tmp:
            raise OSError(30, "Read-only file system")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(type(tmp), "unlink", refuse)
    assert last_seq(s) == 5


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"format": 1, "last_seq": 77, "ecus": {', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "top level is not an object"),
        (b'{"format": "one", "last_seq": 1, "ecus": {}}', "is not a number"),
        (b'{"format": 9, "last_seq": 1, "ecus": {}}', "newer than this version"),
        (b'{"format": 2, "last_seq": -1, "ecus": {}}', "$.last_seq: expected"),
        (b'{"format": 2, "last_seq": 1, "ecus": []}', "$.ecus: expected an object"),
        (b'{"format": 2, "last_seq": 1}', "'ecus' is missing"),
        (b'{"format": 1, "last_seq": 1, "ecus": []}', "format 1 is malformed"),
        (b'{"format": 0, "last_seq": 1, "ecus": {}}', "unknown format 0"),
        (b'{"seq": 3, "ecus": []}', "format None is not a number"),
    ],
)
def test_bad_file_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, problem: str
) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    s.path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="ecu_proxy.storage"):
        loaded = s.load()
    assert loaded.data is None
    assert loaded.problem is not None
    assert problem in loaded.problem
    assert loaded.moved_aside == s.path.with_name(
        f"{STATE_FILE}.corrupt-20240207T030405Z"
    )
    assert loaded.moved_aside.read_bytes() == content  # nothing is lost
    assert not s.path.exists()
    assert "moved it to state.json.corrupt-20240207T030405Z" in caplog.text
    assert problem in caplog.text


def test_sequence_hint_is_read_from_a_damaged_file(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    s.path.write_bytes(b'{"format":2,"saved_at":null,"clean":false,"last_seq":1234,"ec')
    assert s.load().salvaged == 1234


def test_a_save_puts_the_sequence_before_the_bulk(tmp_path: Path) -> None:
    s = store(tmp_path)
    state = LiveState()
    state.apply_record(record(datetime(2024, 2, 6, 11, 0)), clock())
    text = s.dump(SavedState(last_seq=77, ecus=state))
    assert text.index('"last_seq"') < text.index('"ecus"')


def test_two_bad_files_in_the_same_second_both_kept(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    s.path.write_text("first")
    first = s.load().moved_aside
    s.path.write_text("second")
    second = s.load().moved_aside
    assert first is not None
    assert second is not None
    assert first != second
    assert first.read_text() == "first"
    assert second.read_text() == "second"


def test_unreadable_path_is_moved_aside(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.path.mkdir(parents=True)  # a directory where the file should be
    loaded = s.load()
    assert loaded.data is None
    assert loaded.moved_aside is not None
    assert loaded.moved_aside.is_dir()
    assert save(s, current(1))  # and the service can write again


def test_a_document_the_state_rejects_is_moved_aside(tmp_path: Path) -> None:
    s = store(tmp_path)
    save(s, current(3) | {"ecus": {ECU: {"ecu_id": "other"}}})
    loaded = s.load()
    assert loaded.problem is not None
    assert f"$.ecus.{ECU}: holds 'other'" in loaded.problem
    assert loaded.moved_aside is not None
    assert loaded.salvaged == 3
    assert not s.path.exists()


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("newest", "2024-02-06T11:00:00+00:00", "ECU time has no time zone"),
        ("newest_arrival", "2024-02-07T03:04:05", "needs a time zone"),
    ],
)
def test_a_timeline_with_the_wrong_kind_of_time_is_moved_aside(
    tmp_path: Path, key: str, value: str, problem: str
) -> None:
    """ECU time is naive, arrival time aware: either mixed up fails every record."""
    s = store(tmp_path)
    state = LiveState()
    state.apply_record(record(datetime(2024, 2, 6, 11, 0)), clock())
    document = json.loads(s.dump(SavedState(last_seq=9, ecus=state), clean=True))
    document["ecus"][ECU]["timeline"][key] = value
    save(s, document)
    loaded = s.load()
    assert loaded.data is None
    assert loaded.problem is not None
    assert f"timeline.{key}: {problem}" in loaded.problem
    assert loaded.moved_aside is not None
    assert loaded.salvaged == 9


def record(at: datetime, lifetime: float = 2128.0) -> DecodedFrame:
    inv = Inverter(
        id=YC600,
        type_code="07",
        family="YC600",
        ac_voltage_v=228.0,
        frequency_hz=50.0,
        temperature_c=13.0,
        power_w=35.0,
        round_energy_wh=None,
        channels=(Channel(1, 33.8, 0.5, 17.0, 1.0), Channel(2, 33.9, 0.5, 18.0, 1.0)),
    )
    return DecodedFrame(
        kind=FrameKind.DATA,
        version="18",
        length=302,
        ecu_id=ECU,
        timestamp=at,
        lifetime_energy_kwh=lifetime,
        inverters=(inv,),
    )


@pytest.mark.parametrize("fixture", [RELEASED, LATEST], ids=["v0.1.0", "latest"])
def test_a_format_1_file_of_an_earlier_version_loads_whole(
    tmp_path: Path, fixture: Path
) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    s.path.write_bytes(fixture.read_bytes())
    loaded = s.load()
    assert loaded.problem is None
    assert loaded.migrated_from == 1
    assert loaded.clean is True
    assert loaded.data is not None
    assert loaded.data.last_seq == 11
    state = loaded.data.ecus
    assert sorted(state.ecus) == [ECU3, ECU]
    ecu = state.ecus[ECU]
    assert ecu.model == "ECU-R"
    assert ecu.today == date(2024, 2, 6)
    assert ecu.lifetime_energy_kwh == 2128.1
    assert ecu.records == 3
    assert ecu.newest == "20240206113214"
    assert ecu.upstream.result is UpstreamResult.TIMEOUT
    assert ecu.upstream.detail == "no reply within 10 s"
    assert state.stored_timestamps(ECU) == [
        "20240206113214",
        "20240206112714",
        "20240206112214",
    ]
    # every energy counter is the sum of its parts, as the earlier version kept them
    for inv in ecu.inverters.values():
        assert inv.total_mwh == sum(ch.total_mwh for ch in inv.channels.values())
    assert ecu.today_mwh == sum(inv.today_mwh for inv in ecu.inverters.values())
    assert ecu.inverters[YC600].total_mwh == 8484
    assert sorted(ecu.inverters[QS1].channels) == [1, 2, 3, 4]
    three_phase = state.ecus[ECU3].inverters["100000000001"]
    assert three_phase.phase_voltages_v == (230.5, 231.0, 229.5)
    assert three_phase.raw == "AB12"
    assert state.ecus[ECU3].upstream.rtt_ms == 123.4
    if fixture == RELEASED:  # written before these were kept
        assert {inv.records for inv in ecu.inverters.values()} == {CONFIRMING_RECORDS}
        assert ecu.timeline.newest_arrival == ecu.last_seen
        assert ecu.peaks.ecu.ever_w is None
    else:
        assert {inv.records for inv in ecu.inverters.values()} == {3}
        assert ecu.timeline.newest_arrival == datetime(2024, 2, 7, 9, 10, tzinfo=UTC)
        assert ecu.peaks.ecu.ever_w is not None
        assert set(ecu.peaks.inverters) == {YC600, QS1}
    # Saved again, it reads back the same in the current format.
    assert s.write_text(s.dump(loaded.data))
    again = s.load()
    assert again.migrated_from is None
    assert again.data is not None
    assert ecus_json(again.data.ecus) == ecus_json(state)


def test_format_1_from_older_writers_fills_what_they_left_out(tmp_path: Path) -> None:
    document = fixture_v1()
    entry = document["ecus"][ECU]
    for key in ("records", "seen_fp", "newest", "newest_arrival", "peaks"):
        del entry[key]
    for inv in entry["inverters"]:
        del inv["records"]
    s = store(tmp_path)
    save(s, document)
    loaded = s.load()
    assert loaded.data is not None
    ecu = loaded.data.ecus.ecus[ECU]
    assert ecu.records == 3  # from the remembered timestamps
    # saved before records were counted: known for long, so confirmed
    assert {inv.records for inv in ecu.inverters.values()} == {CONFIRMING_RECORDS}
    assert ecu.newest == "20240206113214"  # the newest remembered
    assert ecu.timeline.newest_arrival == ecu.last_seen
    assert ecu.peaks.ecu.ever_w is None
    # without fingerprints, any record of a remembered time is a duplicate
    again = loaded.data.ecus.apply_record(
        record(datetime(2024, 2, 6, 11, 22, 14)), clock()
    )
    assert again.status == RecordStatus.DUPLICATE


def test_migrated_state_keeps_counting_exactly_once(tmp_path: Path) -> None:
    s = store(tmp_path)
    save(s, fixture_v1())
    loaded = s.load()
    assert loaded.data is not None
    state = loaded.data.ecus
    before = state.ecus[ECU].inverters[YC600].total_mwh
    received = datetime(2024, 2, 7, 10, 0, tzinfo=UTC)
    new = state.apply_record(record(datetime(2024, 2, 6, 11, 37, 14)), received)
    assert new.status == RecordStatus.NEW
    assert state.ecus[ECU].inverters[YC600].total_mwh == before + 2000
    assert state.ecus[ECU].lifetime_energy_kwh == 2128.1  # a lower one waits


# "20240206112214" in full-width digits (U+FF10..U+FF19), which isdigit() accepts
FULL_WIDTH_STAMP = "".join(chr(0xFF10 + int(d)) for d in "20240206112214")


def _ecu_entry(**changes: Any) -> dict[str, Any]:
    return {"ecu_id": ECU, "seen": [], "inverters": []} | changes


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b'{"format": 1, "last_seq": 1, "ecus": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            "nested deeper than",
        ),
        (
            b'{"format": 1, "last_seq": ' + b"7" * 5000 + b', "ecus": {}}',
            "integer of 5000 digits",
        ),
        (b'{"format": 1, "last_seq": 1, "ecus": {}, "x": NaN}', "NaN"),
        (b'{"format": 1, "last_seq": 1, "ecus": {}, "x": -Infinity}', "-Infinity"),
        (b'{"format": 1, "last_seq": 1, "ecus": {}, "x": 1e400}', "out of range"),
    ],
    ids=["deep-nesting", "5000-digit-int", "nan", "infinity", "float-overflow"],
)
def test_hostile_json_is_moved_aside_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, problem: str
) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    s.path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="ecu_proxy.storage"):
        loaded = s.load()
    assert loaded.data is None
    assert loaded.problem is not None
    assert problem in loaded.problem
    assert loaded.moved_aside is not None
    assert loaded.moved_aside.read_bytes() == content
    assert "moved it to state.json.corrupt-" in caplog.text


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path: Path) -> None:
    s = store(tmp_path)
    save(s, current(4) | {"note": "[[[[" * 50 + '\\"{{' * 50})
    loaded = s.load()
    assert loaded.problem is None
    assert loaded.data is not None
    assert loaded.data.last_seq == 4


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (_ecu_entry(seen=[FULL_WIDTH_STAMP]), "not a record time"),
        (_ecu_entry(today_mwh=2**63), "today_mwh: expected a number"),
        (_ecu_entry(today_mwh=-1), "today_mwh: expected a number"),
        (_ecu_entry(power_w=1e300), "power_w: expected a number"),
        (_ecu_entry(warnings=[[[[]]]], inverters=[{"id": 5}]), "warnings"),
        (_ecu_entry(inverters=[{"id": YC600}]), "'type_code' is missing"),
        (_ecu_entry(today="yesterday"), "today: expected an ISO 8601 date"),
        (_ecu_entry(last_seen="soon"), "last_seen: expected an ISO 8601"),
        (_ecu_entry(upstream={"result": "maybe"}), "result: expected one of"),
        (_ecu_entry(newest="2024"), "newest '2024' is not a record time"),
        (_ecu_entry(seen=["20240206112214"], seen_fp=[2**32]), "not a CRC-32"),
        (_ecu_entry(peaks={"hour_mwh": True}), "hour_mwh: expected an integer"),
        (_ecu_entry(peaks={"day": "June"}), "day: expected an ISO 8601 date"),
        (_ecu_entry(peaks={"inverters": []}), "format 1 is malformed"),
        (
            _ecu_entry(peaks={"ecu": {"peak_power_ever_w": "high"}}),
            "ever_w: expected",
        ),
    ],
)
def test_format_1_entries_that_pass_json_but_not_the_state_are_refused(
    tmp_path: Path, entry: dict[str, Any], problem: str
) -> None:
    s = store(tmp_path)
    save(s, {"format": 1, "last_seq": 1, "ecus": {ECU: entry}})
    loaded = s.load()
    assert loaded.data is None
    assert loaded.problem is not None
    assert problem in loaded.problem
    assert loaded.moved_aside is not None


@dataclass
class Note:
    """A tiny document: the store keeps any contract type, not only the state."""

    text: str
    count: int = 0


def test_migrations_run_one_format_after_another(tmp_path: Path) -> None:
    def rename(old: dict[str, Any]) -> dict[str, Any]:
        return {"format": 2, "text": old["words"]}

    def count(old: dict[str, Any]) -> dict[str, Any]:
        return {**old, "format": 3, "count": len(old["text"])}

    path = tmp_path / "note.json"
    path.write_text('{"format": 1, "words": "hello"}')
    notes = Store(path, Note, version=3, migrations={1: rename, 2: count})
    loaded = notes.load()
    assert loaded.data == Note("hello", 5)
    assert loaded.migrated_from == 1
    path.write_text('{"format": 1, "text": "no words"}')
    loaded = notes.load()
    assert loaded.problem is not None
    assert "format 1 is malformed: KeyError('words')" in loaded.problem


async def test_changes_are_saved_together_after_the_delay_and_clean_on_stop(
    tmp_path: Path,
) -> None:
    note = Note("draft")
    path = tmp_path / "note.json"
    notes = Store(path, Note, version=1, delay=0.05)
    assert notes.load().data is None
    await notes.start(lambda: note)
    async with asyncio.timeout(10):
        await notes.wait_saved()  # a fresh start is written soon
    before = notes.save_count
    for n in range(1, 6):
        note.count = n
        notes.changed()
    mark = notes.record_mark()
    assert not notes.is_durable(mark)
    async with asyncio.timeout(10):
        await notes.wait_saved()
    assert notes.is_durable(mark)
    assert notes.save_count == before + 1  # five changes, one write
    on_disk = json.loads(path.read_text())
    assert on_disk["count"] == 5
    assert on_disk["clean"] is False
    assert await notes.stop() is True
    assert json.loads(path.read_text())["clean"] is True
    again = Store(path, Note, version=1)
    loaded = again.load()
    assert loaded.clean is True
    assert loaded.data == Note("draft", 5)


async def test_a_store_never_started_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "note.json"
    path.write_text("what an earlier run saved")
    assert await Store(path, Note, version=1).stop() is False
    assert path.read_text() == "what an earlier run saved"
