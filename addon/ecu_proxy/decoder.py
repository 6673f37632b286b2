"""Decode one frame of the ECU <-> EMA protocol into a ``DecodedFrame``.

The facts are in docs/protocol.md §3-§9; decisions where the spec is open are in
docs/decoder.md. ``decode_frame`` never raises: anything it cannot make sense of comes
back as kind ``invalid`` with an ``error`` saying why, and nothing is dropped (inverter
blocks it cannot read are kept as text in ``Inverter.raw``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .aps15_record import decode_ecu3_typed, walk_v15
from .control import decode_control
from .data_record import decode_data
from .framing import aps_length
from .inverter_blocks import walk_blocks
from .models import DecodedFrame, FrameKind
from .wire import TIMESTAMP_LEN, invalid

if TYPE_CHECKING:
    from .models import Direction

RECONCILE_QUERY_LEN = 22


def decode_frame(frame: bytes, direction: Direction | None = None) -> DecodedFrame:
    """Decode one frame (as cut by ``Framer``); never raises.

    One trailing LF is ignored, so a file holding one frame can be passed as it is.
    ``direction`` is accepted for callers that know it; the wire formats of both
    directions are told apart by their content, so decoding does not depend on it.
    """
    del direction  # see docstring
    try:
        return _decode(bytes(frame))
    except Exception as err:  # noqa: BLE001 - the contract is "never raises"
        try:
            size = len(frame)
        except Exception:  # noqa: BLE001 - not even a length: report it as empty
            size = 0
        return invalid(size, None, f"decoder error: {type(err).__name__}: {err}")


def _decode(data: bytes) -> DecodedFrame:
    if data.endswith(b"\n"):
        data = data[:-1]
    size = len(data)
    if not size:
        return invalid(0, None, "empty frame")
    first = data[0]
    is_aps = data.startswith(b"APS")
    if not (is_aps or 0x30 <= first <= 0x39 or first == 0x7B):
        return invalid(
            size,
            None,
            f"not a frame: {size} bytes that do not start with 'APS', a digit or "
            f"'{{' (begins {data[:16]!r})",
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as err:
        version = data[3:5].decode("latin-1") if is_aps else None
        return invalid(
            size,
            version if version and version.isdigit() else None,
            f"bad byte 0x{data[err.start]:02x} at offset {err.start}: "
            "the protocol is ASCII",
        )
    if is_aps:
        return _decode_aps(text)
    if first == 0x7B:
        if text.endswith("}"):
            return DecodedFrame(kind=FrameKind.UNKNOWN, version=None, length=size)
        return invalid(size, None, "truncated: JSON line without its closing '}'")
    return _decode_ema_reply(text)


def _decode_aps(text: str) -> DecodedFrame:
    size = len(text)
    if size < 10:
        return invalid(
            size, None, f"truncated: {size} characters, an APS header needs 10"
        )
    version = text[3:5]
    if not version.isdigit():
        return invalid(size, None, f"bad version {version!r} after 'APS'")
    length = aps_length(text[5:10].encode("ascii"))
    if length is None:
        return invalid(size, version, f"bad length field {text[5:10]!r}")
    if size < length:
        return invalid(
            size, version, f"truncated: header says {length} characters, got {size}"
        )
    if size > length:
        return invalid(
            size,
            version,
            f"length mismatch: header says {length} characters, frame has {size}",
        )
    if version == "18":
        return decode_data(text, version, walk_blocks)
    if version == "13":
        return _decode_v13(text)
    if version == "15" and text[10:14] == "0001":
        return decode_data(text, version, walk_v15)
    if version == "15" and text[10:14] == "0002":
        return decode_ecu3_typed(text)
    return DecodedFrame(kind=FrameKind.UNKNOWN, version=version, length=size)


def _decode_v13(text: str) -> DecodedFrame:
    size = len(text)
    if size == RECONCILE_QUERY_LEN and text[10:22].isdigit():
        return DecodedFrame(
            kind=FrameKind.RECONCILE_QUERY,
            version="13",
            length=size,
            ecu_id=text[10:22],
        )
    command = text[10:14]
    if size >= 30 and command.lstrip("A").isdigit():
        ecu_id = text[18:30]
        details = decode_control(text)
        if isinstance(details, str):
            return invalid(size, "13", f"{command}: {details}")
        return DecodedFrame(
            kind=FrameKind.CONTROL,
            version="13",
            length=size,
            command=command,
            ecu_id=ecu_id if ecu_id.isdigit() else None,
            control=details,
        )
    return DecodedFrame(kind=FrameKind.UNKNOWN, version="13", length=size)


def _decode_ema_reply(text: str) -> DecodedFrame:
    size = len(text)
    if size < 3:
        return invalid(
            size, None, f"truncated: EMA reply of {size} characters, needs at least 3"
        )
    count = text[1:3]
    if not count.isdigit():
        return invalid(size, None, f"bad timestamp count {count!r} in EMA reply")
    need = 3 + TIMESTAMP_LEN * int(count)
    if size < need:
        return invalid(
            size,
            None,
            f"truncated: EMA reply announces {int(count)} timestamps "
            f"({need} characters), got {size}",
        )
    if size > need:
        return invalid(
            size,
            None,
            f"length mismatch: EMA reply announces {int(count)} timestamps "
            f"({need} characters), frame has {size}",
        )
    body = text[3:]
    if body and not body.isdigit():
        return invalid(size, None, "bad digits in the EMA reply's timestamps")
    return DecodedFrame(
        kind=FrameKind.EMA_REPLY,
        version=None,
        length=size,
        status=text[0],
        timestamps=tuple(
            body[i : i + TIMESTAMP_LEN] for i in range(0, len(body), TIMESTAMP_LEN)
        ),
    )
