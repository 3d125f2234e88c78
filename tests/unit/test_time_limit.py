"""A trial stops at its time limit or when asked, even in the middle of an epoch, and a step that
cannot be interrupted ends its process after the grace (worker/stopping.py)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from worker.outcomes import TrialStopped
from worker.stopping import KILLED_EXIT_CODE, STOPPER


def never(reason: str) -> None:
    raise AssertionError(f"killed: {reason}")


def test_a_candidate_stuck_inside_an_epoch_is_interrupted_at_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(TrialStopped, match="exceeded the trial time limit of 0.3 s"), STOPPER.running(1, 0.3, never):
        while True:  # a data loop that never ends
            pass
    assert 0.3 <= time.monotonic() - started < 2.0


def test_a_stop_request_interrupts_the_candidate_at_once() -> None:
    threading.Timer(0.2, STOPPER.request, args=(7, "job cancelled")).start()
    started = time.monotonic()
    with pytest.raises(TrialStopped, match="job cancelled"), STOPPER.running(7, None, never):
        while True:
            pass
    assert time.monotonic() - started < 1.5


def test_a_candidate_within_its_limit_is_left_alone_and_no_alarm_outlives_it() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with STOPPER.running(1, 5.0, never):
        time.sleep(0.05)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before
    STOPPER.request(1, "too late")  # the run is over: nothing to interrupt
    with STOPPER.running(2, None, never):  # no limit in the spec
        os.kill(os.getpid(), signal.SIGALRM)  # a stray signal (a request that raced an earlier run's end)
        time.sleep(0.05)


def test_outside_the_main_thread_the_checks_between_epochs_remain() -> None:
    outcome: list[str] = []

    def run() -> None:
        with STOPPER.running(1, 0.1, never):  # no signal can reach this thread; setting one must not fail either
            time.sleep(0.3)
        outcome.append("ran to the end")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert outcome == ["ran to the end"]


def _stuck_in_one_step(limit_s: float, said: multiprocessing.SimpleQueue) -> None:
    """A pool process whose candidate sits in one step that never returns to Python: SIGALRM is held
    off the main thread, as a long C call holds off Python's handler."""
    STOPPER.allow_kill()
    with STOPPER.running(3, limit_s, said.put):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    said.put("finished")


def test_a_step_that_cannot_be_interrupted_ends_the_process_after_the_grace(monkeypatch) -> None:
    monkeypatch.setenv("SCION_STOP_GRACE_SECONDS", "0.5")
    from scion.settings import get_settings

    get_settings.cache_clear()
    # spawned, not forked: a fork of this test process inherits whatever its other threads held
    said = multiprocessing.get_context("spawn").SimpleQueue()
    process = multiprocessing.get_context("spawn").Process(target=_stuck_in_one_step, args=(0.5, said))
    started = time.monotonic()
    process.start()
    process.join(30)
    took = time.monotonic() - started
    get_settings.cache_clear()
    assert process.exitcode == KILLED_EXIT_CODE
    assert said.get() == "exceeded the trial time limit of 0.5 s"  # what the trial's record is given
    assert said.empty()
    assert 1.0 <= took < 15.0, took  # the limit, the grace, and starting a Python process


def test_a_database_write_in_progress_is_not_broken_off_the_interrupt_follows_it() -> None:
    written: list[str] = []
    with pytest.raises(TrialStopped, match="exceeded the trial time limit of 0.1 s"), STOPPER.running(4, 0.1, never):
        with STOPPER.deferred():
            time.sleep(0.3)  # the limit passes while an epoch's report is written
            written.append("report")
        written.append("training on")
    assert written == ["report"]
