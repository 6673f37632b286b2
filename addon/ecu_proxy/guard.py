"""Decide whether a command EMA sends to the ECU may pass (``ema_command_guard``).

Off by default: everything is forwarded. ``block_changes`` stops every command that
changes the ECU or its inverters; ``block_listed`` stops only the actions named in
``blocked_actions``. Polls, acknowledgements, "no more commands" and requests for
reports always pass. A blocked command is not forwarded: the ECU gets the "no more
commands" frame EMA itself sends, so its session ends cleanly, and the connection to
EMA is closed without a forged acknowledgement.

The relay asks a ``CommandGate`` per connection, which holds EMA's bytes only until
an ``APS`` frame is whole; anything else passes at once and unchanged.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .cloudless import encode_no_more_commands
from .contract.constants import GuardMode
from .control import PLANT_CHANGING, Action
from .decoder import decode_frame
from .framing import aps_length
from .lograte import RateLimitedLog
from .models import DecodedFrame, FrameKind
from .wire import is_ecu_id

if TYPE_CHECKING:
    from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

# Actions a user may list in blocked_actions: the plant-changing ones.
BLOCKABLE_ACTIONS = frozenset(a.value for a in PLANT_CHANGING)
# Longest APS frame held back for a decision: an inverter list for the 999
# inverters an ECU can hold is about 20 kB. Longer frames are not control frames and
# pass unheld.
MAX_HELD_FRAME = 64 * 1024
# Connections whose verdict waits to be read by the command log.
MAX_VERDICTS = 256
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """The guard's options."""

    mode: GuardMode = GuardMode.OFF
    blocked_actions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockedCommand:
    """A command the guard kept from the ECU."""

    connection_id: int
    ecu_id: str
    raw: bytes
    frame: DecodedFrame
    reply: bytes  # what the ECU got instead


@dataclass(slots=True)
class GuardCounts:
    """How many commands the guard blocked, in total and per ECU."""

    total: int = 0
    by_ecu: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, int] = field(default_factory=dict)


