"""A trial stops within its grace after its time limit or a cancel, even inside one long step
(issue 16, item 8): the candidate here spends each forward pass in one convolution that runs for a
minute without returning to Python, so only ending its pool process frees the worker. Real
processes: the API, the scheduler and a Celery worker with one pool process, on a Redis of the
test's own and a fresh PostgreSQL database."""
from __future__ import annotations

import pytest

from storage.db import utcnow
from tests.e2e.faults import read_trials
from tests.e2e.test_faults import measured, quick_detection, seconds_since, stack_on  # noqa: F401
from tests.integration.harness import train_spec, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

GRACE_S = 2.0
ONE_LONG_STEP = {  # 1.6 GFLOPs per example in one convolution: minutes per batch of 1024 on a core or two
    "space": {
        "type": "declared",
        "layers": [{"name": "wide", "ops": [{"op": "conv2d", "channels": 512, "kernel": 7}]},
                   {"name": "wider", "ops": [{"op": "conv2d", "channels": 512, "kernel": 7}]}],
        "hyperparameters": {"lr": [0.01, 0.02, 0.05]},
    },
    "strategy": {"type": "random"},
    "evaluator": {"type": "train", "dataset": "digits", "epochs": 1, "batch_size": 1024, "latency_repeats": 1},
    "seed": 1,
}


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCION_STOP_GRACE_SECONDS", str(GRACE_S))


def killed(error: str | None) -> bool:
    return bool(error) and error.endswith(f"; killed after a {GRACE_S:g} s grace inside a step")


def test_a_trial_past_its_time_limit_inside_one_long_step_frees_its_worker_within_the_grace(
    tmp_path, postgres_url, own_redis, measured  # noqa: F811
):
    limit = 20.0  # the candidate is built and measured (seconds on busy cores) before its first long step
    spec = {**ONE_LONG_STEP, "budget": {"max_trials": 2, "max_parallel": 1, "trial_time_limit_s": limit}}
    with stack_on(tmp_path, postgres_url, own_redis.url, workers=1) as (stack, client):
        job_id = client.submit(spec)["id"]
        final = client.wait(job_id, poll_s=0.2, timeout_s=120)
        shown = client.trial(job_id, 0)
        worker_log = stack.log("worker")

    first, second = read_trials(postgres_url, job_id)
    freed_after = seconds_since(first.started_at, second.started_at)
    # Ending the process, and Celery noticing it and starting another: seconds; the step alone: minutes.
    assert freed_after < limit + GRACE_S + 20, f"the next trial waited {freed_after} s for the worker"
    assert final["status"] == "failed" and final["counts"] == {"stopped": 2}, final
    assert shown["status"] == "stopped" and shown["error"] == f"exceeded the trial time limit of {limit:g} s" \
        f"; killed after a {GRACE_S:g} s grace inside a step"
    assert [(t.status, t.attempts) for t in (first, second)] == [("stopped", 1), ("stopped", 1)], \
        "a killed trial's message, back in the queue, ran nothing again"
    assert "ending this worker process" in worker_log
    measured("next_trial_started_after_s", freed_after)


def test_a_cancel_frees_a_worker_stuck_in_one_long_step_within_the_grace(
    tmp_path, postgres_url, own_redis, measured  # noqa: F811
):
    spec = {**ONE_LONG_STEP, "budget": {"max_trials": 1}}
    with stack_on(tmp_path, postgres_url, own_redis.url, workers=1) as (stack, client):
        job_id = client.submit(spec)["id"]
        wait_for(lambda: (t := read_trials(postgres_url, job_id)) and t[0].status == "running"
                 and seconds_since(t[0].started_at, utcnow()) > 20, timeout=90, what="the trial in its long step")
        client.cancel(job_id)
        cancelled_at = utcnow()
        next_id = client.submit(train_spec(epochs=1, budget={"max_trials": 1}))["id"]
        after = client.wait(next_id, poll_s=0.2, timeout_s=120)
        shown = client.trial(job_id, 0)

    [waiting] = read_trials(postgres_url, next_id)
    freed_after = seconds_since(cancelled_at, waiting.started_at)
    assert freed_after < GRACE_S + 20, f"the next job's trial waited {freed_after} s for the worker"
    assert after["status"] == "completed", after
    assert shown["status"] == "cancelled" and shown["error"] == "job cancelled" \
        f"; killed after a {GRACE_S:g} s grace inside a step"
    measured("next_job_started_after_cancel_s", freed_after)
