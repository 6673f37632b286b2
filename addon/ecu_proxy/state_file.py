"""The state file: what it holds, its format version, and the way up from format 1.

``<data_dir>/state.json`` is kept by a :class:`~ecu_proxy.storage.Store`. Its shape
is derived from the data classes (``SavedState`` and, inside it, ``LiveState``):
format 2 is the ``storage`` envelope plus ``last_seq`` and ``ecus``. ``clean`` is true
only for the save made on an orderly stop; after a crash the hub moves its event
sequence forward so numbers handed out but never saved are not reused.

Format 1 (release 0.1.0 and the versions after it) had a hand-made layout: inverters
and channels as lists, the deduplication window as two lists side by side, the
timeline flattened into the ECU, and peaks under their API names; 0.1.0 wrote no
record counts, fingerprints, timeline or peaks yet. ``_format_1_to_2`` rewrites such
a document (tests/fixtures/state holds files both wrote).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .ecu_admission import CONFIRMING_RECORDS
from .state import LiveState
from .storage import COUNTER, Store
from .wire import parse_wire_timestamp

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from pathlib import Path

STATE_FILE = "state.json"
FORMAT = 2

_LAST_SEQ = re.compile(rb'"last_seq"\s*:\s*(\d{1,18})')


@dataclass(slots=True)
class SavedState:
    """What the state file holds besides the storage envelope."""

    # first, so that the number is still readable in a file cut short
    last_seq: int = field(metadata=COUNTER)
    ecus: LiveState


def last_seq_in(raw: bytes) -> int:
    """Return the best guess of the last event number in a damaged file."""
    return max((int(m) for m in _LAST_SEQ.findall(raw)), default=0)


def state_store(
    data_dir: Path,
    *,
    clock: Callable[[], datetime] | None = None,
    delay: float = 1.0,
    retry_delay: float = 5.0,
) -> Store[SavedState]:
    """Return the store of the state file in ``data_dir``."""
    return Store(
        data_dir / STATE_FILE,
        SavedState,
        version=FORMAT,
        what="state",
        migrations={1: _format_1_to_2},
        salvage=last_seq_in,
        delay=delay,
        retry_delay=retry_delay,
        clock=clock,
    )


def _format_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a format-1 document (see the module docstring)."""
    ecus = old.get("ecus")
    if not isinstance(ecus, dict):
        raise TypeError("ecus must be an object")
    return {**old, "format": 2, "ecus": {k: _ecu_1_to_2(v) for k, v in ecus.items()}}


def _ecu_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    seen = old.get("seen", [])
    marks = old.get("seen_fp")
    if not isinstance(marks, list) or len(marks) != len(seen):
        marks = [None] * len(seen)  # saved before fingerprints: any record matches
    newest = old.get("newest") or max(seen, default=None)
    newest_at = parse_wire_timestamp(newest) if newest is not None else None
    if newest is not None and newest_at is None:
        raise ValueError(f"newest {newest!r} is not a record time")
    # keys format 2 no longer has (seen_fp, newest, newest_arrival) stay behind;
    # decoding ignores them and the next save leaves them out
    new = dict(old)
    inverters = old.get("inverters", [])
    new["inverters"] = {inv["id"]: _inverter_1_to_2(inv) for inv in inverters}
    new["seen"] = {"stamps": seen, "marks": marks}
    new["timeline"] = {
        "newest": newest_at.isoformat() if newest_at else None,
        "newest_arrival": old.get("newest_arrival") or old.get("last_seen"),
    }
    new["records"] = old.get("records", len(seen))
    if (peaks := old.get("peaks")) is not None:
        new["peaks"] = {
            **peaks,
            "ecu": _peak_1_to_2(peaks.get("ecu", {})),
            "inverters": {
                inv_id: _peak_1_to_2(peak)
                for inv_id, peak in peaks.get("inverters", {}).items()
            },
        }
    return new


def _inverter_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    return {
        **old,
        "channels": {str(ch["channel"]): ch for ch in old.get("channels", [])},
        # saved before records were counted: known for long, so confirmed
        "records": old.get("records", CONFIRMING_RECORDS),
    }


def _peak_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    return {
        "today_w": old.get("peak_power_today_w"),
        "ever_w": old.get("peak_power_ever_w"),
    }
