"""A scheduler pass decides on trials it read earlier; a worker may write one of them in between.

Each test forces that interleaving with two connections: the worker's write (its result, or its
claim) commits between the scheduler's read and the scheduler's write to the same trial. The
scheduler's write must then change nothing: the result survives, the claimed trial is not sent
and run a second time.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from scheduler.loop import Scheduler
from storage import repository as repo
from storage.db import autocommit, session_scope, utcnow
from storage.models import Trial
from tests.integration.harness import get_events, get_job, get_trials, make_job, tabular_spec, train_spec

LONG_AGO = timedelta(minutes=10)


def worker_claims(trial_id: int, worker: str = "worker:1") -> None:
    with autocommit() as connection:
        assert [row.id for row in repo.claim_trials(connection, trial_ids=[trial_id], worker=worker)] == [trial_id]


def worker_finishes(trial_id: int, metrics: dict[str, float], objective: float) -> None:
    with autocommit() as connection:
        outcome = {"trial_id": trial_id, "attempt": 1, "status": "completed", "metrics": metrics,
                   "objective": objective, "score": objective}
        assert repo.finish_trials(connection, outcomes=[outcome]) == 1


def table_result(value: float) -> dict[str, Any]:
    return {"metrics": {"val_acc_12ep": value, "test_acc_200ep": value + 1}, "objective": value}


def interleave(monkeypatch: pytest.MonkeyPatch, name: str, worker_write: Callable[[], None], *,
               after: bool = False) -> None:
    """Commit ``worker_write`` once, right before the pass calls ``repo.<name>`` (its write), or
    right after (``after``: its read)."""
    original = getattr(repo, name)

    def interleaved(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(repo, name, original)
        if not after:
            worker_write()
        result = original(*args, **kwargs)
        if after:
            worker_write()
        return result

    monkeypatch.setattr(repo, name, interleaved)


def running_trials(settings, spec: dict[str, Any], make_broker) -> tuple[Scheduler, Any, int, list[Trial]]:
    """A job whose two first trials a worker claimed, and its scheduler."""
    job_id = make_job(spec)
    broker = make_broker()
    broker.hold = True
    scheduler = Scheduler(settings, send=broker.send, owner="only")
    scheduler.step()
    trials = get_trials(job_id)
    for trial in trials:
        broker.take(trial.id)
        worker_claims(trial.id)
    return scheduler, broker, job_id, trials


def test_a_result_committed_while_a_silent_trial_is_reaped_is_kept(settings_env, nb201_csv, make_broker,
                                                                    monkeypatch):
    settings = settings_env.model_copy(update={"heartbeat_timeout_seconds": 5.0})
    scheduler, broker, job_id, (silent, _) = running_trials(
        settings, tabular_spec(nb201_csv, max_trials=2, max_parallel=2), make_broker)
    with session_scope() as session:
        session.execute(update(Trial).where(Trial.id == silent.id).values(heartbeat_at=utcnow() - LONG_AGO))
    # The pass reads the stale heartbeat (repo.job_activity); the worker then writes its result.
    interleave(monkeypatch, "reap_silent", lambda: worker_finishes(silent.id, **table_result(70.0)))

    scheduler.step()

    kept = get_trials(job_id)[0]
    assert (kept.status, kept.objective, kept.attempts) == ("completed", 70.0, 1)
    assert get_events(job_id, "trial_lost") == []
    assert broker.sends_per_trial()[silent.id] == 1


def test_a_result_committed_while_an_overdue_trial_is_stopped_is_kept(settings_env, nb201_csv, make_broker,
                                                                       monkeypatch):
    scheduler, broker, job_id, (overdue, _) = running_trials(
        settings_env, tabular_spec(nb201_csv, max_trials=2, max_parallel=2, trial_time_limit_s=60), make_broker)
    with session_scope() as session:
        session.execute(update(Trial).where(Trial.id == overdue.id).values(started_at=utcnow() - LONG_AGO))
    interleave(monkeypatch, "stop_overdue", lambda: worker_finishes(overdue.id, **table_result(70.0)))

    scheduler.step()

    kept = get_trials(job_id)[0]
    assert (kept.status, kept.objective, kept.error) == ("completed", 70.0, None)
    assert get_events(job_id, "trial_stopped") == []


def test_a_result_committed_while_reports_stop_the_trial_is_kept(settings_env, make_broker, monkeypatch):
    spec = {**train_spec(epochs=10, budget={"max_trials": 2, "max_parallel": 2}),
            "early_stopping": {"min_epochs": 2, "top_k": 1}}
    scheduler, broker, job_id, (best, hopeless) = running_trials(settings_env, spec, make_broker)
    worker_finishes(best.id, {"val_acc": 90.0}, 90.0)
    with session_scope() as session:
        for step in (1, 2):
            repo.record_step(session, trial_id=hopeless.id, attempt=1, step=step, metrics={"val_acc": 10.0})
    # Early stopping judges the trial hopeless on the reports the pass read; its worker meanwhile
    # finished all ten epochs and wrote the result.
    interleave(monkeypatch, "new_reports", lambda: worker_finishes(hopeless.id, {"val_acc": 40.0}, 40.0), after=True)

    scheduler.step()

    finished = get_trials(job_id)[1]
    assert (finished.status, finished.objective, finished.metrics) == ("completed", 40.0, {"val_acc": 40.0})
    assert get_events(job_id, "trial_stopped") == []
    scheduler.step()
    job = get_job(job_id)
    assert (job.status, job.best_trial_number) == ("completed", 0)


def test_a_queued_trial_a_worker_claims_while_it_is_put_back_is_not_run_twice(settings_env, nb201_csv,
                                                                             make_broker):
    settings = settings_env.model_copy(update={"resend_after_seconds": 0.2})
    job_id = make_job(tabular_spec(nb201_csv, max_trials=2, max_parallel=2))
    broker = make_broker()
    broker.hold = True
    claimed_late: list[int] = []

    def waiting(queue: str) -> int:
        """The broker's queue is empty: one message a worker took, which it claims now (after the
        pass read the trial as queued), and one the broker lost."""
        if not claimed_late:
            worker_claims(late.id)
            claimed_late.append(late.id)
        return 0

    scheduler = Scheduler(settings, send=broker.send, owner="only", waiting=waiting)
    scheduler.step()
    late, lost = get_trials(job_id)
    for trial in (late, lost):
        broker.take(trial.id)
    time.sleep(0.3)

    scheduler.step()

    late_now, lost_now = get_trials(job_id)
    assert claimed_late == [late.id]
    assert (late_now.status, late_now.attempts) == ("running", 1)
    assert broker.sends_per_trial() == {late.id: 1, lost.id: 2}
    assert lost_now.status == "queued"
    (event,) = get_events(job_id, "trials_resent")
    assert event.message.startswith("trial(s) 1 queued for over 0.2 s")
