"""Scheduler cost as jobs grow: the scheduler's CPU time per trial against the trials it already holds.

A scheduler pass that re-reads every trial, or rewrites state that grows with the job, gets
slower with each trial; at 10,000 trials it would be the bottleneck and every GPU would wait on
it. This benchmark seeds jobs with 100, 1,000 and 10,000 finished trials (and 50 jobs at once),
then times the real ``Scheduler`` on PostgreSQL and Redis through the next trials.

Seeding is cheap and consistent: the job's own strategy is run in-process (ask, table look-up,
tell), its trials are bulk-inserted as finished and told, and its state is saved as a scheduler
would have left it. The measurement then steps the real ``Scheduler`` in this process, which sends
real Celery messages to Redis; between passes the oldest ``per_pass`` messages are evaluated by the
worker's own ``run_trials`` (as ``per_pass`` fast workers would), outside the timed region. Only the
scheduler's passes are timed, with ``time.process_time`` (CPU of this process) and
``time.perf_counter`` (wall, which adds the database's answers), and its SQL statements are counted.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import event, insert, text

from bench.dispatch import scratch_database
from scheduler import feedback
from scheduler.strategies import make_strategy
from scion.settings import Settings, get_settings
from scion.spec import JobSpec
from spaces import make_space
from storage import repository as repo
from storage.db import get_engine, session_scope, utcnow
from storage.migrate import upgrade
from storage.models import Job, Trial
from worker.evaluators import make_evaluator


def job_spec(table: Path, *, strategy: str, max_trials: int, parallel: int, seed: int) -> JobSpec:
    return JobSpec.model_validate({
        "name": "scheduler-cost", "space": {"type": "nb201"}, "strategy": {"type": strategy},
        "evaluator": {"type": "tabular", "table": str(table)},
        "budget": {"max_trials": max_trials, "max_parallel": parallel}, "seed": seed,
    })


def seed_job(db_url: str, spec: JobSpec, finished: int) -> int:
    """A running job with ``finished`` trials done and told, as its scheduler would have left it."""
    space, evaluator = make_space(spec.space), make_evaluator(spec.evaluator)
    strategy = make_strategy(spec.strategy, space, spec.seed)
    now, rows = utcnow(), []
    for number in range(finished):
        proposal = strategy.ask()
        if proposal is None:
            raise RuntimeError(f"strategy {spec.strategy.type!r} ran out of candidates after {number} trials")
        metrics = evaluator.evaluate(space, proposal.arch, None)
        objective, score = spec.score(metrics)
        strategy.tell(feedback.finished(spec, number=number, arch=proposal.arch, status="completed", score=score,
                                        metrics=metrics, fidelity=proposal.fidelity))
        rows.append(dict(number=number, status="completed", arch=proposal.arch, arch_key=space.key(proposal.arch),
                         fidelity=proposal.fidelity, attempts=1, worker="seed", metrics=metrics, objective=objective,
                         score=score, told=False, created_at=now, queued_at=now, started_at=now, heartbeat_at=now,
                         finished_at=now))
    with session_scope(db_url) as session:
        job = repo.create_job(session, name=spec.name, spec=spec.model_dump(mode="json"))
        job.status, job.started_at, job.trials_created = "running", now, finished
        job.strategy_state = strategy.state_dict()
        if rows:
            session.execute(insert(Trial), [dict(row, job_id=job.id) for row in rows])
            repo.take_finished(session, job_id=job.id)  # as the scheduler tells them
        return job.id


@contextmanager
def statements_sent(db_url: str) -> Iterator[list[tuple[str, Any]]]:
    """Every (statement, parameters) sent on ``db_url``'s engine in this process meanwhile."""
    sent: list[tuple[str, Any]] = []

    def note(_conn, _cursor, statement, parameters, _context, _many) -> None:
        sent.append((statement, parameters))

    engines = [get_engine(db_url, durable=durable, autocommit=autocommit)  # fewer on SQLite
               for durable in (True, False) for autocommit in (True, False)]
    for engine in set(engines):
        event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        for engine in set(engines):
            event.remove(engine, "before_cursor_execute", note)


