"""Cut one direction of a TCP byte stream into frames (docs/protocol.md §3).

Three kinds of frame travel on the ECU ports:

* ``APS`` frames: ``APS`` + 2-digit version + 5-character length at ``[5:10]``
  (``A`` or ``0`` as leading padding: ``AA302``, ``00302``, ``A1142``, ``10326``).
  The length counts the frame without its optional trailing LF.
* EMA data replies: ``1`` + ``NN`` + ``NN`` 14-digit timestamps; no header, no
  ``END``, maybe an LF. Anything starting with a digit is cut as one of these.
* JSON lines ``{...}`` ending in LF (the optimizer firmware's night query).

Everything else is garbage: it is collected up to the next valid ``APS`` header
(``APS``, two digits, a length field from 10 to ``max_frame``) and handed out as one
chunk, so the decoder reports it instead of it vanishing. An ``APS`` whose header is
not valid stays inside the garbage run, so a flood of ``APSAPS...`` becomes a few
chunks of ``max_frame`` bytes, found by a regular expression at C speed, instead of
millions of tiny ones. The framer works on a copy of the stream; it never raises.

``feed`` takes an optional frame ``limit`` so a caller can cap the work one
connection causes (runs of ``100`` or ``{`` + LF are valid tiny frames). Past the limit
the framer throttles: it drops the rest of the bytes, counted in ``skipped``, until
it is fed with a limit above zero again, and then resynchronises at the next valid
``APS`` header.

The output does not depend on how the stream was split into reads: every decision
waits until the bytes it needs are there, and oversized runs are cut at fixed sizes.
"""

from __future__ import annotations

import re

_LF = 0x0A
_APS = b"APS"
_DIGITS = frozenset(b"0123456789")
_MIN_APS_LENGTH = 10  # the header itself
_TIMESTAMP_LEN = 14
# A complete, well-formed APS header: "APS", version, 5-character length field.
_APS_HEADER = re.compile(
    rb"APS[0-9]{2}(?:[0-9]{5}|A[0-9]{4}|AA[0-9]{3}|AAA[0-9]{2}|AAAA[0-9])"
)


def aps_length(field: bytes) -> int | None:
    """Return the value of a 5-character length field, or None if it is malformed.

    ``A`` counts as a leading zero (``AA302`` = 302); once a digit has been seen,
    only digits may follow.
    """
    digits = field.lstrip(b"A")
    if not digits or not digits.isdigit() or len(field) != 5:
        return None
    return int(digits)


