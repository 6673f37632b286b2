"""Decoded and captured frames as contract objects (``contract/frames.py``).

``apsystems-ecu-proxy decode``, ``get_frames`` and ``/api/frames`` send these; the
decode of a frame carries the keys common to every kind plus those of its kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contract.frames import (
    ControlFrame,
    DataFrame,
    Decoded,
    EmaReplyFrame,
    Frame,
    InvalidFrame,
    ReconcileQueryFrame,
    UnknownFrame,
)
from .models import FrameKind

if TYPE_CHECKING:
    from .hub import CapturedFrame
    from .models import DecodedFrame


def decoded(frame: DecodedFrame) -> Decoded:
    """Return the decode of one frame."""
    version, length = frame.version, frame.length
    match frame.kind:
        case FrameKind.DATA:
            return DataFrame(
                version=version,
                length=length,
                ecu_id=frame.ecu_id,
                ecu_model=frame.ecu_model,
                timestamp=frame.timestamp,
                power_w=frame.power_w,
                round_energy_kwh=frame.round_energy_kwh,
                lifetime_energy_kwh=frame.lifetime_energy_kwh,
                inverter_count=frame.inverter_count,
                more_records=frame.more_records,
                inverters=frame.inverters,
                warnings=list(frame.warnings),
            )
        case FrameKind.CONTROL if frame.control is not None:
            control = frame.control
            return ControlFrame(
                version=version,
                length=length,
                command=frame.command,
                ecu_id=frame.ecu_id,
                inner_command=control.inner_command,
                action=control.action.value,
                changes_plant=control.changes_plant,
                parameters=dict(control.parameters),
                raw_text=control.raw_text,
                problem=control.problem,
            )
        case FrameKind.RECONCILE_QUERY:
            return ReconcileQueryFrame(
                version=version, length=length, ecu_id=frame.ecu_id
            )
        case FrameKind.EMA_REPLY:
            return EmaReplyFrame(
                version=version,
                length=length,
                status=frame.status,
                timestamps=list(frame.timestamps),
            )
        case FrameKind.INVALID:
            return InvalidFrame(version=version, length=length, error=frame.error)
        case _:
            return UnknownFrame(version=version, length=length)


def captured(frame: CapturedFrame) -> Frame:
    """Return a captured frame as ``/api/frames`` lists it."""
    event = frame.event
    return Frame(
        seq=frame.seq,
        received_at=event.received_at,
        port=event.port,
        direction=event.direction,
        peer=event.peer,
        size=frame.size,
        truncated=frame.size > len(event.raw),
        raw=event.raw.decode("ascii", errors="backslashreplace"),
        decoded=decoded(event.frame),
    )