class Guard:
    """The policy, its counters and the verdicts the command log reads."""

    def __init__(
        self,
        settings: GuardSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Create a guard with the user's settings."""
        self.settings = settings
        self.counts = GuardCounts()
        self._clock = clock
        self._blocked = frozenset(settings.blocked_actions)
        self._log = RateLimitedLog(_LOGGER, DAY_S)
        self._verdicts: OrderedDict[tuple[int, bytes], None] = OrderedDict()

    @property
    def active(self) -> bool:
        """Return whether the guard may block anything."""
        return self.settings.mode is not GuardMode.OFF

    def blocks(self, frame: DecodedFrame) -> bool:
        """Return whether this EMA -> ECU frame must not reach the ECU."""
        control = frame.control
        if frame.kind is not FrameKind.CONTROL or control is None:
            return False
        if not control.changes_plant:
            return False  # reads, reports and session frames always pass
        match self.settings.mode:
            case GuardMode.BLOCK_CHANGES:
                return True
            case GuardMode.BLOCK_LISTED:
                return control.action.value in self._blocked
            case _:
                return False

    def gate(self, connection_id: int) -> CommandGate | None:
        """Return a gate for one connection, or None when the guard is off."""
        return CommandGate(self, connection_id) if self.active else None

    def record_block(self, blocked: BlockedCommand) -> None:
        """Count a blocked command, log it once per day, keep its verdict."""
        control = blocked.frame.control
        action = control.action.value if control else Action.UNKNOWN.value
        counts = self.counts
        counts.total += 1
        counts.by_ecu[blocked.ecu_id] = counts.by_ecu.get(blocked.ecu_id, 0) + 1
        counts.by_action[action] = counts.by_action.get(action, 0) + 1
        # A distinct command is what it asks for, not when: EMA stamps every send.
        asked = json.dumps(control.parameters if control else {}, sort_keys=True)
        inner = control.inner_command if control else blocked.frame.command
        self._log.limited_warning(
            f"{self._clock().date().isoformat()} {blocked.ecu_id} {inner} {asked}",
            "Blocked EMA command %s (%s) for ECU %s; the ECU was told there are "
            "no more commands (%d blocked so far)",
            blocked.frame.command,
            action,
            blocked.ecu_id,
            counts.total,
        )
        self._verdicts[(blocked.connection_id, blocked.raw)] = None
        while len(self._verdicts) > MAX_VERDICTS:
            self._verdicts.popitem(last=False)

    def take_verdict(self, connection_id: int, raw: bytes) -> bool:
        """Return (once) whether this frame on this connection was blocked."""
        key = (connection_id, raw)
        if key in self._verdicts:
            del self._verdicts[key]
            return True
        return False


class CommandGate:
    """Hold EMA -> ECU bytes of one connection until an APS frame is whole.

    Bytes that do not start an ``APS`` frame (data-port replies, garbage) pass at
    once, and from then on the gate passes everything: it never guesses where an
    unknown frame ends. After a block it passes nothing more.
    """

    __slots__ = (
        "_buf",
        "_connection_id",
        "_guard",
        "_passthrough",
        "blocked",
        "reply",
    )

    def __init__(self, guard: Guard, connection_id: int) -> None:
        """Create the gate of one connection."""
        self._guard = guard
        self._connection_id = connection_id
        self._buf = bytearray()
        self._passthrough = False
        self.blocked: BlockedCommand | None = None
        self.reply: bytes | None = None  # to send the ECU once, then None

    def flush(self) -> bytes:
        """Return the bytes held back when EMA's side ends (never a blocked frame)."""
        held = bytes(self._buf)
        self._buf.clear()
        return b"" if self.blocked is not None else held

    def take_reply(self) -> bytes | None:
        """Return the "no more commands" frame for the ECU once after a block."""
        reply, self.reply = self.reply, None
        return reply

    def feed(self, data: bytes, ecu_id: str | None) -> bytes:
        """Take bytes from EMA; return those that may go on to the ECU now."""
        if self.blocked is not None:
            return b""
        if self._passthrough:
            return data
        self._buf += data
        out = bytearray()
        while self._buf:
            size = self._frame_size()
            if size is None:
                break  # wait for the rest of the frame
            if size <= 0:
                self._passthrough = True
                out += self._buf
                self._buf.clear()
                break
            raw = bytes(self._buf[:size])
            del self._buf[:size]
            if self._block(raw, ecu_id):
                self._buf.clear()
                break
            out += raw
        return bytes(out)

    def _frame_size(self) -> int | None:
        """Return the size of the frame at the start, None to wait, 0 to give up."""
        buf = self._buf
        if buf[:1] == b"\n":
            return 1  # the optional LF after a frame
        if not b"APS".startswith(bytes(buf[:3])):
            return 0
        if len(buf) < 10:
            return None
        length = aps_length(bytes(buf[5:10]))
        if length is None or not 10 <= length <= MAX_HELD_FRAME:
            return 0
        if len(buf) < length:
            return None
        return length

    def _block(self, raw: bytes, ecu_id: str | None) -> bool:
        if raw == b"\n":
            return False
        frame = decode_frame(raw)
        if not self._guard.blocks(frame):
            return False
        # The ECU checks its own id in the frame; use the connection's if known.
        target = ecu_id if ecu_id and is_ecu_id(ecu_id) else frame.ecu_id
        if target is None or not is_ecu_id(target):
            return False  # no id to answer with: forwarding is the only safe choice
        self.blocked = BlockedCommand(
            connection_id=self._connection_id,
            ecu_id=target,
            raw=raw,
            frame=frame,
            reply=encode_no_more_commands(target),
        )
        self.reply = self.blocked.reply
        self._guard.record_block(self.blocked)
        return True