class Framer:
    """Cut a byte stream (one direction of one TCP connection) into frames."""

    __slots__ = (
        "_buf",
        "_garbage_scan",
        "_in_garbage",
        "_max",
        "_skip_lf",
        "_throttled",
        "skipped",
    )

    def __init__(self, max_frame: int = 200_000) -> None:
        """Create a framer; frames longer than ``max_frame`` are not waited for."""
        self._buf = bytearray()
        self._max = max(int(max_frame), 1)
        self._skip_lf = False
        # While collecting garbage: where the search for the next "APS" goes on.
        self._in_garbage = False
        self._garbage_scan = 0
        # Past a feed limit: bytes are dropped (and counted) instead of cut.
        self._throttled = False
        self.skipped = 0

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """Add bytes from the stream; return up to ``limit`` completed frames."""
        if not data:
            return []
        if self._throttled:
            if limit is not None and limit <= 0:
                self.skipped += len(data)
                return []
            # Back from throttling mid-stream: garbage until the next valid header.
            self._throttled = False
            self._in_garbage = True
            self._garbage_scan = 0
            self._skip_lf = False
        buf = self._buf
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
                if not data:
                    return []
        buf += data
        frames: list[bytes] = []
        pos = self._cut(frames, limit)
        if self._throttled:
            self.skipped += len(buf) - pos
            buf.clear()
            self._in_garbage = False
            self._skip_lf = False
            return frames
        if pos:
            del buf[:pos]
            if self._in_garbage:
                self._garbage_scan -= pos
        return frames

    def flush(self) -> list[bytes]:
        """At connection end: return the leftover bytes as one last chunk, or []."""
        self._skip_lf = False
        self._in_garbage = False
        self._throttled = False
        if not self._buf:
            return []
        rest = bytes(self._buf)
        self._buf.clear()
        return [rest]

    # -- internals ---------------------------------------------------------------

    def _cut(self, frames: list[bytes], limit: int | None) -> int:
        """Append complete frames (up to ``limit``); return the bytes consumed."""
        buf = self._buf
        end = len(buf)
        pos = 0
        while pos < end:
            if limit is not None and len(frames) >= limit:
                self._throttled = True
                return pos
            first = buf[pos]
            if self._in_garbage:
                size = self._garbage_end(pos)
                if size is None:
                    return pos
                if size:
                    frames.append(bytes(buf[pos : pos + size]))
                    pos += size
                if size == self._max:
                    # Cut at the cap: still garbage, unless an "APS" starts right here.
                    self._garbage_scan = pos
                else:
                    self._in_garbage = False  # resync at the "APS"
                continue
            if first == 0x41:  # "A"
                size = self._aps_size(pos)
            elif first in _DIGITS:
                size = self._ema_reply_size(pos)
            elif first == 0x7B:  # "{"
                size = self._json_size(pos)
            else:
                size = -1
            if size is None:
                return pos  # wait for more bytes
            if size < 0:
                # Not a frame start: collect garbage from here to the next "APS".
                self._in_garbage = True
                self._garbage_scan = pos + 1
                continue
            frames.append(bytes(buf[pos : pos + size]))
            pos += size
            if first == 0x7B:
                pos += 1  # the JSON line's LF
            elif pos < end:
                if buf[pos] == _LF:
                    pos += 1
            else:
                self._skip_lf = True
        return pos

    def _aps_size(self, pos: int) -> int | None:
        """Size of the APS frame at ``pos``; None = need more bytes; -1 = not one."""
        buf = self._buf
        have = len(buf) - pos
        head = bytes(buf[pos : pos + _MIN_APS_LENGTH])
        if not _APS.startswith(head[:3]):
            return -1
        if have < _MIN_APS_LENGTH:
            # Decide as early as the bytes allow, so garbage is not held needlessly.
            if have > 3 and not head[3:5].isdigit():
                return -1
            return None
        if not head[3:5].isdigit():
            return -1
        length = aps_length(head[5:10])
        if length is None or not _MIN_APS_LENGTH <= length <= self._max:
            return -1
        if have < length:
            return None
        return length

    def _ema_reply_size(self, pos: int) -> int | None:
        """Size of the EMA reply at ``pos``: 3 + 14 x NN characters."""
        buf = self._buf
        if len(buf) - pos < 3:
            return None
        count = bytes(buf[pos + 1 : pos + 3])
        if not count.isdigit():
            return -1
        size = 3 + _TIMESTAMP_LEN * int(count)
        if len(buf) - pos < size:
            return None
        return size

    def _json_size(self, pos: int) -> int | None:
        """Size of the JSON line at ``pos`` without its LF."""
        buf = self._buf
        limit = min(len(buf), pos + self._max + 1)
        newline = buf.find(b"\n", pos, limit)
        if newline >= 0:
            return newline - pos
        if len(buf) - pos > self._max:
            return -1  # too long: report it as garbage
        return None

    def _garbage_end(self, pos: int) -> int | None:
        """Size of the garbage run starting at ``pos``; None = need more bytes.

        The run ends before the next valid ``APS`` header or after ``max_frame``
        bytes, whichever comes first; both are found the same way however the stream
        was split. A run cut at the cap goes on as garbage.
        """
        buf = self._buf
        limit = pos + self._max
        scan = max(self._garbage_scan, pos)
        # A header starting before `limit` ends the run; matches end by limit + 9.
        while True:
            match = _APS_HEADER.search(buf, scan, limit + _MIN_APS_LENGTH - 1)
            if match is None:
                break
            found = match.start()
            length = aps_length(bytes(buf[found + 5 : found + _MIN_APS_LENGTH]))
            if length is not None and _MIN_APS_LENGTH <= length <= self._max:
                return found - pos
            scan = found + 1
        if len(buf) >= limit + _MIN_APS_LENGTH - 1:
            return self._max
        # Every header that starts before the last 9 bytes is decided already.
        self._garbage_scan = max(scan, len(buf) - (_MIN_APS_LENGTH - 1))
        return None
