"""The service's stable identity: a server id created once per data directory."""

from __future__ import annotations

import os
import re
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

SERVER_ID_FILE = "server_id"
_VALID = re.compile(r"^[0-9a-f]{32}$")


def load_or_create_server_id(data_dir: Path) -> str:
    """Return the persisted server id, creating it (atomically) on first use."""
    path = data_dir / SERVER_ID_FILE
    try:
        existing = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        existing = ""
    if _VALID.match(existing):
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    server_id = uuid.uuid4().hex
    tmp = path.with_name(f".{SERVER_ID_FILE}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="ascii") as handle:
        handle.write(server_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return server_id
