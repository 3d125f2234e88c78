"""The scheduler process: claims jobs through database leases and drives each one.

Any number of schedulers may run; a job's lease names the one driving it, is renewed every
pass, and is taken over by another scheduler once it expires. A pass the database fails is
retried with growing pauses; the jobs it touched are reloaded from their saved state.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import Counter

from sqlalchemy import Row
from sqlalchemy.orm import Session

from broker.nudge import JOB
from scheduler import gather
from scheduler.dispatch import Send, Waiting, celery_send, celery_waiting
from scheduler.job_run import JobRun
from scion.errors import Conflict
from scion.logs import Repeats
from scion.settings import Settings, get_settings
from storage import repository as repo
from storage.db import autocommit, error_message, is_unreachable, session_scope

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, settings: Settings | None = None, send: Send = celery_send, owner: str | None = None,
                 waiting: Waiting = celery_waiting) -> None:
        self.settings = settings or get_settings()
        self.send, self.waiting = send, waiting
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.runs: dict[int, JobRun] = {}
        # The trials the last pass left waiting for a worker (sent or about to be) over the held
        # jobs: what gathering (scheduler/gather.py) judges by.
        self.trials_waiting = 0
        self.unreachable_at = -math.inf  # when a pass last found the database unreachable (monotonic)
        self.reachable_again_at = -math.inf  # when the first pass after that reached it again
        # Held jobs whose passes failed (other than for the database): how many in a row so far
        # (0 after a pass that went through); a job is failed at ``scheduler_failed_passes``.
        self.failed_passes: dict[int, int] = {}
        self.repeats = Repeats(log)  # a failure's traceback once, then how often it came again

    def step(self, leases: bool = True) -> None:
        """One pass: renew or take leases (unless ``leases`` is False: see ``run``), then advance
        every job held that has something to do. The held jobs' rows and what their trials are
        doing are read for all jobs at once (``repo.job_activity``), and each job's pass starts from
        that row instead of reading the job again, so a job whose trials are all busy costs a pass
        next to nothing."""
        if leases:
            with session_scope(durable=False) as session:
                self._take_leases(session)
                activity = repo.job_activity(session, job_ids=list(self.runs))
        else:
            with autocommit(durable=False) as connection:
                activity = repo.job_activity(connection, job_ids=list(self.runs))
        if self.unreachable_at > self.reachable_again_at:
            self.reachable_again_at = time.monotonic()
        # Workers could not beat while the database was away: give them one timeout from its
        # return to resume (counted from the last failure, a pass backing off could reap at once).
        reap_lost = time.monotonic() - self.reachable_again_at > self.settings.heartbeat_timeout_seconds
        self.trials_waiting = 0
        for job_id, run in list(self.runs.items()):
            row = activity.get(job_id)
            if row is None or not repo.holds_lease(row, owner=self.owner):  # ended, cancelled or taken over
                del self.runs[job_id]
                self._forget_failures(job_id)
                _say_let_go(job_id, row)
                continue
            self.trials_waiting += row.in_flight - row.running
            if not run.has_work(row, reap_lost):
                continue
            try:
                alive = run.step(row, reap_lost=reap_lost)
            except Conflict as exc:  # lease lost: the job left this scheduler during the pass, which rolled back
                del self.runs[job_id]
                self._forget_failures(job_id)
                log.info("job %s: let go (%s)", job_id, exc)
                continue
            except Exception as exc:
                # The strategy in memory may have seen what the database rolled back: the next
                # pass reloads the job from its last committed state.
                del self.runs[job_id]
                if is_unreachable(exc):  # transient: never counted against the job
                    self.unreachable_at = time.monotonic()
                    log.warning("job %s: database unreachable (%s); retrying", job_id, type(exc).__name__)
                else:
                    self._pass_failed(run, row, exc)
                continue
            if job_id in self.failed_passes:
                self.failed_passes[job_id] = 0
            if not alive:
                del self.runs[job_id]
                self._forget_failures(job_id)
            self.trials_waiting += run.trials_created - row.trials_created  # the pass's new trials
        self.repeats.tick()

    def _pass_failed(self, run: JobRun, row: Row, exc: Exception) -> None:
        """A pass of the job failed for a reason other than the database being away (a row the
        database refuses, a strategy that raises), so the next is likely to fail the same way: its
        traceback is logged once while it repeats (then counted), and the job is failed, saying
        why in its error and events, once ``scheduler_failed_passes`` passes in a row have."""
        job_id = run.job_id
        failures = self.failed_passes[job_id] = self.failed_passes.get(job_id, 0) + 1
        limit = self.settings.scheduler_failed_passes
        self.repeats.error(job_id, exc, f"job {job_id}: scheduler pass failed (the job fails after {limit} in a row)",
                           extra={"job_id": job_id})
        if failures < limit:
            return
        self.repeats.flush(job_id)
        try:
            run.give_up(row, f"its scheduler passes failed {failures} times in a row: {error_message(exc)}")
        except Conflict as lost:
            log.info("job %s: let go (%s)", job_id, lost)
        except Exception as again:  # tried again at its next failed pass
            if is_unreachable(again):
                self.unreachable_at = time.monotonic()
                log.warning("job %s: database unreachable (%s); retrying", job_id, type(again).__name__)
            else:
                self.repeats.error((job_id, "give_up"), again, f"job {job_id}: could not fail the job",
                                   extra={"job_id": job_id})
            return
        self._forget_failures(job_id)

    def _forget_failures(self, job_id: int) -> None:
        """The job left this scheduler (ended, let go): its failed passes are no longer followed."""
        if self.failed_passes.pop(job_id, None) is not None:
            self.repeats.forget(job_id)
            self.repeats.forget((job_id, "give_up"))

    def _take_leases(self, session: Session) -> None:
        # A job held before and not now (cancelled, taken over) is let go by the pass, which reads its row.
        held = repo.take_leases(session, owner=self.owner, seconds=self.settings.lease_seconds)
        for job_id in set(self.failed_passes) - set(held):  # left this scheduler after a failed pass
            self._forget_failures(job_id)
        for job_id, renewed in held.items():
            # A lease of ours that lapsed since the last pass may have been taken over by
            # another scheduler meanwhile: the job must then be reloaded from the database,
            # never continued from the strategy held in memory.
            if job_id not in self.runs or not renewed:
                verb = "took" if job_id not in self.runs else "retook (lease had lapsed)"
                log.info("scheduler %s %s job %s", self.owner, verb, job_id, extra={"job_id": job_id})
                self.runs[job_id] = JobRun(job_id, self.owner, self.settings, self.send, self.waiting)

    def run(self, stop: threading.Event) -> None:
        """Pass after pass, each right after a nudge (gathered: scheduler/gather.py) or a poll
        interval. Leases are taken and renewed once a poll interval (a quarter of the lease at most)
        and whenever a job arrives; the passes in between, woken by finishing trials, only read what
        the held jobs' trials do."""
        log.info("scheduler %s polling every %.2fs", self.owner, self.settings.scheduler_poll_seconds)
        # Woken early by finished trials where Redis is there.
        listener = gather.listener(self.settings, queued=lambda: self.trials_waiting, stop=stop)
        poll, failures = self.settings.scheduler_poll_seconds, 0
        leases_due, said = -math.inf, Counter({JOB: 1})
        while not stop.is_set():
            now = time.monotonic()
            leases = JOB in said or now >= leases_due
            try:
                self.step(leases=leases)
                failures = 0
                if leases:
                    leases_due = now + min(poll, self.settings.lease_seconds / 4)
            except Exception as exc:
                failures += 1
                if is_unreachable(exc):
                    self.unreachable_at = time.monotonic()
                    log.warning("database unreachable (%s); retry %d", type(exc).__name__, failures)
                else:
                    self.repeats.error("pass", exc, "scheduler pass failed; retrying")
            said = listener.wait(min(poll * 2**failures, max(poll, 2.0)), stop.wait)
        self.release_all()

    def release_all(self) -> None:
        """Hand our jobs back at shutdown so another scheduler need not wait for the lease."""
        with session_scope(durable=False) as session:
            for job_id in self.runs:
                repo.release_lease(session, job_id=job_id, owner=self.owner)
        released = sorted(self.runs)
        self.runs.clear()
        log.info("scheduler %s stopped; released %s", self.owner,
                 f"job(s) {', '.join(map(str, released))} for another scheduler" if released else "no jobs")


def _say_let_go(job_id: int, row: Row | None) -> None:
    """Why a scheduler stopped driving a job that it did not end itself."""
    if row is None:
        why = "is gone from the database"
    elif row.status == "cancelled":
        why = "was cancelled; its running trials stop at their next epoch"
    elif row.status not in ("pending", "running"):
        why = f"ended ({row.status}) elsewhere"
    else:
        why = f"is now held by {row.lease_owner or 'no scheduler'} (lease lapsed)"
    log.info("job %s %s", job_id, why, extra={"job_id": job_id})
