"""Faults a long search must survive, each over real processes: the uvicorn API, the scheduler and
a Celery worker (two pool processes) on a Redis of the test's own and a fresh PostgreSQL database.

Detection delays are shortened through settings (heartbeat 0.3 s, heartbeat timeout 2 s, lease
2 s, re-send after 2 s) so that each fault is noticed within seconds. Each test records what it
measured (time to detect, time to recover, trials re-run) with ``record_property`` and prints it
on a ``MEASURED`` line; docs/reliability.md reports the figures.
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from client.sdk import ScionClient
from scion.settings import Settings
from storage.db import utcnow
from storage.models import TERMINAL_JOB_STATUSES
from tests.e2e.faults import (
    FaultStack,
    TcpProxy,
    read_epochs,
    read_events,
    read_job,
    read_trials,
)
from tests.integration.harness import one_shot_spec, tabular_spec, train_spec, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

HEARTBEAT_TIMEOUT_S = 2.0
LEASE_S = 2.0
RESEND_AFTER_S = 2.0


@pytest.fixture(autouse=True)
def quick_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings every process of the stack inherits (and this one's Settings reads)."""
    for name, value in {
        "SCION_HEARTBEAT_SECONDS": 0.3,
        "SCION_HEARTBEAT_TIMEOUT_SECONDS": HEARTBEAT_TIMEOUT_S,
        "SCION_LEASE_SECONDS": LEASE_S,
        "SCION_RESEND_AFTER_SECONDS": RESEND_AFTER_S,
    }.items():
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def measured(record_property, request: pytest.FixtureRequest):
    def note(name: str, value: object) -> None:
        record_property(name, value)
        print(f"MEASURED {request.node.name} {name}={value}")

    return note


@contextmanager
def stack_on(tmp_path: Path, database_url: str, broker_url: str, workers: int = 2,
             env: dict[str, str] | None = None) -> Iterator[tuple[FaultStack, ScionClient]]:
    settings = Settings(home=tmp_path / "home", database_url=database_url, broker_url=broker_url)
    with FaultStack(settings, workers=workers, env=env) as stack, ScionClient(stack.url) as client:
        yield stack, client


def seconds_since(moment: datetime, later: datetime) -> float:
    return round((later - moment).total_seconds(), 2)


def each_trial_once(db_url: str, job_id: int, n: int) -> list:
    """The job's trials, checked to be its ``n`` numbers each stored once (none dropped, none
    duplicated) and each told to the strategy: what every fault must leave behind."""
    trials = read_trials(db_url, job_id)
    assert [t.number for t in trials] == list(range(n)), "a trial was dropped or stored twice"
    assert all(t.told for t in trials), "a finished trial was never told to the strategy"
    return trials


def has_trained(db_url: str, trial) -> bool:
    """The trial's current attempt has reported at least one epoch: it is mid-training."""
    return any(m.attempt == trial.attempts for m in read_epochs(db_url, trial.id))


# ---------------------------------------------------------------- 1. a worker killed mid-trial


