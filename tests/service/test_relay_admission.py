"""Admission: per-address caps, slots kept for trusted addresses, frame budgets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecu_proxy.admission import Admission, Limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class Conn:
    peer_host: str
    started: float
    progressed: bool = False
    aborted: list[str] = field(default_factory=list)

    def abort(self, reason: str) -> None:
        self.aborted.append(reason)


def test_trusting_an_address_frees_a_shared_slot() -> None:
    clock = Clock()
    admission = Admission(
        Limits(max_connections=4, per_address=4, reserved=2, grace=60), clock
    )
    ecu = Conn("10.0.0.2", clock.now)
    other = Conn("10.0.0.9", clock.now)
    assert admission.admit(ecu) is None
    assert admission.admit(other) is None
    refused = admission.admit(Conn("10.0.0.10", clock.now))
    assert refused is not None
    assert "unconfirmed" in refused
    admission.trust("10.0.0.2")  # its open connection no longer counts as shared
    assert admission.admit(Conn("10.0.0.10", clock.now)) is None
    # The known ECU may use the kept slots.
    assert admission.admit(Conn("10.0.0.2", clock.now)) is None
    admission.release(ecu)
    admission.release(ecu)  # twice is harmless
    assert admission.admit(Conn("10.0.0.2", clock.now)) is None


def test_only_stalled_connections_past_the_grace_are_taken_over() -> None:
    clock = Clock()
    admission = Admission(
        Limits(max_connections=2, per_address=2, reserved=0, grace=2.0), clock
    )
    busy = Conn("10.0.0.3", clock.now, progressed=True)
    stalled = Conn("10.0.0.4", clock.now)
    assert admission.admit(busy) is None
    assert admission.admit(stalled) is None
    assert admission.admit(Conn("10.0.0.5", clock.now)) is not None  # too young
    clock.now += 2.5
    assert admission.admit(Conn("10.0.0.5", clock.now)) is None
    assert stalled.aborted
    assert not busy.aborted
    assert admission.evicted == 1


def test_frame_budget_refills_and_untrusted_addresses_share_one() -> None:
    clock = Clock()
    limits = Limits(frame_burst=10, frame_rate=5, shared_burst=15, shared_rate=1)
    admission = Admission(limits, clock)
    assert admission.frame_allowance("10.0.0.6") == 10
    admission.spend("10.0.0.6", 10)
    assert admission.frame_allowance("10.0.0.6") == 0
    assert admission.frame_allowance("10.0.0.7") == 5  # what the shared pot has left
    clock.now += 1.0
    assert admission.frame_allowance("10.0.0.6") == 5
    admission.trust("10.0.0.8")
    assert admission.frame_allowance("10.0.0.8") == 10  # its own budget only


def test_frame_timeout_until_progress_then_idle_timeout() -> None:
    admission = Admission(Limits(frame_timeout=30, idle_timeout=300))
    # No frame yet (or one half sent): 30 s from the last progress, bytes or not.
    due, reason = admission.deadline(last_progress=0, now=10, waiting=True)
    assert (due, reason) == (30, None)
    due, reason = admission.deadline(last_progress=0, now=30, waiting=True)
    assert reason == "without completing a frame for 30 s"
    # After a complete frame the idle timeout applies, checked every 30 s.
    due, reason = admission.deadline(last_progress=0, now=250, waiting=False)
    assert (due, reason) == (280, None)
    due, reason = admission.deadline(last_progress=0, now=290, waiting=False)
    assert (due, reason) == (300, None)
    due, reason = admission.deadline(last_progress=0, now=300, waiting=False)
    assert reason == "idle for 300 s"
