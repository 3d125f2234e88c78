"""An error that keeps coming back is logged once with its traceback, then counted: one line
per interval at most, and one when its topic is forgotten; another error is logged in full."""
from __future__ import annotations

import logging

import pytest

from scion.logs import Repeats

log = logging.getLogger("tests.repeats")


def fail(what: str = "same") -> Exception:
    try:
        raise (ValueError if what == "same" else KeyError)(f"{what} {id(object())}")  # messages differ
    except Exception as exc:
        return exc


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, bool]]:
    lines = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    caplog.clear()
    return lines


def test_an_error_repeated_within_the_interval_is_counted_until_forgotten(caplog) -> None:
    repeats = Repeats(log, every_s=3600)
    for _ in range(5):
        repeats.error(7, fail(), "job 7: pass failed")
        repeats.tick()
    assert said(caplog) == [("job 7: pass failed", True)]
    repeats.forget(7)
    [(line, traceback)] = said(caplog)
    assert line.startswith("job 7: pass failed: the same error 4 more times in the last ") and not traceback
    repeats.forget(7)
    assert said(caplog) == []


def test_past_the_interval_each_repeat_is_counted_and_another_error_logged_in_full(caplog) -> None:
    repeats = Repeats(log, every_s=0)
    repeats.error("pass", fail(), "pass failed")
    repeats.error("pass", fail(), "pass failed")
    repeats.error("pass", fail("other"), "pass failed")
    repeats.error(8, fail(), "job 8 failed")  # topics are followed apart
    lines = said(caplog)
    assert [traceback for _, traceback in lines] == [True, False, True, True]
    assert lines[1][0].startswith("pass failed: the same error 1 more time in the last ")
