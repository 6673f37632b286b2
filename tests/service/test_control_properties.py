"""Control-frame decoding never raises, whatever is done to a real frame."""

from __future__ import annotations

from pathlib import Path

from documents import frame_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecu_proxy.control import ControlDetails, decode_control
from ecu_proxy.decoder import decode_frame
from ecu_proxy.models import FrameKind

CONTROL = Path(__file__).resolve().parent.parent / "fixtures" / "vectors" / "control"
FRAMES = [p.read_bytes() for p in sorted(CONTROL.glob("*.txt"))]
FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
ALPHABET = b"0123456789AEDNPS-/. \n\x00\xff"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A shared control frame with bytes replaced, inserted, deleted or cut."""
    data = bytearray(draw(st.sampled_from(FRAMES)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        byte = draw(st.sampled_from(ALPHABET))
        if op == "set" and data:
            data[pos] = byte
        elif op == "insert":
            data.insert(pos, byte)
        elif op == "delete" and data:
            del data[pos]
        elif op == "cut":
            del data[pos:]
    return bytes(data)


def _with_true_length(data: bytes) -> bytes:
    """Rewrite the length field so the frame reaches the control decoder."""
    if len(data) < 10:
        return data
    return data[:5] + f"{len(data):05d}".encode() + data[10:]


@FAST
@given(mutated())
def test_decoding_a_mutated_frame_never_raises(data: bytes) -> None:
    frame = decode_frame(data)
    assert frame.kind in set(FrameKind)
    frame_json(frame)


@FAST
@given(mutated())
def test_mutated_frames_with_a_true_length_decode_or_say_why(data: bytes) -> None:
    frame = decode_frame(_with_true_length(data))
    if frame.kind is FrameKind.CONTROL:
        assert frame.control is not None
        assert isinstance(frame.control.changes_plant, bool)
    elif frame.kind is FrameKind.INVALID:
        assert frame.error


@FAST
@given(st.text(max_size=200))
def test_control_decoder_never_raises_on_any_text(text: str) -> None:
    result = decode_control(text)
    assert isinstance(result, (str, ControlDetails))
