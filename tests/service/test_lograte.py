"""Tests for the rate-limited log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ecu_proxy.lograte import RateLimitedLog

if TYPE_CHECKING:
    import pytest


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_same_key_logged_once_per_interval_with_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    log = RateLimitedLog(logging.getLogger("t.rate"), 60.0, clock=clock)
    with caplog.at_level(logging.WARNING, "t.rate"):
        assert log.limited_warning("refused", "refused %s", "a")
        for _ in range(5):
            assert not log.limited_warning("refused", "refused %s", "b")
        assert log.suppressed("refused") == 5
        clock.now += 60.0
        assert log.limited_warning("refused", "refused %s", "c")
    assert _lines(caplog) == [
        "refused a",
        "refused c (5 more like this in the last 60 s)",
    ]
    assert log.suppressed("refused") == 0


def test_keys_are_independent(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("t.rate2"), 60.0, clock=_Clock())
    with caplog.at_level(logging.WARNING, "t.rate2"):
        log.limited_warning("x", "one")
        log.limited_warning("y", "two")
        log.limited_warning("x", "three")
    assert _lines(caplog) == ["one", "two"]


def test_key_memory_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("t.rate3"), 60.0, clock=_Clock(), max_keys=3)
    with caplog.at_level(logging.WARNING, "t.rate3"):
        for key in "abcd":
            log.limited_warning(key, "line %s", key)
        # "a" was forgotten to keep at most three keys, so it logs again.
        assert log.limited_warning("a", "line %s", "a")
        assert not log.limited_warning("d", "line %s", "d")
    assert len(log._slots) == 3


def test_disabled_level_is_not_counted() -> None:
    logger = logging.getLogger("t.rate4")
    logger.setLevel(logging.ERROR)
    log = RateLimitedLog(logger, 60.0, clock=_Clock())
    assert not log.limited_warning("k", "hidden")
    assert log.suppressed("k") == 0
