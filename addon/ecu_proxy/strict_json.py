"""Parse JSON read from disk strictly: what ``json.loads`` lets through is refused.

A saved file may be damaged or planted. ``json.loads`` accepts NaN and Infinity (which
a later answer would serve as invalid JSON), numbers too large for a float or a 64-bit
counter, and nesting deep enough to exhaust the stack; here each is a plain error.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Saved documents are a few levels deep; anything far deeper is damage or an attack.
MAX_DEPTH = 32
# 19 digits hold any 63-bit counter.
MAX_INT_DIGITS = 19
# Brackets outside strings: a string token is skipped whole, escapes included.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class StrictJsonError(ValueError):
    """The bytes are not strict JSON."""


def parse_strict(data: bytes) -> Any:
    """Parse bytes as strict JSON, or raise StrictJsonError saying why."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StrictJsonError(str(err)) from err
    if _nesting_depth(text) > MAX_DEPTH:
        raise StrictJsonError(f"nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as err:
        # JSONDecodeError is a ValueError; so are the refusals above
        raise StrictJsonError(str(err)) from err


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
