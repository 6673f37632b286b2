"""Crash-safe persistence of the state file: atomic writes, format versions, migration.

The file is ``<data_dir>/state.json``. Writes go to a temporary file that is flushed
and fsynced, renamed over the old file, and then the directory is fsynced, so after a
``kill -9`` or a power cut the file holds either the previous or the new document,
never a mix.

Format 1 (current)::

    {"format": 1, "saved_at": "<UTC ISO>", "clean": <bool>, "last_seq": <int>,
     "ecus": {"<ecu id>": <EcuState.to_persisted()>}}

``clean`` is true only for the save made on an orderly stop; after a crash the hub
moves its event sequence forward so numbers handed out but never saved are not reused.

Format 0 (the earlier layout, no ``format`` key)::

    {"seq": <int>,
     "ecus": [{"id", "model", "lifetime_kwh", "day": "YYYY-MM-DD", "day_kwh",
               "records": ["<ISO local time>", ...],
               "inverters": [{"id", "type_code", "family", "day_kwh", "total_kwh",
                              "channels": [{"channel", "day_kwh", "total_kwh"}]}]}]}

Energies were kWh floats there; format 1 keeps integer mWh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import temp_path, write_atomic
from .decoder import format_wire_timestamp, parse_wire_timestamp

if TYPE_CHECKING:
    from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

STATE_FILE = "state.json"
FORMAT = 1
# The state document is 6 levels deep; anything far deeper is damage or an attack.
MAX_DEPTH = 32
# 19 digits hold any 63-bit counter (mWh for a million years of a large plant).
MAX_INT_DIGITS = 19
# Brackets outside strings: a string token is skipped whole, escapes included.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_LAST_SEQ = re.compile(rb'"(?:last_seq|seq)"\s*:\s*(\d{1,18})')


class StorageError(ValueError):
    """The state file cannot be used."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """The outcome of reading the state file."""

    document: dict[str, Any] | None  # a format-1 document, None to start fresh
    migrated_from: int | None = None
    moved_aside: Path | None = None
    problem: str | None = None
    last_seq_hint: int = 0  # best guess of the last sequence number of a bad file


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StateStore:
    """Reads and writes the state file in one data directory."""

    def __init__(
        self, data_dir: Path, *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        """Use ``data_dir`` (created on first save)."""
        self.data_dir = data_dir
        self.path = data_dir / STATE_FILE
        self._clock = clock
        self._lock = threading.Lock()
        self._written_generation = -1

    def load(self) -> Loaded:
        """Read, check and migrate the state file; move a bad one aside."""
        # A temp file is left by an interrupted write; a read-only folder may refuse
        # to tidy it up, which must not keep the saved state from loading.
        with contextlib.suppress(OSError):
            temp_path(self.path).unlink(missing_ok=True)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Loaded(None)
        except OSError as err:
            return self._bad(f"cannot read {self.path.name}: {err}", b"")
        try:
            document = parse_document(data)
        except StorageError as err:
            return self._bad(f"{self.path.name} {err}", data)
        try:
            document, migrated_from = migrate(document)
        except StorageError as err:
            return self._bad(f"{self.path.name}: {err}", data)
        if migrated_from is not None:
            _LOGGER.info(
                "Migrated %s from format %s to format %s",
                self.path.name,
                migrated_from,
                FORMAT,
            )
        return Loaded(document, migrated_from=migrated_from)

    def quarantine(self, problem: str) -> Loaded:
        """Move the state file aside because its content cannot be used."""
        try:
            data = self.path.read_bytes()
        except OSError:
            data = b""
        return self._bad(problem, data)

    def save(self, document: dict[str, Any], generation: int = 0) -> bool:
        """Write a document atomically; see ``write_text``."""
        return self.write_text(json.dumps(document, separators=(",", ":")), generation)

    def write_text(self, text: str, generation: int = 0) -> bool:
        """Write the file atomically; skip (return False) if a newer one was written.

        ``generation`` orders concurrent writers: a write older than the last one
        that reached the disk is dropped instead of replacing newer data.
        """
        with self._lock:
            if generation < self._written_generation:
                return False
            write_atomic(self.path, text.encode("utf-8"))
            self._written_generation = generation
            return True

    def _bad(self, problem: str, data: bytes) -> Loaded:
        """Move the file aside, log why, and report a fresh start."""
        hint = max((int(m) for m in _LAST_SEQ.findall(data)), default=0)
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{STATE_FILE}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{STATE_FILE}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
        except OSError as err:
            _LOGGER.error(
                "State file unusable (%s) and could not be moved aside (%s); "
                "starting with empty state",
                problem,
                err,
            )
            return Loaded(None, problem=problem, last_seq_hint=hint)
        _LOGGER.error(
            "State file unusable (%s); moved it to %s and starting with empty state",
            problem,
            target.name,
        )
        return Loaded(None, moved_aside=target, problem=problem, last_seq_hint=hint)


def parse_document(data: bytes) -> Any:
    """Parse state-file bytes as strict JSON, or raise StorageError saying why.

    Stricter than ``json.loads``: NaN and Infinity (which a later answer would serve
    as invalid JSON), numbers too large for a float or a 64-bit counter, and nesting
    deep enough to exhaust the stack are refused instead of escaping as other errors.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StorageError(f"is not valid JSON: {err}") from err
    if _nesting_depth(text) > MAX_DEPTH:
        raise StorageError(f"is not valid JSON: nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as err:
        # JSONDecodeError is a ValueError; so are the refusals above
        raise StorageError(f"is not valid JSON: {err}") from err


def _nesting_depth(text: str) -> int:
    """Return the deepest bracket nesting outside strings (a cheap linear scan)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def migrate(document: Any) -> tuple[dict[str, Any], int | None]:
    """Bring a document to the current format; return it and the format it had."""
    if not isinstance(document, dict):
        raise StorageError("top level is not an object")
    version = document.get("format", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise StorageError(f"format {version!r} is not a number")
    if version > FORMAT:
        raise StorageError(
            f"format {version} is newer than this version understands ({FORMAT})"
        )
    if version != FORMAT and version not in MIGRATIONS:
        raise StorageError(f"unknown format {version}")
    original = version
    while version < FORMAT:
        document = MIGRATIONS[version](document)
        version = document["format"]
    _check_format_1(document)
    return document, (original if original != FORMAT else None)


def _check_format_1(document: dict[str, Any]) -> None:
    """Check the top-level keys of a format-1 document."""
    seq = document.get("last_seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise StorageError("last_seq must be a non-negative integer")
    if not isinstance(document.get("ecus"), dict):
        raise StorageError("ecus must be an object")


def _kwh_to_mwh(value: Any) -> int:
    """Convert a format-0 kWh number to integer mWh."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise StorageError(f"energy {value!r} is not a non-negative number")
    return round(value * 1_000_000)


def _migrate_0_to_1(old: dict[str, Any]) -> dict[str, Any]:
    """Convert the format-0 layout (lists, kWh floats, ISO record times)."""
    seq = old.get("seq", 0)
    ecus_in = old.get("ecus", [])
    if not isinstance(ecus_in, list):
        raise StorageError("format 0: ecus must be a list")
    ecus: dict[str, Any] = {}
    try:
        for ecu in ecus_in:
            seen = sorted(
                format_wire_timestamp(datetime.fromisoformat(r))
                for r in ecu.get("records", [])
            )
            inverters = [
                {
                    "id": inv["id"],
                    "type_code": inv.get("type_code", ""),
                    "family": inv.get("family", "unknown"),
                    "online": False,
                    "today_mwh": _kwh_to_mwh(inv.get("day_kwh", 0)),
                    "total_mwh": _kwh_to_mwh(inv.get("total_kwh", 0)),
                    "channels": [
                        {
                            "channel": int(ch["channel"]),
                            "today_mwh": _kwh_to_mwh(ch.get("day_kwh", 0)),
                            "total_mwh": _kwh_to_mwh(ch.get("total_kwh", 0)),
                        }
                        for ch in inv.get("channels", [])
                    ],
                }
                for inv in ecu.get("inverters", [])
            ]
            ecus[ecu["id"]] = {
                "ecu_id": ecu["id"],
                "model": ecu.get("model"),
                "lifetime_energy_kwh": ecu.get("lifetime_kwh"),
                "today": ecu.get("day"),
                "today_mwh": _kwh_to_mwh(ecu.get("day_kwh", 0)),
                "inverters": inverters,
                "seen": seen,
                "last_record_at": (_wire_to_iso(seen[-1]) if seen else None),
            }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise StorageError(f"format 0 document is malformed: {err!r}") from err
    return {
        "format": 1,
        "saved_at": None,
        "clean": False,
        "last_seq": seq,
        "ecus": ecus,
    }


# format found in the file -> function producing the next format
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    0: _migrate_0_to_1,
}


def _wire_to_iso(text: str) -> str:
    moment = parse_wire_timestamp(text)
    if moment is None:
        raise StorageError(f"format 0: bad record time {text!r}")
    return moment.isoformat()
