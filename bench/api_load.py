"""The API under load, and on a job of 100,000 trials.

``scion bench api --json bench/out/api_load.json`` runs both parts (``--part load`` or
``--part big`` runs one); docs/benchmarks.md ("API under load") reports the figures,
docs/reliability.md ("Load") what keeps the API fast.

load: the production stack (uvicorn API with ``api_workers`` processes, scheduler, a Celery
worker on Redis, PostgreSQL) runs a tabular job; while it runs, ``concurrency`` asyncio users on
keep-alive connections send ``requests`` GETs over loopback (after 200 not counted), each its
next as soon as the last is answered, alternately the job's status and a page of its trials
sorted by objective: once as the API serves by default, once with its answers computed afresh
(``api_cache_seconds`` 0); with ``auth``, tokens required and sent. Errors (anything but a 200),
latency percentiles, requests per second, the API's CPU per request and the trials the job
finished meanwhile are reported.

big: one running job of ``trials`` stored trials, bulk-loaded (COPY) into a fresh database after
the Alembic upgrade and analysed as autovacuum would, is served by the API alone (no scheduler
touches it); its status and a page of its trials sorted by objective are timed over loopback
(median of ``repeats`` after a warm-up), and every statement those two requests send is run
under EXPLAIN ANALYZE, so that a scan or sort of all the job's trials shows in the report.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from sqlalchemy import func, insert, select

from bench.dispatch import percentile, scratch_database
from bench.proc_cpu import tree_cpu_s
from bench.scheduler_cost import bench_settings, statements_sent
from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings, get_settings
from scion.spec import JobSpec
from spaces.nb201 import NB201Space
from storage import repository as repo
from storage import tokens
from storage.db import get_engine, session_scope, utcnow
from storage.migrate import upgrade
from storage.models import ToldCount, Trial
from worker.evaluators.nb201_table import load_table

PAGE = 50


def job_paths(job_id: int) -> dict[str, str]:
    """The two requests a user watching a search sends over and over."""
    return {"status": f"/v1/jobs/{job_id}", "trials": f"/v1/jobs/{job_id}/trials?sort=objective&limit={PAGE}"}


def tabular_spec(table: Path, *, max_trials: int, max_parallel: int, name: str) -> dict[str, Any]:
    return {
        "name": name, "space": {"type": "nb201"},
        "strategy": {"type": "evolution", "population_size": 20, "sample_size": 5},
        "evaluator": {"type": "tabular", "table": str(table)},
        "budget": {"max_trials": max_trials, "max_parallel": max_parallel}, "seed": 0,
    }


def latency_figures(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(ms, 0.50), 2), "p95_ms": round(percentile(ms, 0.95), 2),
            "p99_ms": round(percentile(ms, 0.99), 2), "max_ms": round(max(ms), 2)}


# ---------------------------------------------------------------- load: many requests while a job runs

Result = tuple[str, float, int | str]  # (request kind, seconds, status code or error name)


async def _lean_user(host: str, port: int, queue: list[tuple[str, str]], results: list[Result],
                     token: str | None) -> None:
    """One user on one keep-alive connection, speaking just the HTTP/1.1 these GETs need (the API
    always sends Content-Length). An httpx AsyncClient costs about as much CPU per request as the
    API spends computing an answer, and on a small machine it takes that from the API."""
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    while queue:
        kind, path = queue.pop()
        started = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            reader, writer = connection
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in head[1:])}
            await reader.readexactly(int(headers["content-length"]))
            status: int | str = int(head[0].split()[1])
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, KeyError, ValueError) as exc:
            status = type(exc).__name__
            if connection is not None:
                connection[1].close()
            connection = None
        results.append((kind, time.perf_counter() - started, status))
    if connection is not None:
        connection[1].close()


async def _httpx_user(url: str, queue: list[tuple[str, str]], results: list[Result], token: str | None) -> None:
    """One user with an httpx client of its own (one pool shared by all users costs more still)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1),
                                 headers=headers) as client:
        while queue:
            kind, path = queue.pop()
            started = time.perf_counter()
            try:
                status: int | str = (await client.get(path)).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.append((kind, time.perf_counter() - started, status))


async def hammer(url: str, paths: list[tuple[str, str]], concurrency: int, generator: str = "lean",
                 token: str | None = None) -> list[Result]:
    """Send every (kind, path) GET in order, ``concurrency`` users at a time, each sending its next
    request as soon as the last one is answered (with ``token`` as its Bearer token, if given)."""
    queue, results = list(reversed(paths)), []
    target = httpx.URL(url)
    users = [_lean_user(target.host, target.port, queue, results, token) if generator == "lean"
             else _httpx_user(url, queue, results, token) for _ in range(concurrency)]
    await asyncio.gather(*users)
    return results


def completed_trials(client: ScionClient, job_id: int) -> int:
    return client.job(job_id)["counts"].get("completed", 0)


