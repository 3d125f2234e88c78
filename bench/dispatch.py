"""Dispatch overhead through the real production path, beside Optuna and plain Celery.

Scion: HTTP submit → scheduler → Celery on Redis → worker → PostgreSQL → scheduler, with the
tabular evaluator so that trials cost nothing and only the service's own overhead is left; as
configured by default (such cheap trials go several to a message: ``scheduler.pace``) and again
with one trial per message (``SCION_SCHEDULER_BATCH_SECONDS=0``), the overhead per message.
Optuna: the same number of processes doing ask-and-tell on an RDB storage on the same
PostgreSQL, with the same table look-up as the objective and its random sampler.
Plain Celery: a no-op task on the same broker, the floor any Celery-based service sits on.
All of them run in one session on this machine; compare the ratios, not the absolute figures.
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings
from storage.db import session_scope
from storage.models import Job, Trial


@contextmanager
def scratch_database(admin_url: str):
    """A PostgreSQL database of the benchmark's own, dropped afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"scion_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---------------------------------------------------------------- Scion


def run_scion(db_url: str, broker: str, table: Path, trials: int, workers: int, parallel: int, *,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    spec = {
        "name": "dispatch-bench", "space": {"type": "nb201"}, "strategy": {"type": "random"},
        "evaluator": {"type": "tabular", "table": str(table)},
        "budget": {"max_trials": trials, "max_parallel": parallel}, "seed": 0,
    }
    return run_job(db_url, broker, spec, workers, env=env)


Probe = Callable[[LocalStack], AbstractContextManager[dict[str, Any]]]


def run_job(db_url: str, broker: str | None, spec: dict[str, Any], workers: int, *,
            warmup: dict[str, Any] | None = None, probe: Probe | None = None,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``spec`` through the production path (API, scheduler, ``workers`` worker processes)
    after a warm-up job (``warmup``, by default ``spec`` itself: imports, pools, caches), and
    measure it from the database's timestamps. ``probe``, given the stack, is entered around the
    measured job; the figures it yields are added to the result. ``broker`` None: the embedded
    filesystem broker; a Redis one is emptied first. ``env``: further SCION_… settings.

    Gaps on a worker: ``worker_gap`` from each trial's end to the next trial's start on the same
    worker process; ``message_gap`` the same between the messages it took, a message's trials
    being those it claimed at one instant (the claim stamps their heartbeat, which trials this
    short never beat again), so the two differ only where messages carry several trials."""
    if broker:
        redis.Redis.from_url(broker).flushdb()
    probed: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), database_url=db_url, broker_url=broker)
        with LocalStack(settings, workers=workers, env=env) as stack, ScionClient(stack.url) as client:
            client.wait(client.submit(warmup or spec)["id"], timeout_s=300)
            with probe(stack) if probe else nullcontext(probed) as probed:
                started = time.perf_counter()
                job = client.submit(spec)
                final = client.wait(job["id"], poll_s=0.05, timeout_s=1800)
                wall = time.perf_counter() - started
    assert final["status"] == "completed", final
    with session_scope(db_url) as session:
        created = session.get(Job, job["id"]).created_at
        rows = session.execute(select(Trial.worker, Trial.heartbeat_at, Trial.started_at, Trial.finished_at)
                               .where(Trial.job_id == job["id"])).all()
    trials: dict[str, list[tuple]] = {}
    messages: dict[str, dict[Any, tuple]] = {}
    for worker, claimed, start, end in rows:
        trials.setdefault(worker, []).append((start, end))
        first_start, last_end = messages.setdefault(worker, {}).get(claimed, (start, end))
        messages[worker][claimed] = (min(first_start, start), max(last_end, end))
    gaps, message_gaps = _gaps_ms(trials.values()), _gaps_ms([list(m.values()) for m in messages.values()])
    first = min(row.started_at for row in rows)
    last = max(row.finished_at for row in rows)
    return {
        "trials": len(rows), "wall_s": round(wall, 2),
        "trials_per_s": round(len(rows) / (last - created).total_seconds(), 2),
        "first_trial_running_s": round((first - created).total_seconds(), 3),
        "worker_gap_ms_median": round(statistics.median(gaps), 2) if gaps else None,
        "worker_gap_ms_p99": round(percentile(gaps, 0.99), 2) if gaps else None,
        "trials_per_message": round(len(rows) / sum(len(m) for m in messages.values()), 2),
        "message_gap_ms_median": round(statistics.median(message_gaps), 2) if message_gaps else None,
        "message_gap_ms_p99": round(percentile(message_gaps, 0.99), 2) if message_gaps else None,
        "worker_processes": len(trials), **probed,
    }


def _gaps_ms(per_worker) -> list[float]:
    """From each span's end to the next span's start, on each worker: (start, end) lists."""
    gaps = []
    for spans in per_worker:
        spans = sorted(spans)
        gaps += [(nxt[0] - prev[1]).total_seconds() * 1000 for prev, nxt in zip(spans, spans[1:])]
    return gaps


# ---------------------------------------------------------------- Optuna


def _optuna_worker(storage_url: str, study_name: str, table_path: str, n: int) -> None:
    import optuna

    from spaces.nb201 import OPS, NB201Space
    from worker.evaluators.nb201_table import load_table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table, space = load_table(table_path), NB201Space()
    study = optuna.load_study(study_name=study_name, storage=storage_url, sampler=optuna.samplers.RandomSampler())
    for _ in range(n):
        trial = study.ask()
        arch = [trial.suggest_categorical(f"edge{i}", OPS) for i in range(6)]
        study.tell(trial, table.lookup(space.key(arch))[0])


def run_optuna(db_url: str, table: Path, trials: int, processes: int) -> dict[str, Any]:
    import optuna

    storage = optuna.storages.RDBStorage(db_url)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    del storage
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_optuna_worker, args=(db_url, name, str(table), trials // processes))
             for _ in range(processes)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - started
    done = len(optuna.load_study(study_name=name, storage=db_url).trials)
    return {"trials": done, "wall_s": round(wall, 2), "trials_per_s": round(done / wall, 1)}


# ---------------------------------------------------------------- plain Celery


def run_celery_floor(broker: str, tasks: int, processes: int) -> dict[str, Any]:
    from bench import celery_floor

    client = redis.Redis.from_url(broker)
    client.flushdb()
    celery_floor.use_broker(broker)
    env = dict(os.environ, SCION_BENCH_BROKER=broker)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_floor", "worker", f"--concurrency={processes}",
         "--pool=prefork", "--queues=floor", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        celery_floor.noop.delay(-1)  # wait for the worker to be up
        deadline = time.monotonic() + 60
        while int(client.get(celery_floor.COUNTER) or 0) < 1:
            assert time.monotonic() < deadline, "the Celery worker did not start"
            time.sleep(0.05)
        client.set(celery_floor.COUNTER, 0)
        started = time.perf_counter()
        for i in range(tasks):
            celery_floor.noop.delay(i)
        while int(client.get(celery_floor.COUNTER) or 0) < tasks:
            time.sleep(0.01)
        wall = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(30)
    return {"tasks": tasks, "wall_s": round(wall, 2), "trials_per_s": round(tasks / wall, 1)}


def run(*, database_url: str, broker: str, table: Path, trials: int = 2000, workers: int = 2,
        parallel: int = 16) -> dict[str, Any]:
    table = table.resolve()
    with scratch_database(database_url) as scion_db:
        scion = run_scion(scion_db, broker, table, trials, workers, parallel)
    with scratch_database(database_url) as scion_db:
        single = run_scion(scion_db, broker, table, trials, workers, parallel,
                           env={"SCION_SCHEDULER_BATCH_SECONDS": "0"})
    with scratch_database(database_url) as optuna_db:
        optuna = run_optuna(optuna_db, table, trials, workers)
    floor = run_celery_floor(broker, trials, workers)
    return {
        "scion": scion, "scion_one_per_message": single, "optuna": optuna, "celery": floor,
        "vs_optuna": round(scion["trials_per_s"] / optuna["trials_per_s"], 2),
        "vs_celery_floor": round(scion["trials_per_s"] / floor["trials_per_s"], 2),
        "vs_celery_floor_one_per_message": round(single["trials_per_s"] / floor["trials_per_s"], 2),
        "settings": {"trials": trials, "worker_processes": workers, "max_parallel": parallel},
    }
