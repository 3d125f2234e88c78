"""The production path with real processes: uvicorn API, scheduler and a Celery worker (two
pool processes) on Redis, all on PostgreSQL, driven over HTTP and through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis
from sqlalchemy import select

from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings
from storage.db import session_scope
from storage.models import Trial

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def production_stack(tmp_path, postgres_url, redis_url):
    broker = redis_url.rsplit("/", 1)[0] + "/9"  # a database of the test server's own, emptied first
    redis.Redis.from_url(broker).flushdb()
    settings = Settings(home=tmp_path / "home", database_url=postgres_url, broker_url=broker)
    with LocalStack(settings, workers=2) as stack:
        yield stack, settings
    redis.Redis.from_url(broker).flushdb()


def _tabular_spec(csv, trials: int, name: str) -> dict:
    return {
        "name": name,
        "space": {"type": "nb201"},
        "strategy": {"type": "evolution", "population_size": 10, "sample_size": 3},
        "evaluator": {"type": "tabular", "table": str(csv)},
        "budget": {"max_trials": trials, "max_parallel": 8},
        "seed": 5,
    }


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SCION_API_URL=url)
    return subprocess.run([sys.executable, "-m", "client", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_fifty_trial_job_completes_with_every_trial_stored_and_told_once(production_stack, nb201_csv):
    stack, settings = production_stack
    with ScionClient(stack.url) as client:
        job = client.submit(_tabular_spec(nb201_csv, 50, "e2e-50"))
        final = client.wait(job["id"], timeout_s=180)
        assert final["status"] == "completed", final
        assert final["counts"] == {"completed": 50}
        page = client.trials(job["id"], limit=100)
        assert [t["number"] for t in page["items"]] == list(range(50))
        best = client.best(job["id"])
        assert best["objective"] == max(t["objective"] for t in page["items"])
        assert "test_acc_200ep" in best["metrics"]

    with session_scope(settings.db_url) as session:
        trials = session.scalars(select(Trial).where(Trial.job_id == job["id"])).all()
        assert len(trials) == 50
        assert len({t.number for t in trials}) == 50
        assert all(t.told for t in trials), "the strategy must have received every result"
        assert all(t.attempts == 1 for t in trials), "no trial ran twice"
        assert len({t.worker.split(":")[1] for t in trials}) == 2, "both worker processes took trials"
        # Table look-ups are cheap: once measured, they went several to a Celery message, each trial
        # of a message claimed at the same instant and evaluated in turn with its own times.
        messages = Counter((t.worker, t.heartbeat_at) for t in trials)
        assert max(messages.values()) > 1 and len(messages) < 50, (
            sorted(messages.values()), sorted((t.finished_at - t.started_at).total_seconds() for t in trials))
        assert all(t.started_at <= t.finished_at for t in trials)

    status = _cli(stack.url, "status", str(job["id"]), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["best"]["number"] == best["number"]
    top = json.loads(_cli(stack.url, "trials", str(job["id"]), "--sort", "objective", "--limit", "3", "--json").stdout)
    assert top["items"][0]["number"] == best["number"]
    assert json.loads(_cli(stack.url, "best", str(job["id"]), "--json").stdout)["number"] == best["number"]


def test_cancel_through_the_cli_stops_the_job_and_a_second_cancel_is_refused(production_stack, nb201_csv):
    stack, _ = production_stack
    with ScionClient(stack.url) as client:
        job = client.submit(_tabular_spec(nb201_csv, 100_000, "e2e-cancel"))
        deadline = time.monotonic() + 60
        while client.job(job["id"])["counts"].get("completed", 0) < 5:  # the search is under way
            assert time.monotonic() < deadline, "no trial completed within 60 s"
            time.sleep(0.2)
        cancelled = _cli(stack.url, "cancel", str(job["id"]), "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["status"] == "cancelled"
        again = _cli(stack.url, "cancel", str(job["id"]))
        assert again.returncode == 1
        assert "already cancelled" in again.stderr
        final = client.job(job["id"])
        assert final["status"] == "cancelled"
        assert not any(final["counts"].get(s) for s in ("pending", "queued"))
