"""The service's stable identity: a server id created once per data directory."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from .atomic import write_atomic

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
    server_id = uuid.uuid4().hex
    write_atomic(path, f"{server_id}\n".encode("ascii"), mode=0o644)
    return server_id
