"""Recovery paths of the real scheduler and worker code, in-process (tests/e2e/test_faults.py runs
the same faults over real processes): messages the broker lost are sent again, but a queue that
still holds messages is left to drain; a candidate that exhausts host memory fails alone."""
from __future__ import annotations

import time
from collections import Counter

from scheduler.loop import Scheduler
from storage import repository as repo
from storage.db import session_scope
from tests.integration.harness import drive, get_events, get_trials, make_job, tabular_spec
from worker.evaluators.tabular import TabularEvaluator


def test_lost_messages_are_sent_again_once_the_queue_is_empty(settings_env, nb201_csv, make_broker):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=4, max_parallel=2))
    broker = make_broker()
    broker.hold = True  # the workers are busy elsewhere: messages wait in the queue
    settings = settings_env.model_copy(update={"resend_after_seconds": 0.2})
    scheduler = Scheduler(settings, send=broker.send, owner="only", waiting=lambda queue: len(broker._backlog))
    scheduler.step()
    first = get_trials(job_id)
    time.sleep(0.3)
    scheduler.step()
    assert broker.sends_per_trial() == Counter({t.id: 1 for t in first}), "a draining queue is left alone"
    assert get_events(job_id, "trials_resent") == []

    broker._backlog.clear()  # the broker restarts without persistence: both messages are gone
    time.sleep(0.3)
    scheduler.step()
    assert broker.sends_per_trial() == Counter({t.id: 2 for t in first})
    (event,) = get_events(job_id, "trials_resent")
    assert event.message.startswith("trial(s) 0, 1 queued for over 0.2 s")

    broker.hold = False
    job = drive(scheduler, broker, job_id, poll=0)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [(t.number, t.status, t.attempts) for t in trials] == [(n, "completed", 1) for n in range(4)]


def test_candidate_that_exhausts_host_memory_fails_alone(settings_env, nb201_csv, make_broker, monkeypatch):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=3, max_parallel=3))
    broker = make_broker()
    broker.hold = True
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    greedy = get_trials(job_id)[1].id
    original = TabularEvaluator.evaluate

    def evaluate(self, space, arch, ctx):
        if ctx.trial_id == greedy:
            raise MemoryError
        return original(self, space, arch, ctx)

    monkeypatch.setattr(TabularEvaluator, "evaluate", evaluate)
    broker.hold = False
    job = drive(scheduler, broker, job_id, poll=0)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.status for t in trials] == ["completed", "failed", "completed"]
    assert trials[1].error == "out of memory: the candidate did not fit in host memory"
    assert trials[1].attempts == 1 and all(t.told for t in trials)
    with session_scope() as session:
        assert repo.best_trial(session, job_id=job_id).number in (0, 2)