def test_worker_killed_mid_trial_is_rerun_then_failed_and_every_trial_counted_once(
    tmp_path, postgres_url, own_redis, measured
):
    kills_wanted = {0: 2, 1: 1}  # trial 0 dies on both its attempts, trial 1 on its first only
    spec = train_spec(epochs=8, budget={"max_trials": 3, "max_parallel": 2, "max_attempts": 2})
    kills: list[tuple[int, int, datetime]] = []  # (trial number, attempt, when)

    def kill_mid_trial(job_id: int) -> bool:
        done = Counter(number for number, _, _ in kills)
        for trial in read_trials(postgres_url, job_id):
            if (trial.status != "running" or done[trial.number] >= kills_wanted.get(trial.number, 0)
                    or (trial.number, trial.attempts) in {(n, a) for n, a, _ in kills}
                    or not has_trained(postgres_url, trial)):
                continue
            try:
                stack.kill_pool_process(trial.worker)
            except ProcessLookupError:  # it finished meanwhile
                continue
            kills.append((trial.number, trial.attempts, utcnow()))
        return read_job(postgres_url, job_id).status in TERMINAL_JOB_STATUSES

    with stack_on(tmp_path, postgres_url, own_redis.url) as (stack, client):
        job_id = client.submit(spec)["id"]
        wait_for(lambda: kill_mid_trial(job_id), timeout=150, what="the job to end", interval=0.1)
        job = client.job(job_id)
        failed = client.trial(job_id, 0)
        history = [h["step"] for h in client.trial(job_id, 1)["history"]]

    assert sorted((n, a) for n, a, _ in kills) == [(0, 1), (0, 2), (1, 1)]
    assert job["status"] == "completed", job
    assert job["counts"] == {"failed": 1, "completed": 2}
    trials = each_trial_once(postgres_url, job_id, 3)
    assert [(t.status, t.attempts) for t in trials] == [("failed", 2), ("completed", 2), ("completed", 1)]
    assert "worker lost 2 times" in failed["error"] and "no attempts left" in failed["error"]
    before = [m.step for m in read_epochs(postgres_url, trials[1].id) if m.attempt == 1]
    rerun = [m.step for m in read_epochs(postgres_url, trials[1].id) if m.attempt == 2]
    # The re-run continued from the checkpoint of the last epoch trained (saved before it is reported):
    # the epoch killed part way trained again, nothing before it.
    assert rerun == list(range(rerun[0], 9)) and before[-1] < rerun[0] <= before[-1] + 2, (before, rerun)
    assert history == list(range(1, 9)), "the trial's history: each epoch once, across its attempts"

    lost = read_events(postgres_url, job_id, "trial_lost")
    assert len(lost) == 3
    detections = []
    for number, attempt, when in kills:
        event = [e for e in lost if e.message.startswith(f"trial {number} ")][attempt - 1]
        detections.append(seconds_since(when, event.created_at))
    assert all(0 < d < HEARTBEAT_TIMEOUT_S + 3 for d in detections), detections
    measured("detected_lost_after_s", detections)
    measured("rerun_started_after_s", seconds_since(next(w for n, _, w in kills if n == 1), trials[1].started_at))
    measured("trials_rerun", sum(t.attempts - 1 for t in trials))


# ---------------------------------------------------------------- 2. the scheduler killed mid-job


@pytest.mark.parametrize("replacement", ["restarted", "standby"])
def test_scheduler_killed_mid_job_is_taken_over_and_the_search_resumes(
    replacement, tmp_path, postgres_url, own_redis, nb201_csv, measured
):
    n = 150
    spec = tabular_spec(nb201_csv, max_trials=n, max_parallel=4)
    with stack_on(tmp_path, postgres_url, own_redis.url) as (stack, client):
        if replacement == "standby":
            stack.start_scheduler("standby")
        job_id = client.submit(spec)["id"]
        wait_for(lambda: client.job(job_id)["counts"].get("completed", 0) >= 30, timeout=60,
                 what="30 trials", interval=0.05)
        holder = read_job(postgres_url, job_id).lease_owner
        pid = int(holder.split(":")[1])
        assert pid in {proc.pid for name, proc in stack.procs if name in ("scheduler", "standby")}
        os.kill(pid, signal.SIGKILL)
        killed_at, created_at_kill = utcnow(), read_job(postgres_url, job_id).trials_created
        if replacement == "restarted":
            stack.start_scheduler("restarted")
        owner = wait_for(lambda: (o := read_job(postgres_url, job_id).lease_owner) not in (None, holder) and o,
                         timeout=30, what="another scheduler to take the job", interval=0.05)
        taken_after = seconds_since(killed_at, utcnow())
        final = client.wait(job_id, poll_s=0.2, timeout_s=120)

    assert final["status"] == "completed", final
    assert final["counts"] == {"completed": n}
    trials = each_trial_once(postgres_url, job_id, n)
    assert all(t.attempts == 1 for t in trials), "no worker was lost: no trial ran twice"
    job = read_job(postgres_url, job_id)
    # The strategy continued from its saved state: its count of proposals runs on from before
    # the kill (a strategy started afresh would have counted only what it proposed itself).
    assert job.strategy_state["asked"] == n
    assert len(job.strategy_state["seen"]) == len({t.arch_key for t in trials})
    assert 10 <= created_at_kill < n
    assert taken_after < LEASE_S + 5
    new_pid = int(owner.split(":")[1])
    assert new_pid != pid
    measured("taken_over_after_s", taken_after)
    measured("trials_before_kill", created_at_kill)
    measured("trials_rerun", sum(t.attempts - 1 for t in trials))


# ---------------------------------------------------------------- 3. Redis restarted


