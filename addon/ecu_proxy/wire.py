"""Field-level facts of the ECU <-> EMA wire format that every decoding step shares.

Timestamps, ECU ids and models, inverter type codes, the two number codings that
are not plain digits, and the ``invalid`` frame every step returns when it cannot
read one. The facts are in docs/protocol.md.
"""

from __future__ import annotations

from datetime import datetime

from .models import DecodedFrame, FrameKind

TIMESTAMP_LEN = 14
# The ECU block that starts every data record, END included. docs/protocol.md §4.2.
ECU_BLOCK_LEN = 86

# EMA record type code -> (family, block length including END). docs/protocol.md §4.3.
BLOCK_TYPES: dict[str, tuple[str, int]] = {
    "03": ("YC500", 106),
    "04": ("YC1000", 147),
    "05": ("YC250", 75),
    "07": ("YC600", 88),
    "08": ("QS1", 128),
}

# ECU id prefix -> model, longest prefix first. docs/protocol.md §9.1.
_ECU_MODELS = (
    ("2160", "ECU-R"),
    ("2162", "ECU-R Pro"),
    ("2163", "ECU-B"),
    ("215", "ECU-C"),
    ("203", "ECU-3"),
)


def invalid(length: int, version: str | None, error: str) -> DecodedFrame:
    """Return the frame of kind ``invalid`` saying why it could not be read."""
    return DecodedFrame(
        kind=FrameKind.INVALID, version=version, length=length, error=error
    )


def ecu_model(ecu_id: str) -> str:
    """Return the ECU model for an ECU id from its prefix, or ``"unknown"``."""
    for prefix, model in _ECU_MODELS:
        if ecu_id.startswith(prefix):
            return model
    return "unknown"


def inverter_family(type_code: str) -> str:
    """Return the inverter family for an EMA record type code, or ``"unknown"``."""
    known = BLOCK_TYPES.get(type_code)
    return known[0] if known else "unknown"


def format_wire_timestamp(ts: datetime) -> str:
    """Return ``ts`` in the wire form ``YYYYMMDDhhmmss`` (wall clock, no zone)."""
    return (
        f"{ts.year:04d}{ts.month:02d}{ts.day:02d}"
        f"{ts.hour:02d}{ts.minute:02d}{ts.second:02d}"
    )


def is_ecu_id(text: str) -> bool:
    """Return whether ``text`` is a 12-digit ECU id."""
    return len(text) == 12 and text.isascii() and text.isdigit()


def parse_wire_timestamp(text: str) -> datetime | None:
    """Return the naive datetime of a ``YYYYMMDDhhmmss`` string, or None if invalid."""
    if len(text) != TIMESTAMP_LEN or not text.isdigit():
        return None
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
        )
    except ValueError:
        return None


def parse_signed_temperature(field: str) -> int | None:
    """Decode the sign-coded temperature of type 03/05 blocks (docs/protocol.md §4.8).

    ``B`` + 2 digits = -10 and below, ``AB`` + digit = -9..-1, ``AA`` + digit = 0..9,
    ``A`` + 2 digits = 10..99, 3 digits = 100 and above. Returns None if malformed.
    """
    if len(field) != 3:
        return None
    if field.isdigit():
        return int(field)
    head, tail = field[:2], field[2]
    if head == "AB" and tail.isdigit():
        return -int(tail)
    if head == "AA" and tail.isdigit():
        return int(tail)
    rest = field[1:]
    if rest.isdigit():
        if field[0] == "B":
            return -int(rest)
        if field[0] == "A":
            return int(rest)
    return None


def a_padded_int(field: str) -> int | None:
    """Return the number in a field padded with leading ``A`` (or ``0``)."""
    digits = field.lstrip("A")
    if not digits:
        return 0 if field else None
    return int(digits) if digits.isdigit() and digits.isascii() else None
