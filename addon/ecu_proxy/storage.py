"""One owner of a saved file: format version, migrations, quarantine, debounced saves.

Modelled on Home Assistant's ``helpers/storage.Store``. The file is one JSON object::

    {"format": <version>, "saved_at": "<UTC ISO>", "clean": <bool>, ...the data}

where the data is a contract type (``ecu_proxy.contract.codec``) written with
``encode`` and read back with ``decode``: the file's shape is the data classes' shape.
Each file has a store of its own: the state file (state_file.py) and the command log
(commands.py).

* Load: the file is parsed strictly, brought to the current version by the
  migrations (format found -> function producing the next format), then decoded. A
  file that fails any step is moved aside to ``<name>.corrupt-<UTC time>`` (never
  deleted), the reason is logged, and the owner starts fresh.
* Save: ``changed`` schedules a save after a short delay, so a burst of changes is
  one write; ``save_soon`` skips the delay for someone waiting for the disk. Writes
  go through ``write_atomic`` in a worker thread, so after a ``kill -9`` or a power
  cut the file holds either the previous or the new document, never a mix.
* Stop: one last save with ``clean`` true. Every other save writes ``clean`` false,
  including one made right after loading a clean file, so a crash is never mistaken
  for an orderly stop.
* Durability: every change gets a mark (``record_mark``); a save makes every mark up
  to the one it serialised durable (an owner that never waits for the disk ignores
  them). When the disk refuses writes, the owner keeps working in memory, the problem
  is logged once and shown in ``disk_problem``, and saving is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import temp_path, write_atomic
from .contract.codec import decode, encode, meta
from .strict_json import StrictJsonError, parse_strict

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_LOGGER = logging.getLogger(__name__)

# Field metadata for saved numbers: counters are exact non-negative 63-bit integers
# (mWh for a million years of a large plant); readings are finite and plausible.
COUNTER = meta(minimum=0, maximum=2**63 - 1)
READING = meta(minimum=-1e15, maximum=1e15)


type Migration = Callable[[dict[str, Any]], dict[str, Any]]


class StorageError(ValueError):
    """The saved file cannot be used."""


@dataclass(frozen=True, slots=True)
class Loaded[T]:
    """The outcome of reading the file."""

    data: T | None  # None to start fresh
    clean: bool = False  # written by an orderly stop
    migrated_from: int | None = None
    moved_aside: Path | None = None
    problem: str | None = None
    salvaged: int = 0  # what ``salvage`` found in a bad file


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store[T]:
    """Reads, migrates and saves one file holding a ``kind`` value."""

    def __init__(
        self,
        path: Path,
        kind: type[T],
        *,
        version: int,
        what: str = "data",
        migrations: Mapping[int, Migration] | None = None,
        salvage: Callable[[bytes], int] | None = None,
        clock: Callable[[], datetime] | None = None,
        delay: float = 1.0,
        retry_delay: float = 5.0,
    ) -> None:
        """Keep ``kind`` at ``path`` in format ``version``.

        ``what`` names the content in log messages; ``salvage`` reads a number worth
        keeping from a file that is moved aside.
        """
        self.path = path
        self.kind = kind
        self.version = version
        self.what = what
        self._migrations = dict(migrations or {})
        self._salvage = salvage
        self._clock = clock or _utcnow
        self._delay = delay
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._written_generation = -1
        self._generation = 0
        self._data: Callable[[], T] | None = None
        self._loaded_clean = False
        self._read_only = False
        self._dirty: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._saved: asyncio.Event | None = None
        self._saver: asyncio.Task[None] | None = None
        self._changes = 0
        self._durable = 0
        self._saves = 0
        self.disk_problem: str | None = None

    # --- loading -----------------------------------------------------------------

    def load(self) -> Loaded[T]:
        """Read, check, migrate and decode the file; move a bad one aside."""
        # A temp file is left by an interrupted write; a read-only folder may refuse
        # to tidy it up, which must not keep the saved data from loading.
        with contextlib.suppress(OSError):
            temp_path(self.path).unlink(missing_ok=True)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Loaded(None)
        except OSError as err:
            return self._bad(f"cannot read {self.path.name}: {err}", b"")
        try:
            parsed = parse_strict(raw)
        except StrictJsonError as err:
            return self._bad(f"{self.path.name} is not valid JSON: {err}", raw)
        try:
            document, migrated_from = self._migrate(parsed)
        except StorageError as err:
            return self._bad(f"{self.path.name}: {err}", raw)
        try:
            data = decode(self.kind, document)
        except (ValueError, TypeError, OverflowError, RecursionError) as err:
            # ContractError is a ValueError; the rest is what slips past the shapes
            return self._bad(f"{self.path.name}: {err}", raw)
        if migrated_from is not None:
            _LOGGER.info(
                "Migrated %s from format %s to format %s",
                self.path.name,
                migrated_from,
                self.version,
            )
        clean = document.get("clean") is True
        self._loaded_clean = clean
        return Loaded(data, clean=clean, migrated_from=migrated_from)

    async def async_load(self) -> Loaded[T]:
        """Load in a worker thread; if the folder cannot be read, never write it."""
        try:
            return await asyncio.to_thread(self.load)
        except OSError as err:
            self._read_only = True
            self._disk_failed(err)
            return Loaded(None)

    def _migrate(self, document: Any) -> tuple[dict[str, Any], int | None]:
        """Bring a document to the current format; return it and the format it had."""
        if not isinstance(document, dict):
            raise StorageError("top level is not an object")
        found = document.get("format")
        if isinstance(found, bool) or not isinstance(found, int):
            raise StorageError(f"format {found!r} is not a number")
        if found > self.version:
            raise StorageError(
                f"format {found} is newer than this version understands "
                f"({self.version})"
            )
        version = found
        while version < self.version:
            step = self._migrations.get(version)
            if step is None:
                raise StorageError(f"unknown format {version}")
            try:
                document = step(document)
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise StorageError(f"format {version} is malformed: {err!r}") from err
            version = document["format"]
        return document, (found if found != self.version else None)

    def _bad(self, problem: str, raw: bytes) -> Loaded[T]:
        """Move the file aside, log why, and report a fresh start."""
        salvaged = self._salvage(raw) if self._salvage is not None else 0
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
        except OSError as err:
            _LOGGER.error(
                "%s unusable (%s) and could not be moved aside (%s); starting empty",
                self.path.name,
                problem,
                err,
            )
            return Loaded(None, problem=problem, salvaged=salvaged)
        _LOGGER.error(
            "%s unusable (%s); moved it to %s and starting empty",
            self.path.name,
            problem,
            target.name,
        )
        return Loaded(None, moved_aside=target, problem=problem, salvaged=salvaged)

    # --- writing -------------------------------------------------------------------

    def dump(self, data: T, *, clean: bool = False) -> str:
        """Return the file's text for ``data``."""
        document = {
            "format": self.version,
            "saved_at": self._clock().isoformat(),
            "clean": clean,
            **encode(data),
        }
        return json.dumps(document, separators=(",", ":"))

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

    async def start(self, data: Callable[[], T]) -> None:
        """Start the debounced saver; ``data`` returns what to save, on the loop."""
        self._data = data
        self._dirty = asyncio.Event()
        self._urgent = asyncio.Event()
        self._saved = asyncio.Event()
        self._saver = asyncio.create_task(self._save_loop(), name=f"save {self.path}")
        if not self._loaded_clean:
            self._dirty.set()  # write what a fresh or recovered start holds, soon
            return
        # Mark the file as "running" at once: a kill before the first debounced save
        # must not look like a clean stop.
        try:
            await self._persist(clean=False)
        except OSError as err:
            self._disk_failed(err)

    async def stop(self) -> bool:
        """Stop the saver and save one last time, as clean; say if it was saved."""
        if self._data is None:
            return False  # never started: the file holds nothing of ours to replace
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        try:
            await self._persist(clean=True)
        except OSError as err:
            _LOGGER.error("Could not save %s on stop: %s", self.path.name, err)
            return False
        return not self._read_only

    def changed(self) -> None:
        """Note a change: it is saved after the delay, with any that follow."""
        self._changes += 1
        if self._dirty is not None:
            self._dirty.set()

    async def save_now(self) -> None:
        """Save immediately."""
        if self._dirty is not None:
            self._dirty.clear()
        await self._persist(clean=False)

    def record_mark(self) -> int:
        """Return a mark covering every change so far."""
        return self._changes

    def is_durable(self, mark: int) -> bool:
        """Return whether every change up to ``mark`` is on disk."""
        return self._durable >= mark

    def save_soon(self) -> None:
        """Start a save without the delay."""
        if self._dirty is not None and self._urgent is not None:
            self._dirty.set()
            self._urgent.set()

    async def wait_durable(self, mark: int) -> None:
        """Wait until every change up to ``mark`` is on disk (no time limit)."""
        if self._saved is None:
            raise RuntimeError("the store is not started")
        while not self.is_durable(mark):
            self.save_soon()
            await self._saved.wait()

    async def wait_saved(self) -> None:
        """Wait until the next write of the file completes."""
        if self._saved is None:
            raise RuntimeError("the store is not started")
        await self._saved.wait()

    @property
    def save_count(self) -> int:
        """Return how many times the file was written since creation."""
        return self._saves

    async def _save_loop(self) -> None:
        assert self._dirty is not None
        assert self._urgent is not None
        while True:
            await self._dirty.wait()
            if not self._urgent.is_set():
                # Debounce, unless someone waits for the disk.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._delay):
                        await self._urgent.wait()
            self._urgent.clear()
            self._dirty.clear()
            try:
                await self._persist(clean=False)
            except OSError as err:
                self._disk_failed(err)
                self._dirty.set()
                await asyncio.sleep(self._retry_delay)

    async def _persist(self, *, clean: bool) -> None:
        """Serialise on the loop (a consistent copy), write in a thread."""
        if self._read_only:
            raise OSError(f"{self.path.parent} could not be read safely at start")
        if self._data is None:
            raise RuntimeError("the store is not started")
        self._generation += 1
        mark = self._changes
        text = self.dump(self._data(), clean=clean)
        if await asyncio.to_thread(self.write_text, text, self._generation):
            self._saves += 1
            self._durable = max(self._durable, mark)
            if self.disk_problem is not None:
                _LOGGER.info("Saved %s again", self.path)
                self.disk_problem = None
            if self._saved is not None:
                self._saved.set()
                self._saved = asyncio.Event()

    def _disk_failed(self, err: OSError) -> None:
        """Note a failed save: log it once, keep it for the health report."""
        problem = f"cannot save {self.what} to {self.path}: {err.strerror or err}"
        if self.disk_problem is None:
            _LOGGER.error(
                "%s. Relaying and live data go on; saving is retried every %.0f s",
                problem,
                self._retry_delay,
            )
        else:
            _LOGGER.debug("Saving still fails: %s", problem)
        self.disk_problem = problem
