"""A trial's time limit interrupts a candidate even in the middle of an epoch (worker/runner.py)."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from worker.outcomes import TrialStopped
from worker.runner import time_limit


def test_a_candidate_stuck_inside_an_epoch_is_interrupted_at_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(TrialStopped, match="exceeded the trial time limit of 0.3 s"), time_limit(0.3):
        while True:  # a data loop that never ends
            pass
    assert 0.3 <= time.monotonic() - started < 2.0


def test_a_candidate_within_its_limit_is_left_alone_and_no_alarm_outlives_it() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with time_limit(5.0):
        time.sleep(0.05)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before
    with time_limit(None):  # no limit in the spec
        time.sleep(0.05)


def test_outside_the_main_thread_the_checks_between_epochs_remain() -> None:
    outcome: list[str] = []

    def run() -> None:
        with time_limit(0.1):  # no signal can reach this thread; setting one must not fail either
            time.sleep(0.3)
        outcome.append("ran to the end")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert outcome == ["ran to the end"]
