"""The state file: atomic writes, bad files moved aside, format migration."""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from ecu_proxy.models import Channel, DecodedFrame, FrameKind, Inverter
from ecu_proxy.state import LiveState, RecordStatus
from ecu_proxy.storage import FORMAT, STATE_FILE, StateStore, StorageError, migrate

if TYPE_CHECKING:
    from pathlib import Path

ECU = "216000064136"
YC600 = "408000111178"


def clock() -> datetime:
    return datetime(2024, 2, 7, 3, 4, 5, tzinfo=UTC)


def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "data", clock=clock)


def current(last_seq: int = 5) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "saved_at": None,
        "clean": True,
        "last_seq": last_seq,
        "ecus": {},
    }


def format_0() -> dict[str, Any]:
    return {
        "seq": 41,
        "ecus": [
            {
                "id": ECU,
                "model": "ECU-R",
                "lifetime_kwh": 2127.9,
                "day": "2024-02-06",
                "day_kwh": 0.015213,
                "records": ["2024-02-06T11:22:14", "2024-02-06T11:17:14"],
                "inverters": [
                    {
                        "id": YC600,
                        "type_code": "07",
                        "family": "YC600",
                        "day_kwh": 0.002828,
                        "total_kwh": 12.345678,
                        "channels": [
                            {"channel": 1, "day_kwh": 0.001409, "total_kwh": 6.1},
                            {"channel": 2, "day_kwh": 0.001419, "total_kwh": 6.245678},
                        ],
                    }
                ],
            }
        ],
    }


def test_missing_file_means_fresh_start(tmp_path: Path) -> None:
    loaded = store(tmp_path).load()
    assert loaded.document is None
    assert loaded.problem is None


def test_save_then_load(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.save(current(9))
    loaded = s.load()
    assert loaded.document == current(9)
    assert loaded.migrated_from is None
    mode = stat.S_IMODE(os.stat(s.path).st_mode)
    assert mode == 0o600
    assert sorted(p.name for p in s.data_dir.iterdir()) == [STATE_FILE]


def test_older_generation_never_replaces_newer(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.save(current(2), generation=2)
    assert not s.save(current(1), generation=1)
    assert json.loads(s.path.read_text())["last_seq"] == 2
    assert s.save(current(3), generation=3)
    assert json.loads(s.path.read_text())["last_seq"] == 3


def test_leftover_temp_file_is_removed(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(current(4))
    tmp = s.data_dir / f".{STATE_FILE}.tmp"
    tmp.write_text('{"format": 1, "last_')  # a write cut short by a crash
    assert s.load().document == current(4)
    assert not tmp.exists()


def test_state_loads_when_the_folder_refuses_to_tidy_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path)
    s.save(current(5))
    tmp = s.data_dir / f".{STATE_FILE}.tmp"
    tmp.write_text("{")
    real_unlink = type(tmp).unlink

    def refuse(path: Path, missing_ok: bool = False) -> None:
        if path == tmp:
            raise OSError(30, "Read-only file system")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(type(tmp), "unlink", refuse)
    assert s.load().document == current(5)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"format": 1, "last_seq": 77, "ecus": {', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "top level is not an object"),
        (b'{"format": "one", "last_seq": 1, "ecus": {}}', "is not a number"),
        (b'{"format": 9, "last_seq": 1, "ecus": {}}', "newer than this version"),
        (b'{"format": 1, "last_seq": -1, "ecus": {}}', "last_seq"),
        (b'{"format": 1, "last_seq": 1, "ecus": []}', "ecus must be an object"),
        (b'{"seq": 3, "ecus": [{"model": "no id"}]}', "format 0 document is malformed"),
        (b'{"seq": 3, "ecus": [{"id": "1", "day_kwh": -1}]}', "non-negative"),
    ],
)
def test_bad_file_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, problem: str
) -> None:
    s = store(tmp_path)
    s.data_dir.mkdir()
    s.path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="ecu_proxy.storage"):
        loaded = s.load()
    assert loaded.document is None
    assert loaded.problem is not None
    assert problem in loaded.problem
    assert loaded.moved_aside == s.data_dir / f"{STATE_FILE}.corrupt-20240207T030405Z"
    assert loaded.moved_aside.read_bytes() == content  # nothing is lost
    assert not s.path.exists()
    assert "moved it to state.json.corrupt-20240207T030405Z" in caplog.text
    assert problem in caplog.text