def run_load(*, database_url: str, broker: str, table: Path, requests: int = 2000, concurrency: int = 50,
             api_workers: int = 2, workers: int = 2, generator: str = "lean",
             warm_trials: int = 200, warm_requests: int = 200, cache_seconds: float | None = None,
             auth: bool = False) -> dict[str, Any]:
    """``requests`` GETs at ``concurrency`` while a tabular job runs on the production stack, after
    ``warm_requests`` of the same kind not counted (each API process's first requests open its
    connections and compile its statements); the API keeps answers ``cache_seconds`` (None: the
    server's default); ``auth``: tokens required, as on any API that listens beyond loopback, and
    every user sends one."""
    env = {} if cache_seconds is None else {"SCION_API_CACHE_SECONDS": str(cache_seconds)}
    env |= {"SCION_AUTH": "on"} if auth else {}
    redis.Redis.from_url(broker).flushdb()
    with scratch_database(database_url) as db_url, tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), database_url=db_url, broker_url=broker)
        token = None
        if auth:
            upgrade(db_url)
            with session_scope(db_url) as session:
                token = tokens.create_token(session, name="api-load", owner="bench")
        with (LocalStack(settings, workers=workers, api_workers=api_workers, env=env) as stack,
              ScionClient(stack.url, token=token) as client):
            job = client.submit(tabular_spec(table, max_trials=100_000, max_parallel=8, name="api-load"))
            deadline = time.monotonic() + 120
            while completed_trials(client, job["id"]) < warm_trials:  # listings with something in them
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the job did not reach {warm_trials} trials in 120 s; see {stack.logs}")
                time.sleep(0.2)
            paths = job_paths(job["id"])
            kinds = [("status", "trials")[i % 2] for i in range(requests)]
            asyncio.run(hammer(stack.url, [(k, paths[k]) for k in kinds[:warm_requests]], concurrency, generator,
                               token))
            api_pid = stack.procs[0][1].pid
            before = completed_trials(client, job["id"])
            api_cpu, own_cpu = tree_cpu_s(api_pid), time.process_time()
            started = time.perf_counter()
            results = asyncio.run(hammer(stack.url, [(k, paths[k]) for k in kinds], concurrency, generator, token))
            wall = time.perf_counter() - started
            api_cpu, own_cpu = tree_cpu_s(api_pid) - api_cpu, time.process_time() - own_cpu
            after = completed_trials(client, job["id"])
            still = client.job(job["id"])["status"]
            client.cancel(job["id"])
    redis.Redis.from_url(broker).flushdb()
    errors = [status for _, _, status in results if status != 200]
    return {
        "requests": len(results), "concurrency": concurrency, "api_workers": api_workers, "generator": generator,
        "api_cache_seconds": get_settings().api_cache_seconds if cache_seconds is None else cache_seconds,
        "auth": auth, "warm_requests": warm_requests,
        "errors": len(errors), "error_kinds": sorted({str(e) for e in errors}), "wall_s": round(wall, 2),
        "requests_per_s": round(len(results) / wall, 1),
        **latency_figures([s for _, s, _ in results]),
        "by_request": {kind: latency_figures([s for k, s, _ in results if k == kind]) for kind in paths},
        "api_cpu_ms_per_request": round(api_cpu * 1000 / len(results), 2),
        "generator_cpu_ms_per_request": round(own_cpu * 1000 / len(results), 2),
        "job_running_throughout": still == "running", "trials_completed_during": after - before,
        "job_trials_per_s": round((after - before) / wall, 1), "worker_processes": workers,
        "load_average_1min_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }


# ---------------------------------------------------------------- big: one job of 100,000 trials


def seed_big_job(db_url: str, table: Path, *, trials: int, seed: int = 0) -> int:
    """A running job of ``trials`` stored trials (every 50th failed, the last 8 running, the
    rest completed with the table's metrics for an architecture drawn from 2,000), loaded with
    COPY and tallied as its scheduler would have: a few seconds for 100,000."""
    space, scores = NB201Space(), load_table(table)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(2000)]  # drawn from, so that seeding costs little per trial
    pool = [(json.dumps(arch), space.key(arch)) for arch in archs]
    now = utcnow()
    spec = JobSpec.model_validate(tabular_spec(table, max_trials=trials, max_parallel=8, name="big-job"))
    with session_scope(db_url) as session:
        job = repo.create_job(session, name=spec.name, spec=spec.model_dump(mode="json"))
        job.status, job.started_at, job.trials_created = "running", now, trials
        job_id = job.id
    columns = ("job_id", "number", "status", "arch", "arch_key", "attempts", "worker", "metrics", "objective",
               "score", "error", "told", "created_at", "queued_at", "started_at", "heartbeat_at", "finished_at")
    with get_engine(db_url).begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY trials ({', '.join(columns)}) FROM STDIN") as copy:
            for number, pick in enumerate(rng.integers(len(pool), size=trials)):
                arch, key = pool[pick]
                running, failed = number >= trials - 8, number % 50 == 49
                val_acc, test_acc = scores.lookup(key)
                finished = not (running or failed)
                metrics = json.dumps({"val_acc_12ep": val_acc, "test_acc_200ep": test_acc}) if finished else None
                objective = val_acc if finished else None
                status = "running" if running else "failed" if failed else "completed"
                copy.write_row((job_id, number, status, arch, key, 1, "seed:0", metrics, objective,
                                objective, "seeded failure" if failed else None, not running, now, now, now, now,
                                None if running else now))
        conn.execute(insert(ToldCount).from_select(  # the tallies the scheduler keeps as it tells trials
            ["job_id", "status", "trials"],
            select(Trial.job_id, Trial.status, func.count()).where(Trial.job_id == job_id, Trial.told)
            .group_by(Trial.job_id, Trial.status)))
        conn.exec_driver_sql("ANALYZE trials")
    with get_engine(db_url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM trials")  # as autovacuum does after so many inserts
    return job_id


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan tree run under EXPLAIN ANALYZE, outermost node first: what each node is ('Index Scan
    using ix_trials_job_best on trials') and how many rows it produced over all its loops."""
    node = plan["Node Type"]
    if "Index Name" in plan:
        node += f" using {plan['Index Name']}"
    if "Relation Name" in plan:
        node += f" on {plan['Relation Name']}"
    rows = int(plan["Actual Rows"] * plan["Actual Loops"])
    return [{"node": node, "rows": rows}] + [n for child in plan.get("Plans", []) for n in plan_nodes(child)]


def request_plans(db_url: str, paths: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Each path's answer from the app served in this process on ``db_url``, and every SELECT it
    sent to answer, with its plan under EXPLAIN ANALYZE."""
    from fastapi.testclient import TestClient

    answers: dict[str, Any] = {}
    plans: dict[str, list[dict[str, Any]]] = {}
    with bench_settings(db_url, "memory://"):
        from api.main import create_app

        with TestClient(create_app()) as client:
            for kind, path in paths.items():
                with statements_sent(db_url) as sent:
                    response = client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text}")
                answers[kind], plans[kind] = response.json(), []
                with get_engine(db_url).connect() as conn:
                    for statement, parameters in sent:
                        if not statement.lstrip().upper().startswith("SELECT"):
                            continue
                        explained = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
                        root = explained.scalar()[0]
                        plans[kind].append({"sql": " ".join(statement.split())[:160],
                                            "execution_ms": round(root["Execution Time"], 3),
                                            "plan": plan_nodes(root["Plan"])})
    return answers, plans


class ApiAlone(LocalStack):
    """The uvicorn API alone on a database: no scheduler or worker touches what was seeded."""

    def start(self, timeout_s: float = 60.0) -> ApiAlone:
        self.spawn_api()
        self._wait_ready(timeout_s)
        return self


def time_requests(url: str, paths: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    """Each path GET ``repeats`` times in turn over loopback after 3 warm-ups: median and max ms."""
    timings: dict[str, list[float]] = {kind: [] for kind in paths}
    with httpx.Client(base_url=url, timeout=30) as client:
        for round_ in range(3 + repeats):
            for kind, path in paths.items():
                started = time.perf_counter()
                response = client.get(path)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if round_ >= 3:
                    timings[kind].append(elapsed * 1000)
    return {kind: {"median_ms": round(statistics.median(ms), 2), "max_ms": round(max(ms), 2)}
            for kind, ms in timings.items()}


def run_big(*, database_url: str, table: Path, trials: int = 100_000, repeats: int = 21) -> dict[str, Any]:
    with scratch_database(database_url) as db_url, tempfile.TemporaryDirectory() as home:
        upgrade(db_url)
        started = time.perf_counter()
        job_id = seed_big_job(db_url, table, trials=trials)
        seeded_s = time.perf_counter() - started
        paths = job_paths(job_id)
        _, plans = request_plans(db_url, paths)
        settings = Settings(home=Path(home), database_url=db_url, broker_url="memory://")
        with ApiAlone(settings, workers=0) as stack:
            timings = time_requests(stack.url, paths, repeats)
        get_engine(db_url).dispose()
    return {"trials": trials, "seed_s": round(seeded_s, 1), "repeats": repeats, "timings": timings, "plans": plans}


def run(*, database_url: str, broker: str, table: Path, parts: tuple[str, ...] = ("load", "big"),
        requests: int = 2000, concurrency: int = 50, api_workers: int = 2, generator: str = "lean",
        trials: int = 100_000, repeats: int = 21, auth: bool = False) -> dict[str, Any]:
    table = table.resolve()
    report: dict[str, Any] = {}
    if "load" in parts:  # as served by default, and with every answer computed afresh, side by side
        for name, cache_seconds in (("load", None), ("load_uncached", 0.0)):
            report[name] = run_load(database_url=database_url, broker=broker, table=table, requests=requests,
                                    concurrency=concurrency, api_workers=api_workers, generator=generator,
                                    cache_seconds=cache_seconds, auth=auth)
    if "big" in parts:
        report["big"] = run_big(database_url=database_url, table=table, trials=trials, repeats=repeats)
    return report
