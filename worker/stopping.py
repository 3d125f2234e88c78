"""Stopping a running trial in time: at its time limit, or when the database asks (cancelled, stopped
by the scheduler), even inside one long step.

Three steps, each for what the one before cannot reach:

1. Between epochs the evaluator reports to its context (``TrialContext.report``), which ends a
   trial the database says should stop.
2. At the time limit, or as soon as the heartbeat thread learns of a stop request, SIGALRM
   interrupts the evaluating thread wherever it runs Python code (a data loop, between two layers)
   with ``TrialStopped``. Signals reach the main thread only, which is where Celery's prefork pool
   runs its tasks; in any other thread this step is skipped.
3. One step that never returns to Python (a huge convolution) cannot be interrupted. Once
   ``stop_grace_seconds`` have passed since the limit or the request, the watchdog thread records
   the trial as stopped, its error saying it was killed, and ends the process (``os._exit``).
   Celery's prefork pool starts a new process in its place; the task's message, rejected because its
   worker was lost (``task_reject_on_worker_lost``), comes back once and its claim finds nothing to
   run. Only a pool process may be ended (``allow_kill``, called by worker/tasks.py): elsewhere (the
   tests' in-process workers) steps 1 and 2 remain.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scion.settings import get_settings
from worker.outcomes import TrialStopped

log = logging.getLogger(__name__)

KILLED_EXIT_CODE = os.EX_SOFTWARE  # how Celery's log names a pool process this module ended


def limit_reason(seconds: float) -> str:
    return f"exceeded the trial time limit of {seconds:g} s"


def killed_note(grace_s: float) -> str:
    """What a killed trial's error ends with."""
    return f"; killed after a {grace_s:g} s grace inside a step"


@dataclass(eq=False)
class _Run:
    """The one evaluation running in this process's main thread."""

    trial_id: int
    limit_s: float | None
    on_kill: Callable[[str], None]  # records the trial as killed, given the reason it was stopped for
    started: float
    stop_since: float | None = None  # when a stop was asked for
    reason: str | None = None
    interrupted: bool = False  # TrialStopped raised once; never twice
    finished: bool = False
    deferring: bool = False  # inside a database write: the interrupt waits for its end
    deferred: bool = False

    def past_limit(self, now: float) -> bool:
        return self.limit_s is not None and now >= self.started + self.limit_s - 0.01

    def kill_at(self, grace_s: float) -> float | None:
        """When the process must end if this run is still going, or None while nothing asks it to stop."""
        ends = [t for t in (self.stop_since, self.limit_s and self.started + self.limit_s) if t]
        return min(ends) + grace_s if ends else None


class _Stopper:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._run: _Run | None = None
        self._thread: threading.Thread | None = None
        self._may_kill = False

    def allow_kill(self) -> None:
        """This process is one a pool replaces: a trial that overstays its grace may end it."""
        self._may_kill = True

    @contextmanager
    def running(self, trial_id: int, limit_s: float | None, on_kill: Callable[[str], None]) -> Iterator[None]:
        """Around one trial's evaluation: interrupted at ``limit_s`` or on ``request``, and the
        process ended (after ``on_kill``) if the evaluation is still going a grace later."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        run = _Run(trial_id, limit_s or None, on_kill, time.monotonic())
        previous = signal.signal(signal.SIGALRM, self._interrupt)
        with self._cond:
            self._run = run
            if self._may_kill and (self._thread is None or not self._thread.is_alive()):  # also after a fork
                self._thread = threading.Thread(target=self._watch, name="stop-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        if run.limit_s:
            signal.setitimer(signal.ITIMER_REAL, run.limit_s)
        try:
            yield
        finally:
            try:
                run.finished = True  # from here on the handler does nothing (it may have raised just before)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                with self._cond:
                    self._run = None
                    self._cond.notify_all()
                    # A Python handler stays installed: a signal sent just before the run finished must
                    # find one that ignores it, never the default action (ending the process).
                    if callable(previous):
                        signal.signal(signal.SIGALRM, previous)

    def request(self, trial_id: int, reason: str) -> None:
        """Interrupt the trial's evaluation, if this process's main thread is running it (from another
        thread: the heartbeats)."""
        with self._cond:
            run = self._run
            if run is None or run.trial_id != trial_id or run.finished or run.stop_since is not None:
                return
            run.stop_since, run.reason = time.monotonic(), reason
            self._cond.notify_all()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Around a database write of the running trial (an epoch's report): an interrupt waits for
        the write to end, rather than break off a connection half way through a statement."""
        run = self._run
        if run is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        run.deferring = True
        try:
            yield
        finally:
            run.deferring = False
            if run.deferred:
                self._interrupt(signal.SIGALRM, None)

    def _interrupt(self, _signum: int, _frame: Any) -> None:
        run = self._run
        if run is None or run.finished or run.interrupted:
            return
        if run.reason is None:  # the timer, unless a stray signal from an earlier run
            if not run.past_limit(time.monotonic()):
                return
            run.stop_since, run.reason = time.monotonic(), limit_reason(run.limit_s)  # type: ignore[arg-type]
        if run.deferring:
            run.deferred = True
            return
        run.interrupted = True
        raise TrialStopped(run.reason)

    def _watch(self) -> None:
        grace = get_settings().stop_grace_seconds
        while True:
            with self._cond:
                run = self._run
                due = run.kill_at(grace) if run is not None and not run.finished else None
                if due is None or time.monotonic() < due:
                    self._cond.wait(None if due is None else due - time.monotonic())
                    continue
                if run.reason is None:  # the limit passed while its signal waits for Python code
                    run.reason = limit_reason(run.limit_s)  # type: ignore[arg-type]
            self._kill(run, grace)

    def _kill(self, run: _Run, grace: float) -> None:
        log.error("trial %s did not stop within %g s of being asked (%s): ending this worker process, which the "
                  "pool replaces", run.trial_id, grace, run.reason, extra={"trial_id": run.trial_id})
        try:
            run.on_kill(run.reason or "stop requested")
        except Exception:  # the scheduler's own records (time limit, cancel) still stand
            log.exception("recording trial %s as killed failed", run.trial_id)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(KILLED_EXIT_CODE)


STOPPER = _Stopper()

__all__ = ["KILLED_EXIT_CODE", "STOPPER", "killed_note", "limit_reason"]
