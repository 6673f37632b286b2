"""Answer the ECU ourselves when uploads do not go on to EMA (mode ``cloudless``).

The replies follow the formats the ECU firmware parses (docs/protocol.md §5.1
and §7.4): a data record is acknowledged as stored by listing its own timestamp (only
when the state really holds it, since the ECU may then delete it), the
night-time reconciliation query gets the timestamps we hold for that ECU, and a
command poll gets "no more commands". Everything else gets no reply.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ecu_proxy.lograte import RateLimitedLog
from ecu_proxy.models import DecodedFrame, FrameKind, RecordIndex
from ecu_proxy.wire import (
    format_wire_timestamp,
    is_ecu_id,
    parse_wire_timestamp,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

_LOGGER = logging.getLogger(__name__)

MAX_TIMESTAMPS = 99
POLL_COMMAND = "A101"
NO_MORE_COMMANDS = "A100"


def encode_ema_reply(timestamps: Sequence[str], status: str = "1") -> bytes:
    """Encode a data-port reply: status, two-digit count, 14-digit timestamps."""
    if len(status) != 1 or not status.isascii():
        raise ValueError(f"status must be one ASCII character, not {status!r}")
    if len(timestamps) > MAX_TIMESTAMPS:
        raise ValueError(f"at most {MAX_TIMESTAMPS} timestamps fit in one reply")
    for stamp in timestamps:
        if parse_wire_timestamp(stamp) is None:
            raise ValueError(f"timestamp {stamp!r} is not YYYYMMDDhhmmss")
    return f"{status}{len(timestamps):02d}{''.join(timestamps)}".encode("ascii")


def encode_no_more_commands(ecu_id: str) -> bytes:
    """Encode EMA's own A100 frame telling the ECU there is nothing (more) to do.

    The form EMA itself sends (docs/protocol.md §7.4): ``A``-padded length,
    ``A100``, the ECU id, then ``A101`` and 15 zeros, ``END``, no LF. The cloudless
    responder and the command guard both answer with it, so the ECU sees exactly
    what EMA would have sent.
    """
    if not is_ecu_id(ecu_id):
        raise ValueError(f"ECU id {ecu_id!r} is not 12 digits")
    body = f"{NO_MORE_COMMANDS}AAA0{ecu_id}{POLL_COMMAND}{'0' * 15}END"
    return f"APS13{10 + len(body):A>5d}{body}".encode("ascii")


class CloudlessResponder:
    """Build the reply EMA would send, from the records we have stored."""

    def __init__(self, index: RecordIndex) -> None:
        self._index = index
        self._log = RateLimitedLog(_LOGGER)

    def reply_for(self, frame: DecodedFrame) -> bytes | None:
        """Return the bytes to send back to the ECU for this frame, or None."""
        match frame.kind:
            case FrameKind.DATA:
                stamp = (
                    format_wire_timestamp(frame.timestamp) if frame.timestamp else ""
                )
                if (
                    frame.ecu_id
                    and stamp
                    and self._index.is_stored(frame.ecu_id, stamp)
                ):
                    return encode_ema_reply((stamp,))
                # Not stored (refused, filtered or unreadable): accepted but not
                # confirmed, so the ECU keeps the record and offers it again.
                return encode_ema_reply(())
            case FrameKind.RECONCILE_QUERY:
                if frame.ecu_id is None or not is_ecu_id(frame.ecu_id):
                    return None
                return encode_ema_reply(self._stored(frame.ecu_id))
            case FrameKind.CONTROL:
                if (
                    frame.command == POLL_COMMAND
                    and frame.ecu_id is not None
                    and is_ecu_id(frame.ecu_id)
                ):
                    return encode_no_more_commands(frame.ecu_id)
                return None
            case _:
                return None

    def _stored(self, ecu_id: str) -> list[str]:
        """Return up to 99 well-formed stored timestamps for the ECU."""
        stamps = self._index.stored_timestamps(ecu_id, MAX_TIMESTAMPS)
        good = [s for s in stamps if parse_wire_timestamp(s) is not None]
        if len(good) != len(stamps):
            self._log.limited_warning(
                f"malformed {ecu_id}",
                "skipping %d malformed stored timestamps for ECU %s",
                len(stamps) - len(good),
                ecu_id,
            )
        return good[:MAX_TIMESTAMPS]
