"""The server id is created once and survives restarts and damage."""

import re
from pathlib import Path

from ecu_proxy.identity import SERVER_ID_FILE, load_or_create_server_id


def test_created_once_and_stable(tmp_path: Path) -> None:
    first = load_or_create_server_id(tmp_path / "data")
    assert len(first) == 32
    assert load_or_create_server_id(tmp_path / "data") == first
    assert not list((tmp_path / "data").glob(".*tmp"))


def test_damaged_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / SERVER_ID_FILE).write_bytes(b"\xff\xfe garbage")
    server_id = load_or_create_server_id(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}", server_id)
    assert (tmp_path / SERVER_ID_FILE).read_text().strip() == server_id
    assert load_or_create_server_id(tmp_path / "other") != server_id