def test_redis_restart_loses_queued_messages_and_the_scheduler_sends_them_again(
    tmp_path, postgres_url, own_redis, measured
):
    spec = train_spec(epochs=8, budget={"max_trials": 6, "max_parallel": 4})
    # Messages waiting in the broker are what a restart loses; a job alone queues no more than the
    # workers' slots under its fair share, so the share is off here to leave two waiting.
    with stack_on(tmp_path, postgres_url, own_redis.url, env={"SCION_SCHEDULER_FAIR_SHARE": "false"}) as (
            stack, client):
        job_id = client.submit(spec)["id"]

        def two_training_two_waiting() -> list[int] | None:
            trials = read_trials(postgres_url, job_id)
            running = [t for t in trials if t.status == "running" and has_trained(postgres_url, t)]
            queued = [t.number for t in trials if t.status == "queued"]
            return queued if len(running) == 2 and len(queued) == 2 else None

        queued = wait_for(two_training_two_waiting, timeout=60, what="2 trials training and 2 queued", interval=0.05)
        own_redis.kill()  # without persistence: the queued trials' messages are gone
        time.sleep(1.0)
        own_redis.start()
        restarted_at = utcnow()
        final = client.wait(job_id, poll_s=0.2, timeout_s=120)

    assert final["status"] == "completed", final
    assert final["counts"] == {"completed": 6}
    trials = each_trial_once(postgres_url, job_id, 6)
    assert all(t.attempts == 1 for t in trials), "the running trials lived through the restart; none ran twice"
    # Only the re-sends after the restart count (one may come earlier, for messages a worker held
    # while its pool processes were still starting).
    resent = [e for e in read_events(postgres_url, job_id, "trials_resent") if e.created_at > restarted_at]
    assert resent and all(f"{n}" in resent[0].message for n in queued), [e.message for e in resent]
    measured("resent_after_restart_s", seconds_since(restarted_at, resent[0].created_at))
    measured("lost_trials_started_after_restart_s",
             max(seconds_since(restarted_at, trials[n].started_at) for n in queued))
    measured("trials_resent", queued)
    measured("trials_rerun", sum(t.attempts - 1 for t in trials))


# ---------------------------------------------------------------- 4. the database unreachable


def test_database_outage_is_503_for_the_api_and_the_job_carries_on(tmp_path, postgres_url, own_redis, measured):
    outage_s = HEARTBEAT_TIMEOUT_S + 2  # longer than the heartbeat timeout: every heartbeat goes stale
    direct = make_url(postgres_url)
    proxy = TcpProxy((direct.host, direct.port or 5432))
    proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
    spec = train_spec(epochs=6, budget={"max_trials": 6, "max_parallel": 2})
    answers: list[httpx.Response] = []
    try:
        with stack_on(tmp_path, proxied, own_redis.url) as (stack, client):
            job_id = client.submit(spec)["id"]

            def mid_job() -> bool:
                trials = read_trials(postgres_url, job_id)
                training = [t for t in trials if t.status == "running" and has_trained(postgres_url, t)]
                return any(t.status == "completed" for t in trials) and len(training) == 2

            wait_for(mid_job, timeout=90, what="a finished trial and two training", interval=0.05)
            proxy.cut()
            cut_at = time.monotonic()
            with httpx.Client(base_url=stack.url, timeout=10) as http:
                while time.monotonic() - cut_at < outage_s:
                    answers.append(http.get(f"/v1/jobs/{job_id}"))
                    time.sleep(0.25)
                proxy.restore()
                restored_at = time.monotonic()
                wait_for(lambda: http.get(f"/v1/jobs/{job_id}").status_code == 200, timeout=30,
                         what="the API to answer again", interval=0.05)
                api_back = round(time.monotonic() - restored_at, 2)
            final = client.wait(job_id, poll_s=0.2, timeout_s=120)
            worker_log, scheduler_log = stack.log("worker"), stack.log("scheduler")
    finally:
        proxy.close()

    assert answers and all(r.status_code == 503 for r in answers), [(r.status_code, r.text) for r in answers]
    for r in answers:
        assert r.json() == {"detail": "the database is unavailable right now; retry in a few seconds"}
        assert r.headers["retry-after"] and "Traceback" not in r.text
    assert final["status"] == "completed", final
    assert final["counts"] == {"completed": 6}
    trials = each_trial_once(postgres_url, job_id, 6)
    assert all(t.attempts == 1 for t in trials), "an outage longer than the heartbeat timeout re-ran no trial"
    assert all([m.step for m in read_epochs(postgres_url, t.id)] == list(range(1, 7)) for t in trials)
    assert "database unreachable while" in worker_log, "the outage reached a training worker"
    assert "database unreachable" in scheduler_log
    measured("outage_s", outage_s)
    measured("api_503_answers", len(answers))
    measured("api_answering_after_restore_s", api_back)
    measured("worker_retries", worker_log.count("database unreachable while"))
    measured("trials_rerun", sum(t.attempts - 1 for t in trials))


