"""Jobs sharing one queue's workers (scheduler/fair_share.py), through the real scheduler and worker
code on SQLite and PostgreSQL: what a user would notice is that a job submitted after another gets
worker slots as soon as the first job's trials end, instead of after everything the first job had
queued, and that a job alone keeps the queue no fuller than its workers can take."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from scheduler.fair_share import shares
from scheduler.loop import Scheduler
from storage import repository as repo
from storage.db import autocommit, utcnow
from storage.models import Worker
from tests.integration.harness import get_job, get_trials, in_flight, make_job, tabular_spec


def register_worker(slots: int, *, silent_for_s: float = 0.0) -> None:
    """A Celery worker on the cpu queue, as worker/presence.py registers one (last beat ``silent_for_s`` ago)."""
    with autocommit() as connection:
        repo.beat_worker(connection, name="cpu-1@test", queues=["cpu", "export"], slots=slots, device="cpu",
                         gone_after_s=60)
        connection.execute(update(Worker).values(heartbeat_at=utcnow() - timedelta(seconds=silent_for_s)))


def test_slots_are_divided_evenly_with_the_remainder_to_the_earliest_jobs_and_one_at_least():
    assert shares(5, [12, 7, 9]) == {7: 2, 9: 2, 12: 1}
    assert shares(2, [3, 1, 2]) == {1: 1, 2: 1, 3: 1}
    assert shares(4, [5]) == {5: 4}


@pytest.mark.parametrize("fair", [True, False])
def test_a_later_job_gets_turns_on_the_workers_instead_of_waiting_behind_the_first_jobs_queue(
        settings_env, nb201_csv, make_broker, fair):
    register_worker(slots=2)
    settings = settings_env.model_copy(update={"scheduler_batch_seconds": 0.0, "scheduler_fair_share": fair})
    first = make_job(tabular_spec(nb201_csv, max_trials=10, max_parallel=6), name="first")
    second = make_job(tabular_spec(nb201_csv, seed=1, max_trials=10, max_parallel=6), name="second")
    broker = make_broker()
    scheduler = Scheduler(settings, send=broker.send, owner="only")
    deadline = time.monotonic() + 120
    while {get_job(first).status, get_job(second).status} != {"completed"}:
        assert time.monotonic() < deadline, "the jobs did not finish"
        scheduler.step()
        broker.deliver_first()  # the queue's head goes to the next free worker

    job_of = {t.id: "first" for t in get_trials(first)} | {t.id: "second" for t in get_trials(second)}
    order = [job_of[trial_id] for trial_id, _ in broker.sent]  # the queue's order: who got the workers when
    assert sorted(order) == ["first"] * 10 + ["second"] * 10  # each trial sent once
    if fair:
        # The first job alone takes the two slots; the second then gets one, and they take turns.
        assert order[:8] == ["first", "first", "second", "first", "second", "first", "second", "first"], order
    else:
        assert order[:12] == ["first"] * 6 + ["second"] * 6, order  # first come, first served


@pytest.mark.parametrize(("registered", "expected"), [(None, 6), (0.0, 2), (600.0, 6)],
                         ids=["no-worker-registered", "live-worker", "worker-gone-silent"])
def test_a_job_alone_queues_no_more_than_the_live_workers_take(settings_env, nb201_csv, make_broker,
                                                                registered, expected):
    if registered is not None:
        register_worker(slots=2, silent_for_s=registered)
    broker = make_broker()
    broker.hold = True
    job_id = make_job(tabular_spec(nb201_csv, max_trials=20, max_parallel=6))
    Scheduler(settings_env, send=broker.send, owner="only").step()
    assert in_flight(job_id) == expected
    assert get_job(job_id).queue == "cpu"  # written by its scheduler: what other jobs' shares count by
