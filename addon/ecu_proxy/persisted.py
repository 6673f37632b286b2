"""Read fields of a persisted state document, refusing any that has the wrong shape."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from .decoder import parse_wire_timestamp


class StateFormatError(ValueError):
    """A persisted state document does not have the expected shape."""


def is_wire_time(text: str) -> bool:
    """Return whether text is an ASCII YYYYMMDDhhmmss time."""
    # isdigit() also passes full-width and other Unicode digits; the wire has ASCII
    return text.isascii() and parse_wire_timestamp(text) is not None


def mapping_of(raw: Any, what: str) -> dict[str, Any]:
    """Return raw if it is an object."""
    if not isinstance(raw, dict):
        raise StateFormatError(f"{what} must be an object")
    return raw


def list_of(data: dict[str, Any], key: str) -> list[Any]:
    """Return the list under key (empty if absent)."""
    value = data.get(key, [])
    if not isinstance(value, list):
        raise StateFormatError(f"{key} must be a list")
    return value


def str_of(data: dict[str, Any], key: str) -> str:
    """Return the string under key."""
    value = data.get(key)
    if not isinstance(value, str):
        raise StateFormatError(f"{key} must be a string")
    return value


def opt_str(data: dict[str, Any], key: str) -> str | None:
    """Return the string or None under key."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise StateFormatError(f"{key} must be a string or null")
    return value


def int_of(data: dict[str, Any], key: str) -> int:
    """Return the non-negative 63-bit integer under key (0 if absent)."""
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise StateFormatError(f"{key} must be a non-negative 63-bit integer")
    return value


def opt_float(data: dict[str, Any], key: str) -> float | None:
    """Return the finite number or None under key."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateFormatError(f"{key} must be a number or null")
    if not math.isfinite(value) or abs(value) > 1e15:
        raise StateFormatError(f"{key} is out of range")
    return value


def opt_time(data: dict[str, Any], key: str) -> datetime | None:
    """Return the ISO time or None under key."""
    value = opt_str(data, key)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as err:
        raise StateFormatError(f"{key} is not an ISO time: {value!r}") from err
