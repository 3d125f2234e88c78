"""The real scheduler and the real worker code path, in-process and without Celery.

``Scheduler(settings, send=...)`` hands its messages to ``Broker``, which stands in for Celery:
it records every message and delivers it to ``worker.runner.run_trials`` either at once, in
send order (deterministic), or on a pool of threads (the workers).
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from scheduler.loop import Scheduler
from scion.settings import Settings
from scion.spec import JobSpec
from storage import repository as repo
from storage.db import session_scope, utcnow
from storage.models import TERMINAL_JOB_STATUSES, Job, JobEvent, Trial, TrialMetric
from worker.runner import run_trials

TINY_NET = {"type": "nb201", "channels": 4, "cells_per_stage": 1}

# ---------------------------------------------------------------- specs and database reads


def tabular_spec(table: Path, *, seed: int = 0, population: int = 10, sample: int = 3,
                 **budget: Any) -> dict[str, Any]:
    return {
        "space": {"type": "nb201"},
        "strategy": {"type": "evolution", "population_size": population, "sample_size": sample},
        "evaluator": {"type": "tabular", "table": str(table)},
        "budget": budget,
        "seed": seed,
    }


def train_spec(*, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    budget = extra.pop("budget", {})
    return {
        "space": TINY_NET,
        "strategy": {"type": "random"},
        "evaluator": {
            "type": "train", "dataset": "digits", "epochs": epochs, "batch_size": 128,
            "latency_repeats": 1, **extra,
        },
        "budget": budget,
        "seed": 3,
    }


RECIPE = {"type": "train", "dataset": "digits", "epochs": 1, "batch_size": 128, "latency_repeats": 1}


def one_shot_spec(method: dict[str, Any], *, retrain_top_k: int = 2, max_trials: int | None = None,
                  **extra: Any) -> dict[str, Any]:
    """A one-shot job on TINY_NET and digits: a 2-epoch supernet, a 1-epoch retraining recipe."""
    return {
        "space": TINY_NET,
        "evaluator": RECIPE,
        "one_shot": {"method": {"epochs": 2, "batch_size": 128, "recalibration_batches": 2, **method},
                     "retrain_top_k": retrain_top_k},
        "budget": {"max_parallel": 2, **({"max_trials": max_trials} if max_trials else {})},
        "seed": 5,
        **extra,
    }


def make_job(spec: dict[str, Any], name: str = "search") -> int:
    validated = JobSpec.model_validate(spec).model_dump(mode="json")
    with session_scope() as session:
        return repo.create_job(session, name=name, spec=validated).id


def get_job(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def get_trials(job_id: int) -> list[Trial]:
    with session_scope() as session:
        return list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))


def get_events(job_id: int, kind: str | None = None) -> list[JobEvent]:
    with session_scope() as session:
        events = repo.list_events(session, job_id=job_id, limit=10_000, offset=0)
    return [e for e in events if kind is None or e.kind == kind]


def in_flight(job_id: int) -> int:
    """As the scheduler counts them (its pass's activity row)."""
    with session_scope() as session:
        activity = repo.job_activity(session, job_ids=[job_id]).get(job_id)
    return activity.in_flight if activity is not None else 0


def epochs_recorded(trial_id: int) -> list[TrialMetric]:
    with session_scope() as session:
        return list(session.scalars(
            select(TrialMetric).where(TrialMetric.trial_id == trial_id).order_by(TrialMetric.step)
        ))


def expire_lease(job_id: int) -> None:
    """What a crashed (or stalled) scheduler leaves behind once its lease runs out."""
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def lease_is_valid(job: Job) -> bool:
    return job.lease_owner is not None and job.lease_expires_at is not None and job.lease_expires_at > utcnow()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- Celery's stand-in


class Broker:
    """Records every "evaluate trials N…" message and delivers it to ``run_trials``.

    ``threads=0`` runs deliveries in the caller's thread in send order; otherwise a pool of
    that many threads plays the workers. ``hold`` keeps messages undelivered (workers away).
    ``sent``: (trial id, queue) for every trial of every message; ``messages``: the trial ids of each.
    """

    def __init__(self, threads: int = 0) -> None:
        self.sent: list[tuple[int, str]] = []
        self.messages: list[list[int]] = []
        self.outcomes: dict[int, list[str]] = {}
        self.hold = False
        self._backlog: deque[list[int]] = deque()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="worker") if threads else None
        self._futures: set[Future] = set()

    def send(self, messages: list[list[int]], queue: str) -> None:
        """A pass's messages, as ``scheduler.dispatch.Send`` hands them over."""
        with self._lock:
            for trial_ids in messages:
                self.sent += [(trial_id, queue) for trial_id in trial_ids]
                self.messages.append(list(trial_ids))
                self._backlog.append(list(trial_ids))

    def take(self, trial_id: int) -> None:
        """A worker picked this trial up outside the broker (and may then die)."""
        with self._lock:
            message = next(m for m in self._backlog if trial_id in m)
            message.remove(trial_id)
            if not message:
                self._backlog.remove(message)

    def deliver(self) -> None:
        while not self.hold:
            with self._lock:
                if not self._backlog:
                    break
                trial_ids = self._backlog.popleft()
            if self._pool is None:
                self._run(trial_ids)
            else:
                self._futures.add(self._pool.submit(self._run, trial_ids))
        self.wait(0)

    def deliver_first(self) -> bool:
        """Run the oldest undelivered message in the caller's thread, as the one worker free to take the
        queue's head would; False when none waits."""
        with self._lock:
            if self.hold or not self._backlog:
                return False
            trial_ids = self._backlog.popleft()
        self._run(trial_ids)
        return True

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a running delivery to finish; re-raise worker crashes."""
        if self._futures:
            done, _ = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                self._futures.discard(future)
                future.result()

    def _run(self, trial_ids: list[int]) -> None:
        statuses = run_trials(trial_ids, "cpu")
        with self._lock:
            for trial_id in trial_ids:
                self.outcomes.setdefault(trial_id, []).append(statuses.get(trial_id, "skipped"))

    def sends_per_trial(self) -> Counter[int]:
        return Counter(trial_id for trial_id, _ in self.sent)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def drive(scheduler: Scheduler, broker: Broker, job_id: int, *, timeout: float = 60.0,
          until: Callable[[Job], bool] | None = None, after_step: Callable[[], None] | None = None,
          poll: float = 0.02) -> Job:
    """Step the scheduler and deliver its messages until the job ends (or ``until`` holds
    right after a pass, before that pass's messages are delivered)."""
    until = until or (lambda job: job.status in TERMINAL_JOB_STATUSES)
    deadline = time.monotonic() + timeout
    while True:
        scheduler.step()
        if after_step is not None:
            after_step()
        job = get_job(job_id)
        if until(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job.status} after {timeout:g} s: {repo_counts(job_id)}")
        broker.deliver()
        broker.wait(poll)
        if broker._pool is None and poll:
            time.sleep(poll)


def repo_counts(job_id: int) -> dict[str, int]:
    with session_scope() as session:
        return repo.trial_counts(session, job_id=job_id)


def reference_arch_keys(settings: Settings, spec: dict[str, Any], broker: Broker) -> list[str]:
    """An uninterrupted run of ``spec``: trials evaluated synchronously in send order."""
    job_id = make_job(spec, name="reference")
    job = drive(Scheduler(settings, send=broker.send, owner="reference"), broker, job_id, poll=0)
    assert job.status == "completed"
    return [t.arch_key for t in get_trials(job_id)]