def drive(settings: Settings, job_ids: list[int], *, measured: int, per_pass: int,
          idle_passes: int = 10) -> dict[str, Any]:
    """Step a fresh scheduler until the jobs end; returns what its passes cost.

    The first pass takes the jobs over (loading each strategy); then ``idle_passes`` passes run with
    nothing finished (what a scheduler pays every poll while long trials train); then each pass
    follows ``per_pass`` finished trials and, like the passes a finished trial's nudge wakes in
    ``Scheduler.run``, leaves the leases to the next poll."""
    from scheduler.dispatch import celery_send
    from scheduler.loop import Scheduler
    from worker.runner import run_trials

    backlog: deque[int] = deque()

    def recorded(messages: list[list[int]], queue: str) -> None:
        """The production sender, noting what it sent for the stand-in workers."""
        celery_send(messages, queue)
        for trial_ids in messages:
            backlog.extend(trial_ids)

    scheduler = Scheduler(settings, send=recorded, owner="bench")

    def timed_pass(leases: bool = True) -> tuple[float, float]:
        cpu, started = time.process_time(), time.perf_counter()
        scheduler.step(leases=leases)
        return time.process_time() - cpu, time.perf_counter() - started

    takeover_cpu, takeover_wall = timed_pass()
    idle = [timed_pass()[0] for _ in range(idle_passes)]
    busy: list[tuple[float, float]] = []
    statements = 0
    with statements_sent(settings.db_url) as sent:  # the trials run in this process too: count passes only
        while scheduler.runs:
            for _ in range(min(per_pass, len(backlog))):
                run_trials([backlog.popleft()], "cpu")
            before = len(sent)
            busy.append(timed_pass(leases=False))
            statements += len(sent) - before
    with session_scope(settings.db_url) as session:
        unfinished = [j for j in job_ids if session.get(Job, j).status != "completed"]
    if unfinished:
        raise RuntimeError(f"jobs {unfinished} did not complete; see the scheduler's log")
    return {
        "measured_trials": measured, "passes": len(busy),
        "cpu_ms_per_trial": round(sum(c for c, _ in busy) * 1000 / measured, 3),
        "wall_ms_per_trial": round(sum(w for _, w in busy) * 1000 / measured, 3),
        "statements_per_trial": round(statements / measured, 2),
        "idle_pass_cpu_ms": round(statistics.median(idle) * 1000, 3) if idle else None,
        "takeover_cpu_ms": round(takeover_cpu * 1000, 1), "takeover_wall_ms": round(takeover_wall * 1000, 1),
    }


def run_case(settings: Settings, table: Path, *, jobs: int, finished: int, measured_per_job: int, per_pass: int,
             parallel: int, strategy: str) -> dict[str, Any]:
    """``jobs`` jobs of ``finished`` done trials each, then ``measured_per_job`` more trials each."""
    ids = [seed_job(settings.db_url, job_spec(table, strategy=strategy, max_trials=finished + measured_per_job,
                                              parallel=parallel, seed=seed), finished)
           for seed in range(jobs)]
    with get_engine(settings.db_url).connect() as conn:  # as autovacuum does after so many inserts
        conn.execute(text("ANALYZE"))
    figures = drive(settings, ids, measured=measured_per_job * jobs, per_pass=per_pass)
    return {"jobs": jobs, "finished_per_job": finished, "max_parallel": parallel, **figures}


@contextmanager
def bench_settings(db_url: str, broker: str) -> Iterator[Settings]:
    """This process's settings pointed at the benchmark's database and broker (the worker code
    run in-process reads them from the environment)."""
    names = ("SCION_HOME", "SCION_DATABASE_URL", "SCION_BROKER_URL")
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(SCION_HOME=home, SCION_DATABASE_URL=db_url, SCION_BROKER_URL=broker)
        get_settings.cache_clear()
        try:
            yield get_settings()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            get_settings.cache_clear()


def run(*, database_url: str, broker: str, table: Path, sizes: tuple[int, ...] = (100, 1000, 10_000),
        measured: int = 200, parallel: int = 16, per_pass: int = 2, jobs: int = 50, jobs_finished: int = 100,
        jobs_measured: int = 10, jobs_parallel: int = 2, strategy: str = "random") -> dict[str, Any]:
    """One job at each of ``sizes`` finished trials, then ``jobs`` jobs at once (``jobs=0`` skips them)."""
    table = table.resolve()
    queues = redis.Redis.from_url(broker)
    with scratch_database(database_url) as db_url, bench_settings(db_url, broker) as settings:
        upgrade(db_url)
        queues.flushdb()
        try:
            cases = [run_case(settings, table, jobs=1, finished=n, measured_per_job=measured, per_pass=per_pass,
                              parallel=parallel, strategy=strategy) for n in sizes]
            if jobs:
                cases.append(run_case(settings, table, jobs=jobs, finished=jobs_finished,
                                      measured_per_job=jobs_measured, per_pass=per_pass, parallel=jobs_parallel,
                                      strategy=strategy))
        finally:
            queues.flushdb()
            get_engine(db_url).dispose()
    single = cases[:len(sizes)]
    return {
        "cases": cases,
        "cpu_per_trial_largest_vs_smallest": round(single[-1]["cpu_ms_per_trial"] / single[0]["cpu_ms_per_trial"], 2),
        "cpu_per_trial_many_jobs_vs_one": (round(cases[-1]["cpu_ms_per_trial"] / single[0]["cpu_ms_per_trial"], 2)
                                           if jobs else None),
        "settings": {"strategy": strategy, "finished_per_pass": per_pass, "sizes": list(sizes),
                     "measured_trials": measured, "max_parallel": parallel, "jobs": jobs,
                     "finished_per_job_when_many": jobs_finished, "measured_per_job_when_many": jobs_measured,
                     "max_parallel_when_many": jobs_parallel},
    }
