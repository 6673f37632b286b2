"""Pair each command EMA sends to the ECU with the ECU's answer, and keep the last days.

On port 8997 EMA answers a poll with a command; the ECU carries it out and sends its
result (an ``A100`` acknowledgement or a report) on the same connection. The log
turns that pair into one ``EmaCommand`` (the contract's, as the API lists it): when,
which ECU, what was asked, with which parameters, what the proxy did (forwarded or
blocked by the guard) and what the ECU answered. A command without an answer is
closed when the ECU polls again on a new connection. Entries are kept for
``RETENTION`` in ``commands.json`` in the data folder (the same JSON), written
atomically in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .atomic import write_atomic
from .contract.codec import decode, encode
from .contract.constants import CommandOutcome, GuardMode
from .contract.state import CommandAnswer, EmaCommand
from .control import Action
from .models import Direction, FrameKind

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .models import FrameEvent

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "commands.json"
FORMAT = 1
RETENTION = timedelta(days=7)
MAX_PER_ECU = 200
MAX_PENDING = 64
RECENT_IN_STATE = 20

# Session frames: they frame a command exchange but are not commands themselves.
_SESSION_ACTIONS = frozenset(
    {Action.POLL, Action.NO_MORE_COMMANDS, Action.ACKNOWLEDGEMENT}
)


class CommandLog:
    """Command entries per ECU: paired from frames, kept for days, saved to disk."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention: timedelta = RETENTION,
    ) -> None:
        """Create an empty log stored in ``data_dir``; ``load`` reads it back."""
        self.path = data_dir / FILE_NAME
        self._clock = clock
        self._retention = retention
        self._entries: dict[str, deque[EmaCommand]] = {}
        self._pending: dict[int, EmaCommand] = {}
        self._conn_ecu: dict[int, str] = {}
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    # --- pairing -----------------------------------------------------------------

    def observe(
        self, event: FrameEvent, *, blocked: bool, guard: GuardMode
    ) -> list[EmaCommand]:
        """Take one published frame; return the entries it completes."""
        frame = event.frame
        control = frame.control
        if frame.kind is not FrameKind.CONTROL or control is None:
            return []
        conn = event.connection_id
        done: list[EmaCommand] = []
        if event.direction is Direction.ECU_TO_EMA:
            if frame.ecu_id:
                self._remember_connection(conn, frame.ecu_id)
            pending = self._pending.pop(conn, None)
            if pending is not None and control.action is not Action.POLL:
                answer = CommandAnswer(
                    command=control.inner_command,
                    action=control.action.value,
                    result=control.parameters.get("result"),
                    parameters=control.parameters,
                )
                done.append(dataclasses.replace(pending, answer=answer))
            elif pending is not None:
                done.append(pending)
            if control.action is Action.POLL and frame.ecu_id:
                done += self._close_unanswered(frame.ecu_id, conn)
        elif control.action not in _SESSION_ACTIONS:
            ecu_id = frame.ecu_id or self._conn_ecu.get(conn)
            if ecu_id is None:
                return done
            previous = self._pending.pop(conn, None)
            if previous is not None:
                done.append(previous)
            entry = EmaCommand(
                at=event.received_at,
                ecu_id=ecu_id,
                command=frame.command,
                inner_command=control.inner_command,
                action=control.action.value,
                changes_plant=control.changes_plant,
                parameters=control.parameters,
                raw_text=control.raw_text,
                outcome=CommandOutcome.BLOCKED if blocked else CommandOutcome.FORWARDED,
                blocked=blocked,
                guard=guard,
                answer=None,
            )
            if blocked:
                done.append(entry)
            else:
                self._pending[conn] = entry
                while len(self._pending) > MAX_PENDING:
                    done.append(self._pending.pop(next(iter(self._pending))))
        for entry in done:
            self._add(entry)
        return done

    def _remember_connection(self, conn: int, ecu_id: str) -> None:
        self._conn_ecu[conn] = ecu_id
        while len(self._conn_ecu) > MAX_PENDING:
            del self._conn_ecu[next(iter(self._conn_ecu))]

    def _close_unanswered(self, ecu_id: str, conn: int) -> list[EmaCommand]:
        """Close this ECU's commands left open on other connections (a new poll)."""
        stale = [
            c for c, e in self._pending.items() if e.ecu_id == ecu_id and c != conn
        ]
        return [self._pending.pop(c) for c in stale]

    def _add(self, entry: EmaCommand) -> None:
        entries = self._entries.setdefault(entry.ecu_id, deque(maxlen=MAX_PER_ECU))
        entries.append(entry)
        self._expire()
        self._dirty = True

    def _expire(self) -> None:
        cutoff = self._clock() - self._retention
        for ecu_id in list(self._entries):
            entries = self._entries[ecu_id]
            while entries and entries[0].at < cutoff:
                entries.popleft()
            if not entries:
                del self._entries[ecu_id]

    # --- reading -----------------------------------------------------------------

    def recent(self, ecu_id: str, limit: int = RECENT_IN_STATE) -> list[EmaCommand]:
        """Return the newest ``limit`` entries of an ECU, oldest first."""
        entries = list(self._entries.get(ecu_id, ()))
        return entries[-limit:] if limit > 0 else []

    def entries(self, ecu_id: str) -> list[EmaCommand]:
        """Return all kept entries of an ECU, oldest first."""
        return list(self._entries.get(ecu_id, ()))

    # --- persistence -------------------------------------------------------------

    def load(self) -> None:
        """Read the saved entries; a missing or unreadable file starts empty."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.warning("Ignoring unreadable command log %s: %s", self.path, err)
            return
        try:
            if document.get("format") != FORMAT:
                raise ValueError(f"unknown format {document.get('format')!r}")  # noqa: TRY301
            for ecu_id, items in document["ecus"].items():
                for item in items:
                    entry = decode(EmaCommand, item)
                    if entry.at.tzinfo is None:
                        raise ValueError("time without zone")  # noqa: TRY301
                    if entry.ecu_id == ecu_id:
                        self._entries.setdefault(
                            ecu_id, deque(maxlen=MAX_PER_ECU)
                        ).append(entry)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            _LOGGER.warning("Ignoring unreadable command log %s: %r", self.path, err)
            self._entries.clear()
            return
        self._expire()

    def dump_text(self) -> str:
        """Return the file content for the current entries."""
        return json.dumps(
            {
                "format": FORMAT,
                "ecus": {
                    ecu_id: [encode(e) for e in self._entries[ecu_id]]
                    for ecu_id in sorted(self._entries)
                },
            },
            separators=(",", ":"),
        )

    def schedule_save(self) -> None:
        """Save soon in a worker thread (the caller must be on the event loop)."""
        if not self._dirty:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._save_loop())

    async def close(self) -> None:
        """Finish any save in progress and write what is still unsaved."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._save_loop()

    async def _save_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            data = self.dump_text().encode("utf-8")
            try:
                await asyncio.to_thread(write_atomic, self.path, data)
            except OSError as err:
                _LOGGER.error("Could not save the command log %s: %s", self.path, err)
                return
