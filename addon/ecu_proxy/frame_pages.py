"""Build ``/api/frames`` and ``get_frames`` answers bounded in bytes, page by page.

Captured frames can hold long runs of garbage; 200 of them as JSON text once made a
33 MB answer built in one go on the event loop. Here each frame is serialised on
its own with its text cut short, frames are added newest first until the page is
full, and the last page built is kept, so clients repeating a request share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .contract.codec import encode
from .contract.frames import Frame, OmittedDecode
from .frame_json import captured

if TYPE_CHECKING:
    from .hub import CapturedFrame

# Bytes of one answer's "frames" document: all 200 frames of a real capture fit
# (about 2 kB each); garbage runs fill a page after a few frames.
PAGE_BYTES = 512 * 1024
# Characters of a frame's "raw" text in an answer: a 100-inverter record (about
# 13 kB) fits whole; garbage is cut (non-ASCII bytes take 4 characters as \xNN).
RAW_TEXT_LIMIT = 16 * 1024
# Bytes of one frame's JSON beyond which its decode is left out (a forged record
# with hundreds of inverter blocks); the raw text stays.
FRAME_JSON_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class FramePage:
    """One answer: the JSON of ``{"frames": [...], "more": bool}`` and its parts."""

    json: str
    count: int
    more: bool

    @property
    def body(self) -> bytes:
        """Return the JSON as bytes for HTTP."""
        return self.json.encode()


class FramePager:
    """Builds pages of captured frames, remembering the last one built."""

    def __init__(
        self,
        *,
        page_bytes: int = PAGE_BYTES,
        raw_text_limit: int = RAW_TEXT_LIMIT,
        frame_json_limit: int = FRAME_JSON_LIMIT,
    ) -> None:
        """Use the given byte limits."""
        self._page_bytes = page_bytes
        self._raw_limit = raw_text_limit
        self._frame_limit = frame_json_limit
        self._last: tuple[tuple[int, int | None, int, int], FramePage] | None = None
        self._texts: dict[int, str] = {}

    def page(
        self, frames: list[CapturedFrame], limit: int, before: int | None = None
    ) -> FramePage:
        """Return up to ``limit`` frames older than ``before``, newest last."""
        newest = frames[-1].seq if frames else 0
        key = (limit, before, newest, len(frames))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if before is not None:
            frames = [f for f in frames if f.seq < before]
        chosen = frames[-limit:] if limit > 0 else []
        parts: list[str] = []
        used = len('{"frames":[],"more":false}')
        texts: dict[int, str] = {}
        for frame in reversed(chosen):
            text = self._texts.get(frame.seq) or self._frame_json(frame)
            texts[frame.seq] = text
            if parts and used + len(text) + 1 > self._page_bytes:
                break
            parts.append(text)
            used += len(text) + 1
        more = len(parts) < len(frames)
        parts.reverse()
        body = '{"frames":[' + ",".join(parts) + '],"more":' + _bool(more) + "}"
        page = FramePage(body, len(parts), more)
        # Keep the texts of frames still captured; the rest are gone for good.
        self._texts = texts
        self._last = (key, page)
        return page

    def _frame_json(self, frame: CapturedFrame) -> str:
        listed = captured(frame)
        if len(listed.raw) > self._raw_limit:
            listed = replace(listed, raw=listed.raw[: self._raw_limit], truncated=True)
        text = _dumps(listed)
        if len(text) > self._frame_limit:
            whole = listed.decoded
            omitted = OmittedDecode(
                whole.kind, whole.version, whole.length, "decode too large to list"
            )
            text = _dumps(replace(listed, decoded=omitted))
        return text


def _dumps(frame: Frame) -> str:
    return json.dumps(encode(frame), separators=(",", ":"))


def _bool(value: bool) -> str:
    return "true" if value else "false"
