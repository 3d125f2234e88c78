"""Load over real processes: many jobs submitted at once on the production path (uvicorn API,
scheduler, Celery worker on a Redis of the test's own, PostgreSQL) all complete, each trial
stored and told exactly once. docs/reliability.md ("Load") reports the figures."""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import select

from client.stack import LocalStack
from scion.settings import Settings
from storage.db import session_scope
from storage.models import TERMINAL_JOB_STATUSES, Job, Trial
from tests.integration.harness import tabular_spec

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

JOBS, TRIALS = 100, 5


async def submit_all(url: str, specs: list[dict]) -> list[int]:
    """POST every spec at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(specs))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/v1/jobs", json=spec) for spec in specs))
    assert [a.status_code for a in answers] == [201] * len(specs), [a.text for a in answers if a.status_code != 201]
    return [a.json()["id"] for a in answers]


def wait_all_finished(db_url: str, job_ids: list[int], timeout_s: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        with session_scope(db_url) as session:
            statuses = dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids))).all())
        if all(s in TERMINAL_JOB_STATUSES for s in statuses.values()) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def test_a_hundred_jobs_submitted_at_once_all_complete_with_every_trial_stored_once(
    tmp_path, postgres_url, own_redis, nb201_csv, record_property
):
    settings = Settings(home=tmp_path / "home", database_url=postgres_url, broker_url=own_redis.url)
    specs = [dict(tabular_spec(nb201_csv, seed=i, max_trials=TRIALS, max_parallel=2), name=f"load-{i}")
             for i in range(JOBS)]
    with LocalStack(settings, workers=2) as stack:
        started = time.monotonic()
        job_ids = asyncio.run(submit_all(stack.url, specs))
        submitted = time.monotonic() - started
        statuses = wait_all_finished(postgres_url, job_ids, timeout_s=120)
        finished = time.monotonic() - started
    print(f"MEASURED submit_s={submitted:.2f} all_finished_s={finished:.2f}")
    record_property("submit_s", round(submitted, 2))
    record_property("all_finished_s", round(finished, 2))

    assert len(set(job_ids)) == JOBS
    assert set(statuses.values()) == {"completed"}, {j: s for j, s in statuses.items() if s != "completed"}
    with session_scope(postgres_url) as session:
        rows = session.execute(
            select(Trial.job_id, Trial.number, Trial.status, Trial.attempts, Trial.told, Trial.objective)
            .where(Trial.job_id.in_(job_ids))
        ).all()
    by_job: dict[int, list] = defaultdict(list)
    for row in rows:
        by_job[row.job_id].append(row)
    assert set(by_job) == set(job_ids)
    for job_id, trials in by_job.items():
        assert sorted(t.number for t in trials) == list(range(TRIALS)), f"job {job_id}: trials missing or doubled"
        assert all(t.status == "completed" and t.objective is not None for t in trials), job_id
        assert all(t.attempts == 1 for t in trials), f"job {job_id}: a trial ran twice"
        assert all(t.told for t in trials), f"job {job_id}: the strategy missed a result"