# ---------------------------------------------------------------- 5. a trial over its time limit


def test_trial_over_its_time_limit_is_stopped_and_recorded_as_such(tmp_path, postgres_url, own_redis, measured):
    limit = 1.5
    spec = train_spec(epochs=200, budget={"max_trials": 2, "max_parallel": 2, "trial_time_limit_s": limit})
    with stack_on(tmp_path, postgres_url, own_redis.url) as (stack, client):
        job_id = client.submit(spec)["id"]
        final = client.wait(job_id, poll_s=0.2, timeout_s=90)
        ended = time.monotonic()
        wait_for(lambda: stack.log("worker").count(") stopped in ") == 2, timeout=15,
                 what="both workers to end their runs", interval=0.05)
        workers_free_after = round(time.monotonic() - ended, 2)
        shown = client.trial(job_id, 0)

    assert final["status"] == "failed" and "no trial completed" in final["error"], final
    assert final["counts"] == {"stopped": 2}
    assert shown["status"] == "stopped" and shown["error"] == f"exceeded the trial time limit of {limit:g} s"
    ran = []
    for trial in read_trials(postgres_url, job_id):
        assert trial.status == "stopped" and trial.attempts == 1
        ran.append(seconds_since(trial.started_at, trial.finished_at))
        epochs = read_epochs(postgres_url, trial.id)
        late = [m for m in epochs if m.created_at > trial.finished_at]
        assert len(late) <= 1, "the worker trained on for more than one epoch after the stop"
        assert len(epochs) < 200
    assert all(limit <= r < limit + 2 for r in ran), ran
    measured("trial_ran_s", ran)
    measured("workers_free_after_job_end_s", workers_free_after)


# ---------------------------------------------------------------- 6. a worker killed while training a supernet


def test_worker_killed_mid_supernet_training_is_replaced_and_training_resumes_from_the_last_epoch(
    tmp_path, postgres_url, own_redis, measured
):
    planned = 8
    spec = one_shot_spec({"type": "spos", "epochs": planned, "batch_size": 16}, max_trials=2, retrain_top_k=1,
                         strategy={"type": "random"})
    killed: list[tuple[int, datetime]] = []  # (epochs reported before the kill, when)

    def kill_mid_training(job_id: int) -> bool:
        trials = read_trials(postgres_url, job_id)
        if not killed and trials and trials[0].status == "running" and trials[0].attempts == 1:
            reported = [m.step for m in read_epochs(postgres_url, trials[0].id)]
            if len(reported) >= 2:
                stack.kill_pool_process(trials[0].worker)
                killed.append((max(reported), utcnow()))
        return read_job(postgres_url, job_id).status in TERMINAL_JOB_STATUSES

    with stack_on(tmp_path, postgres_url, own_redis.url) as (stack, client):
        job_id = client.submit(spec)["id"]
        wait_for(lambda: kill_mid_training(job_id), timeout=240, what="the job to end", interval=0.05)
        job = client.job(job_id)
        history = client.trial(job_id, 0)["history"]

    assert job["status"] == "completed", job
    [(before_kill, when)] = killed
    supernet = read_trials(postgres_url, job_id)[0]
    assert supernet.phase == "supernet" and supernet.status == "completed" and supernet.attempts == 2
    epochs = read_epochs(postgres_url, supernet.id)
    first = [m.step for m in epochs if m.attempt == 1]
    second = [m.step for m in epochs if m.attempt == 2]
    assert first == list(range(1, before_kill + 1)) or first == list(range(1, before_kill + 2)), first
    assert second == list(range(first[-1] + 1, planned + 1)), "the replacement resumed from the last checkpoint"
    assert len(epochs) == planned, "every epoch reported once: the killed one trained again, nothing else"
    assert [h["step"] for h in history] == list(range(1, planned + 1))
    resumed = next(m for m in epochs if m.attempt == 2)
    measured("supernet_epochs_reported_before_kill", first[-1])
    measured("supernet_epochs_trained_in_all", f"{len(epochs)} + 1 interrupted (planned {planned})")
    measured("resumed_epoch_reported_after_s", seconds_since(when, resumed.created_at))