def test_sequence_hint_is_read_from_a_damaged_file(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.data_dir.mkdir()
    s.path.write_bytes(b'{"format":1,"saved_at":null,"clean":false,"last_seq":1234,"ec')
    assert s.load().last_seq_hint == 1234


def test_two_bad_files_in_the_same_second_both_kept(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.data_dir.mkdir()
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
    assert loaded.document is None
    assert loaded.moved_aside is not None
    assert loaded.moved_aside.is_dir()
    assert s.save(current(1))  # and the service can write again


def test_quarantine_of_a_document_the_state_rejects(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(current(3) | {"ecus": {ECU: {"ecu_id": "other"}}})
    loaded = s.quarantine("ECU entry mismatch")
    assert loaded.moved_aside is not None
    assert loaded.last_seq_hint == 3
    assert not s.path.exists()


def test_format_0_is_migrated(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.data_dir.mkdir()
    s.path.write_text(json.dumps(format_0()))
    loaded = s.load()
    assert loaded.migrated_from == 0
    document = loaded.document
    assert document is not None
    assert document["format"] == 1
    assert document["last_seq"] == 41
    assert document["clean"] is False
    state = LiveState.from_persisted(document["ecus"])
    ecu = state.ecus[ECU]
    assert ecu.lifetime_energy_kwh == 2127.9
    assert ecu.today_mwh == 15213
    assert ecu.today is not None
    assert ecu.today.isoformat() == "2024-02-06"
    assert ecu.last_record_at == datetime(2024, 2, 6, 11, 22, 14)
    inv = ecu.inverters[YC600]
    assert inv.total_mwh == 12345678
    assert inv.channels[2].total_mwh == 6245678
    assert inv.online is False
    assert state.stored_timestamps(ECU) == ["20240206112214", "20240206111714"]


def test_migrated_state_keeps_counting_exactly_once() -> None:
    document, version = migrate(format_0())
    assert version == 0
    state = LiveState.from_persisted(document["ecus"])

    def record(at: datetime) -> DecodedFrame:
        inv = Inverter(
            YC600,
            "07",
            "YC600",
            228.0,
            50.0,
            13.0,
            35.0,
            None,
            (Channel(1, 33.8, 0.5, 17.0, 1.0), Channel(2, 33.9, 0.5, 18.0, 1.0)),
        )
        return DecodedFrame(
            kind=FrameKind.DATA,
            version="18",
            length=302,
            ecu_id=ECU,
            timestamp=at,
            lifetime_energy_kwh=2128.0,
            inverters=(inv,),
        )

    received = datetime(2024, 2, 6, 10, 30, tzinfo=UTC)
    dup = state.apply_record(record(datetime(2024, 2, 6, 11, 22, 14)), received)
    assert dup.status == RecordStatus.DUPLICATE
    new = state.apply_record(record(datetime(2024, 2, 6, 11, 27, 14)), received)
    assert new.status == RecordStatus.NEW
    assert state.ecus[ECU].inverters[YC600].total_mwh == 12345678 + 2000
    assert state.ecus[ECU].lifetime_energy_kwh == 2128.0


def test_current_format_is_left_alone() -> None:
    document, version = migrate(current(7))
    assert version is None
    assert document == current(7)
    with pytest.raises(StorageError, match="unknown format"):
        migrate({"format": -1, "last_seq": 0, "ecus": {}})


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
    s.data_dir.mkdir()
    s.path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="ecu_proxy.storage"):
        loaded = s.load()
    assert loaded.document is None
    assert loaded.problem is not None
    assert problem in loaded.problem
    assert loaded.moved_aside is not None
    assert loaded.moved_aside.read_bytes() == content
    assert "moved it to state.json.corrupt-" in caplog.text


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(current(4) | {"note": "[[[[" * 50 + '\\"{{' * 50})
    loaded = s.load()
    assert loaded.problem is None
    assert loaded.document is not None
    assert loaded.document["last_seq"] == 4


@pytest.mark.parametrize(
    "entry",
    [
        _ecu_entry(seen=[FULL_WIDTH_STAMP]),
        _ecu_entry(today_mwh=2**63),
        _ecu_entry(power_w=1e300),
        _ecu_entry(warnings=[[[[]]]], inverters=[{"id": 5}]),
    ],
    ids=["full-width-timestamp", "huge-counter", "huge-float", "wrong-types"],
)
def test_state_entries_that_pass_json_but_not_the_state_are_refused(
    entry: dict[str, Any],
) -> None:
    from ecu_proxy.state import StateFormatError

    with pytest.raises(StateFormatError):
        LiveState.from_persisted({ECU: entry})
