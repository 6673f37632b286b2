"""Pair each command EMA sends to the ECU with the ECU's answer, and keep the last days.

On port 8997 EMA answers a poll with a command; the ECU carries it out and sends its
result (an ``A100`` acknowledgement or a report) on the same connection. The log
turns that pair into one ``EmaCommand`` (the contract's, as the API lists it): when,
which ECU, what was asked, with which parameters, what the proxy did (forwarded or
blocked by the guard) and what the ECU answered. A command without an answer is
closed when the ECU polls again on a new connection. Entries are kept for
``RETENTION`` in ``commands.json`` in the data folder (the same JSON under the
storage envelope), kept by its own :class:`~ecu_proxy.storage.Store`: saved about a
second after a change and on stop, an unreadable file moved aside.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .contract.constants import CommandOutcome, GuardMode
from .contract.state import CommandAnswer, EmaCommand
from .control import Action
from .models import Direction, FrameKind
from .storage import Store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .models import FrameEvent

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


@dataclass(frozen=True, slots=True)
class SavedCommands:
    """What the command log file holds besides the storage envelope."""

    ecus: dict[str, list[EmaCommand]]

    def __post_init__(self) -> None:
        """Refuse times without a zone: they cannot be compared for expiry."""
        for entries in self.ecus.values():
            for entry in entries:
                if entry.at.tzinfo is None:
                    raise ValueError(f"time {entry.at.isoformat()} has no zone")


class CommandLog:
    """Command entries per ECU: paired from frames, kept for days, saved to disk."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention: timedelta = RETENTION,
        save_delay: float = 1.0,
        retry_delay: float = 5.0,
    ) -> None:
        """Create an empty log stored in ``data_dir``; ``start`` reads it back."""
        self._clock = clock
        self._retention = retention
        self._entries: dict[str, deque[EmaCommand]] = {}
        self._pending: dict[int, EmaCommand] = {}
        self._conn_ecu: dict[int, str] = {}
        self.store = Store(
            data_dir / FILE_NAME,
            SavedCommands,
            version=FORMAT,
            what="the command log",
            clock=clock,
            delay=save_delay,
            retry_delay=retry_delay,
        )

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
        self.store.changed()

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

    async def start(self) -> None:
        """Read the saved entries back and start saving changes.

        A missing file starts empty; an unreadable one is moved aside (``Store``).
        Entries filed under another ECU than their own are dropped.
        """
        loaded = await self.store.async_load()
        if loaded.data is not None:
            for ecu_id, items in loaded.data.ecus.items():
                kept = (e for e in items if e.ecu_id == ecu_id)
                if entries := deque(kept, maxlen=MAX_PER_ECU):
                    self._entries[ecu_id] = entries
            self._expire()
        await self.store.start(self._saved)

    async def stop(self) -> None:
        """Save what is kept one last time and stop saving."""
        await self.store.stop()

    def _saved(self) -> SavedCommands:
        return SavedCommands(
            {ecu_id: list(self._entries[ecu_id]) for ecu_id in sorted(self._entries)}
        )
