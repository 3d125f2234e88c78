"""Cheap trials several to a message (scheduler/pace.py, worker.runner.run_trials), through the real
scheduler and worker code on SQLite and PostgreSQL: what a user would notice is that every trial
still runs once with its own result, times and errors, that slow trials and trials sent again
still go one to a message, and that switching batching off gives one trial per message."""
from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import update

from scheduler.loop import Scheduler
from scheduler.pace import MIN_MEASURED
from storage import repository as repo
from storage.db import session_scope, utcnow
from storage.models import Trial
from tests.integration.harness import drive, get_events, get_trials, make_job, tabular_spec
from worker.evaluators.tabular import TabularEvaluator
from worker.runner import run_trials


@pytest.mark.parametrize("batch_seconds", [0.05, 0.0])
def test_cheap_trials_share_messages_and_each_keeps_its_own_result_and_times(
        settings_env, nb201_csv, make_broker, batch_seconds):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=60, max_parallel=8))
    broker = make_broker()
    settings = settings_env.model_copy(update={"scheduler_batch_seconds": batch_seconds})
    job = drive(Scheduler(settings, send=broker.send, owner="only"), broker, job_id, poll=0)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.status for t in trials] == ["completed"] * 60 and all(t.attempts == 1 and t.told for t in trials)
    assert broker.sends_per_trial() == Counter({t.id: 1 for t in trials})
    sizes = [len(m) for m in broker.messages]
    assert sizes[:MIN_MEASURED] == [1] * MIN_MEASURED  # the first trials, before any was measured
    if batch_seconds:
        assert max(sizes) == 4, sizes  # max_parallel 8 over one worker: one message running, one queued
        assert len(sizes) < 30
    else:
        assert set(sizes) == {1}
    by_id = {t.id: t for t in trials}
    for message in broker.messages:  # evaluated one after another, each with its own start and end
        spans = sorted((by_id[i].started_at, by_id[i].finished_at) for i in message)
        assert all(start <= end for start, end in spans)
        assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))


def test_slow_trials_go_one_to_a_message(settings_env, nb201_csv, make_broker, monkeypatch):
    original = TabularEvaluator.evaluate

    def slow(self, space, arch, ctx):
        time.sleep(0.03)  # over half the 0.05 s a message may take: no two fit
        return original(self, space, arch, ctx)

    monkeypatch.setattr(TabularEvaluator, "evaluate", slow)
    job_id = make_job(tabular_spec(nb201_csv, max_trials=24, max_parallel=8))
    broker = make_broker()
    job = drive(Scheduler(settings_env, send=broker.send, owner="only"), broker, job_id, poll=0)

    assert job.status == "completed", job.error
    assert {len(m) for m in broker.messages} == {1} and len(broker.messages) == 24


def test_a_candidate_that_crashes_fails_alone_among_the_trials_of_its_message(
        settings_env, nb201_csv, make_broker, monkeypatch):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=3, max_parallel=3))
    broker = make_broker()
    broker.hold = True
    Scheduler(settings_env, send=broker.send, owner="only").step()
    first, crashes, last = get_trials(job_id)
    original = TabularEvaluator.evaluate

    def flaky(self, space, arch, ctx):
        if ctx.trial_id == crashes.id:
            raise RuntimeError("simulated bug in this candidate")
        return original(self, space, arch, ctx)

    monkeypatch.setattr(TabularEvaluator, "evaluate", flaky)
    statuses = run_trials([first.id, crashes.id, last.id], "cpu")
    assert statuses == {first.id: "completed", crashes.id: "failed", last.id: "completed"}
    assert run_trials([first.id, crashes.id, last.id], "cpu") == {}  # the message again: nothing runs twice
    ok, crashed, ok_too = get_trials(job_id)
    assert ok.objective is not None and ok_too.objective is not None
    assert crashed.status == "failed" and "simulated bug in this candidate" in crashed.error
    assert crashed.objective is None and all(t.attempts == 1 for t in (ok, crashed, ok_too))


def test_trials_of_a_lost_message_are_sent_again_one_to_a_message(settings_env, nb201_csv, make_broker):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=40, max_parallel=8))
    broker = make_broker()
    settings = settings_env.model_copy(update={"heartbeat_timeout_seconds": 5.0})
    scheduler = Scheduler(settings, send=broker.send, owner="only")
    drive(scheduler, broker, job_id, poll=0, until=lambda job: len(broker.messages[-1]) > 1)  # batching began
    batch = broker.messages[-1]
    broker.hold = True
    for trial_id in batch:  # a worker takes the message, claims its trials and dies
        broker.take(trial_id)
    with session_scope() as session:
        assert len(repo.claim_trials(session, trial_ids=batch, worker="doomed-worker:1")) == len(batch)
        session.execute(update(Trial).where(Trial.id.in_(batch)).values(heartbeat_at=utcnow() - timedelta(seconds=30)))
    sent_before = len(broker.messages)

    scheduler.step()

    resent = [m for m in broker.messages[sent_before:] if set(m) & set(batch)]
    assert sorted(resent) == sorted([trial_id] for trial_id in batch)
    assert len(get_events(job_id, "trial_lost")) == len(batch)
    broker.hold = False
    job = drive(scheduler, broker, job_id, poll=0)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert all(t.status == "completed" for t in trials)
    assert {t.attempts for t in trials if t.id in batch} == {2}
