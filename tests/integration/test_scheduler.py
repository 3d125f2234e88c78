"""The real scheduler and the real worker code path, in-process and without Celery.

``Scheduler(settings, send=...)`` hands its messages to ``Broker``, which stands in for Celery:
it records every message and delivers it to ``worker.runner.run_trials`` either at once, in
send order (deterministic), or on a pool of two threads (two workers). Every test runs on a
fresh SQLite file and a fresh PostgreSQL database and asserts what a user of the service would
notice: job and trial states, results, events, and how many messages went out.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sqlalchemy import update

from scheduler.loop import Scheduler
from scion.spec import JobSpec
from spaces.nb201 import NB201Space
from storage import repository as repo
from storage.db import session_scope, utcnow
from storage.models import Job, Trial
from tests.integration.harness import (
    drive,
    epochs_recorded,
    expire_lease,
    get_events,
    get_job,
    get_trials,
    in_flight,
    lease_is_valid,
    make_job,
    reference_arch_keys,
    repo_counts,
    tabular_spec,
    train_spec,
    wait_for,
)
from worker.evaluators.nb201_table import load_table
from worker.evaluators.tabular import TabularEvaluator
from worker.evaluators.train import TrainEvaluator
from worker.runner import run_trials


def run_one(trial_id: int) -> str:
    """What a worker does with a message carrying this one trial: its outcome, or "skipped"."""
    return run_trials([trial_id], "cpu").get(trial_id, "skipped")

# ---------------------------------------------------------------- 1. a whole search


def test_tabular_search_completes_within_parallel_budget(settings_env, nb201_csv, make_broker):
    max_trials, max_parallel = 30, 4
    job_id = make_job(tabular_spec(nb201_csv, max_trials=max_trials, max_parallel=max_parallel, seed=5))
    broker = make_broker(threads=2)
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    observed: list[int] = []

    def count_in_flight() -> None:
        observed.append(in_flight(job_id))
        assert observed[-1] <= max_parallel, f"{observed[-1]} trials in flight, max_parallel is {max_parallel}"

    job = drive(scheduler, broker, job_id, after_step=count_in_flight)

    assert job.status == "completed", job.error
    assert job.error is None
    assert max(observed) == max_parallel  # the slots were used, never exceeded
    trials = get_trials(job_id)
    assert [t.number for t in trials] == list(range(max_trials))
    assert job.trials_created == max_trials
    assert all(t.status == "completed" and t.told for t in trials), [(t.number, t.status, t.told) for t in trials]
    assert all(t.attempts == 1 for t in trials)
    assert len({t.arch_key for t in trials}) == max_trials  # no architecture evaluated twice
    for t in trials:
        assert t.objective == t.metrics["val_acc_12ep"]
        assert "test_acc_200ep" in t.metrics
    best = max(t.metrics["val_acc_12ep"] for t in trials)
    assert job.best_objective == pytest.approx(best)
    assert trials[job.best_trial_number].objective == pytest.approx(best)
    # every trial went to the workers exactly once, on the tabular evaluator's queue
    assert broker.sends_per_trial() == Counter({t.id: 1 for t in trials})
    assert {queue for _, queue in broker.sent} == {"cpu"}
    assert all(outcomes == ["completed"] for outcomes in broker.outcomes.values())
    # the strategy's state is in the database, with every result told
    state = job.strategy_state
    assert state is not None and state["asked"] == max_trials
    assert len(state["seen"]) == max_trials and len(state["population"]) == 10
    # the scheduler let go of the finished job, and said so
    assert job_id not in scheduler.runs
    assert job.lease_owner is None and job.finished_at is not None
    finished = get_events(job_id, "completed")
    assert len(finished) == 1 and "budget spent" in finished[0].message
    assert [e.kind for e in get_events(job_id)][:2] == ["submitted", "started"]


# ---------------------------------------------------------------- 2. restart


@pytest.mark.parametrize("checkpoint_s", [0.0, 3600.0], ids=["state-saved-every-pass", "calls-replayed"])
def test_restarted_scheduler_continues_the_search(settings_env, nb201_csv, make_broker, checkpoint_s):
    settings = settings_env.model_copy(update={"strategy_checkpoint_seconds": checkpoint_s})
    spec = tabular_spec(nb201_csv, max_trials=24, max_parallel=3, population=8, sample=3, seed=11)
    reference = reference_arch_keys(settings, spec, make_broker())

    job_id = make_job(spec, name="restarted")
    broker = make_broker()  # the broker outlives the schedulers: messages sent by A still arrive
    a = Scheduler(settings, send=broker.send, owner="scheduler-a")
    # A runs past the random warm-up (8) into the mutation phase, then dies right after a pass,
    # with that pass's messages not yet delivered and its lease still held.
    halfway = drive(a, broker, job_id, poll=0, until=lambda job: job.trials_created >= 12)
    assert halfway.status == "running" and halfway.lease_owner == "scheduler-a"
    with session_scope() as session:
        calls = repo.strategy_calls(session, job_id=job_id)
    if checkpoint_s:  # A never saved its strategy whole: B must replay every call A made
        assert halfway.strategy_state is None and sum("ask" in c for c in calls) == halfway.trials_created
    else:
        assert halfway.strategy_state["asked"] == halfway.trials_created and not calls
    del a

    b = Scheduler(settings, send=broker.send, owner="scheduler-b")
    b.step()
    assert job_id not in b.runs, "B took a job whose lease was still valid"
    assert get_job(job_id).trials_created == halfway.trials_created

    expire_lease(job_id)
    job = drive(b, broker, job_id, poll=0)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.number for t in trials] == list(range(24))
    assert all(t.status == "completed" and t.told for t in trials)
    assert broker.sends_per_trial() == Counter({t.id: 1 for t in trials})
    # B resumed A's strategy (population, generator, seen set) rather than starting afresh
    assert [t.arch_key for t in trials] == reference


# ---------------------------------------------------------------- 3. two schedulers


def test_two_schedulers_never_drive_the_same_job(settings_env, nb201_csv, make_broker):
    spec = tabular_spec(nb201_csv, max_trials=24, max_parallel=3, population=6, sample=2, seed=23)
    reference = reference_arch_keys(settings_env, spec, make_broker())

    job_id = make_job(spec, name="contested")
    broker = make_broker()
    sent_by: Counter[str] = Counter()

    def sender(owner: str):
        def send(messages: list[list[int]], queue: str) -> None:
            sent_by[owner] += len(messages)
            broker.send(messages, queue)
        return send

    a = Scheduler(settings_env, send=sender("a"), owner="a")
    b = Scheduler(settings_env, send=sender("b"), owner="b")
    holders: list[str] = []

    def step(scheduler: Scheduler) -> Job:
        scheduler.step()
        job = get_job(job_id)
        if job.status == "running":
            assert lease_is_valid(job)
            holds = job.lease_owner == scheduler.owner
            assert (job_id in scheduler.runs) == holds, (
                f"after its pass, {scheduler.owner} {'holds' if holds else 'does not hold'} the lease "
                f"but {'does not drive' if holds else 'drives'} the job"
            )
            holders.append(job.lease_owner)
        broker.deliver()
        return job

    deadline = time.monotonic() + 60
    # Phase 1: both step alternately; whoever took the lease first keeps it.
    while get_job(job_id).trials_created < 9:
        step(a)
        job = step(b)
        assert job_id not in b.runs
        assert time.monotonic() < deadline
    assert set(holders) == {"a"}

    # Phase 2: A stalls (a long pause, a partition) beyond its lease; B takes over.
    expire_lease(job_id)
    while get_job(job_id).trials_created < 18:
        step(b)
        assert time.monotonic() < deadline
    assert holders[-1] == "b"
    assert job_id in a.runs  # A has not noticed yet: it has not run a pass since

    # Phase 3: B stalls too; A wakes up, takes the lease back and must continue from what the
    # database says (B's trials and B's strategy state), not from what A remembers.
    expire_lease(job_id)
    while get_job(job_id).status == "running":
        step(a)
        step(b)
        assert time.monotonic() < deadline
    assert holders[-1] == "a"

    job = get_job(job_id)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.number for t in trials] == list(range(24))
    assert broker.sends_per_trial() == Counter({t.id: 1 for t in trials})
    assert sent_by["a"] > 0 and sent_by["b"] > 0
    assert len({t.arch_key for t in trials}) == 24
    assert [t.arch_key for t in trials] == reference
    assert job_id not in a.runs and job_id not in b.runs


# ---------------------------------------------------------------- 4. lost worker


@pytest.mark.parametrize("max_attempts", [3, 1])
def test_lost_worker_is_requeued_then_failed(settings_env, nb201_csv, make_broker, max_attempts):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=4, max_parallel=2, max_attempts=max_attempts))
    broker = make_broker()
    broker.hold = True
    settings = settings_env.model_copy(update={"heartbeat_timeout_seconds": 5.0})
    scheduler = Scheduler(settings, send=broker.send, owner="only")
    scheduler.step()
    lost, alive = get_trials(job_id)
    # Two workers pick the messages up; the first dies (its heartbeat stops), the second lives.
    for trial, worker in ((lost, "doomed-worker:1"), (alive, "live-worker:2")):
        broker.take(trial.id)
        with session_scope() as session:
            assert repo.claim_trials(session, trial_ids=[trial.id], worker=worker)[0].attempts == 1
    with session_scope() as session:
        session.execute(update(Trial).where(Trial.id == lost.id)
                        .values(heartbeat_at=utcnow() - timedelta(seconds=30)))

    scheduler.step()

    lost_now = next(t for t in get_trials(job_id) if t.id == lost.id)
    alive_now = next(t for t in get_trials(job_id) if t.id == alive.id)
    assert alive_now.status == "running"  # a fresh heartbeat is left alone
    events = get_events(job_id, "trial_lost")
    assert len(events) == 1 and "trial 0" in events[0].message and "doomed-worker:1" in events[0].message
    if max_attempts == 1:
        assert lost_now.status == "failed"
        assert "lost" in lost_now.error and "doomed-worker:1" in lost_now.error
        assert broker.sends_per_trial()[lost.id] == 1
        assert any("trial 0 failed" in e.message for e in get_events(job_id, "trial_failed"))
    else:
        assert lost_now.status == "queued"  # back to pending and sent again in the same pass
        assert broker.sends_per_trial()[lost.id] == 2
    # The dead worker's attempt can no longer write a result.
    with session_scope() as session:
        late = dict(trial_id=lost.id, attempt=1, status="completed", metrics={"val_acc_12ep": 99.9}, objective=99.9)
        assert not repo.finish_trials(session, outcomes=[late])
    # The live worker finishes normally.
    with session_scope() as session:
        assert repo.finish_trials(session, outcomes=[dict(trial_id=alive.id, attempt=1, status="completed",
                                                         metrics={"val_acc_12ep": 50.0}, objective=50.0, score=50.0)])

    broker.hold = False
    job = drive(scheduler, broker, job_id, poll=0)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    retried = trials[0]
    if max_attempts == 1:
        assert retried.status == "failed" and retried.attempts == 1
        assert [t.status for t in trials[1:]] == ["completed"] * 3
    else:
        assert retried.status == "completed" and retried.attempts == 2
        assert retried.objective != 99.9
        assert broker.outcomes[lost.id] == ["completed"]
        assert all(t.status == "completed" for t in trials)
    assert all(t.told for t in trials)
    assert in_flight(job_id) == 0


# ---------------------------------------------------------------- 5. failing candidates


def test_failing_candidate_fails_alone(settings_env, make_broker, monkeypatch):
    job_id = make_job(train_spec(budget={"max_trials": 3, "max_parallel": 3}))
    broker = make_broker()
    broker.hold = True
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    trials = get_trials(job_id)
    assert len(trials) == 3 and {q for _, q in broker.sent} == {"gpu"}
    crashes, nans = trials[1].id, trials[2].id
    original = TrainEvaluator.evaluate

    def flaky(self, space, arch, ctx):
        if ctx.trial_id == crashes:
            raise RuntimeError("simulated bug in this candidate")
        metrics = original(self, space, arch, ctx)
        if ctx.trial_id == nans:
            metrics["val_acc"] = float("nan")
        return metrics

    monkeypatch.setattr(TrainEvaluator, "evaluate", flaky)
    broker.hold = False
    job = drive(scheduler, broker, job_id, poll=0, timeout=120)

    assert job.status == "completed", job.error
    ok, crashed, nan = get_trials(job_id)
    assert ok.status == "completed" and 0 <= ok.objective <= 100
    assert {"params", "flops", "latency_ms", "train_seconds", "test_acc"} <= set(ok.metrics)
    assert crashed.status == "failed"
    assert "RuntimeError" in crashed.error and "simulated bug in this candidate" in crashed.error
    assert nan.status == "failed" and "NaN" in nan.error and nan.objective is None
    assert nan.metrics["val_acc"] is None and nan.metrics["params"] > 0  # stored on PostgreSQL too
    assert all(t.told for t in (ok, crashed, nan))
    assert job.best_trial_number == 0 and job.best_objective == pytest.approx(ok.objective)
    failed = [e.message for e in get_events(job_id, "trial_failed")]
    assert sorted(m.split(":")[0] for m in failed) == ["trial 1 failed", "trial 2 failed"]


def test_a_broken_candidates_error_says_what_failed_and_where_and_the_log_keeps_the_traceback(
        settings_env, make_broker, monkeypatch, caplog, tmp_path):
    """A network that breaks inside torch in its first forward pass, and one whose building opens a
    missing file by its absolute path: each trial's error is the exception's type and message and the
    part of the spec it came from, with no frame and no server path; the worker's log has the frames."""
    missing = tmp_path / "data" / "missing-weights.bin"
    broken: list[str] = []

    def build(self, arch, input_shape, num_classes):
        broken.append(self.key(arch))
        if len(broken) == 1:
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(7, num_classes))  # 64 features come in
        return torch.load(missing)

    monkeypatch.setattr(NB201Space, "build", build)
    job_id = make_job(train_spec(budget={"max_trials": 2, "max_parallel": 1}))
    broker = make_broker()
    drive(Scheduler(settings_env, send=broker.send, owner="only"), broker, job_id, poll=0, timeout=120)

    errors = {t.arch_key: t.error for t in get_trials(job_id) if t.status == "failed"}
    assert sorted(errors) == sorted(broken), (errors, broken)
    forward, opened = (errors[key] for key in broken)
    assert forward.startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied"), forward
    assert forward.endswith("(in the job's space: running this architecture's network to measure its costs)")
    assert opened == ("FileNotFoundError: [Errno 2] No such file or directory: 'missing-weights.bin' "
                      "(in the job's space: building this architecture's network)"), opened
    repo_root = str(Path(__file__).resolve().parents[2])
    for error in errors.values():
        for leak in ("/site-packages/", 'File "', "Traceback", repo_root, str(tmp_path)):
            assert leak not in error, (leak, error)
    logged = [r for r in caplog.records if r.name == "worker.runner" and r.exc_info]
    tracebacks = "\n".join(logging.Formatter().formatException(r.exc_info) for r in logged)
    assert len(logged) == 2 and 'File "' in tracebacks and "/site-packages/torch/" in tracebacks
    assert "mat1 and mat2" in tracebacks and str(missing) in tracebacks


@pytest.mark.parametrize("guarded", [True, False], ids=["evaluator-guards", "worker-catches"])
def test_a_candidate_out_of_memory_fails_alone(settings_env, make_broker, monkeypatch, guarded):
    """A candidate whose forward runs out of accelerator memory (torch's OutOfMemoryError, known by
    its type) fails with an out-of-memory error and the job goes on: the train evaluator turns it
    into a failure itself (worker.training.trainer.run_oom_guarded); for an evaluator that does
    not, the worker does."""
    import torch

    from spaces.nb201 import NB201Space
    from worker.training import trainer

    job_id = make_job(train_spec(budget={"max_trials": 2, "max_parallel": 2}))
    broker = make_broker()
    broker.hold = True
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    greedy = get_trials(job_id)[0]
    out_of_memory = torch.cuda.OutOfMemoryError if guarded else torch.OutOfMemoryError
    build = NB201Space.build

    class Greedy(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise out_of_memory("CUDA out of memory. Tried to allocate 1 TiB")

    def build_greedily(self, arch, input_shape, num_classes):
        net = build(self, arch, input_shape, num_classes)
        return Greedy(net) if self.key(arch) == greedy.arch_key else net

    monkeypatch.setattr(NB201Space, "build", build_greedily)
    if not guarded:
        monkeypatch.setattr(trainer, "run_oom_guarded", lambda fn, *args, **kwargs: fn(*args, **kwargs))
    broker.hold = False
    job = drive(scheduler, broker, job_id, poll=0, timeout=120)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.status for t in trials] == ["failed", "completed"], [(t.status, t.error) for t in trials]
    assert trials[0].error == "out of memory: CUDA out of memory. Tried to allocate 1 TiB"
    assert [e.message.split(":")[0] for e in get_events(job_id, "trial_failed")] == ["trial 0 failed"]


def test_a_nan_loss_fails_every_trial_and_the_job(settings_env, make_broker):
    with pytest.raises(ValidationError, match="lr"):
        JobSpec.model_validate(train_spec(lr=1e30))
    # Inputs holding an overflowed value make the loss NaN from the first step, a real NaN whatever
    # the network (the settings that once blew the weights up are refused by the spec's bounds now).
    data = settings_env.resolved_home() / "data"
    data.mkdir(parents=True)
    x = np.random.default_rng(0).normal(size=(60, 1, 8, 8)).astype(np.float32)
    x[::7, 0, 0, 0] = np.inf
    np.savez(data / "overflowed.npz", x=x, y=np.arange(60) % 3)
    job_id = make_job(train_spec(dataset={"type": "npz", "path": "overflowed.npz"},
                                 budget={"max_trials": 2, "max_parallel": 2}))
    broker = make_broker()
    job = drive(Scheduler(settings_env, send=broker.send, owner="only"), broker, job_id, poll=0,
                timeout=120)

    trials = get_trials(job_id)
    assert len(trials) == 2
    assert all(t.status == "failed" and "NaN" in t.error for t in trials), [(t.status, t.error) for t in trials]
    assert job.status == "failed"
    assert job.error and "no trial completed" in job.error
    assert job.best_trial_number is None and job.best_objective is None
    assert len(get_events(job_id, "trial_failed")) == 2


# ---------------------------------------------------------------- 6. cancel


def test_cancel_stops_a_running_trial_within_an_epoch(settings_env, make_broker):
    epochs = 30
    job_id = make_job(train_spec(epochs=epochs, budget={"max_trials": 1}))
    broker = make_broker()
    broker.hold = True
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    assert job_id in scheduler.runs
    (trial,) = get_trials(job_id)

    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(status=run_one(trial.id)), daemon=True)
    worker.start()
    first = wait_for(lambda: epochs_recorded(trial.id), timeout=90, what="the first epoch")[0]
    epoch_seconds = first.metrics["epoch_seconds"]

    with session_scope() as session:
        repo.cancel_job(session, job_id=job_id)
    cancelled_at = time.monotonic()
    worker.join(timeout=max(30.0, 10 * epoch_seconds))
    took = time.monotonic() - cancelled_at

    assert not worker.is_alive(), "the worker kept training after the job was cancelled"
    assert result["status"] == "stopped"
    assert took < 3 * epoch_seconds + 2.0, f"stopped {took:.2f} s after the cancel (epoch: {epoch_seconds:.2f} s)"
    assert len(epochs_recorded(trial.id)) <= 3 < epochs
    (trial,) = get_trials(job_id)
    assert trial.status == "cancelled" and trial.error == "job cancelled"  # the worker did not overwrite it
    assert trial.metrics is None
    assert repo_counts(job_id) == {"cancelled": 1}

    scheduler.step()
    assert job_id not in scheduler.runs
    job = get_job(job_id)
    assert job.status == "cancelled" and job.trials_created == 1
    assert len(get_events(job_id, "cancelled")) == 1


def test_a_job_cancelled_during_a_pass_gets_no_new_trials(settings_env, nb201_csv, make_broker, monkeypatch):
    """The cancel lands after the pass read the job (running, held) and before it wrote: the pass's
    new trials are rolled back instead of being written and sent for a cancelled job."""
    job_id = make_job(tabular_spec(nb201_csv, max_trials=20, max_parallel=4))
    broker = make_broker()
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    broker.deliver()  # four trials done: the next pass has room for four more
    read_activity = repo.job_activity

    def read_then_cancel(db, *, job_ids):
        rows = read_activity(db, job_ids=job_ids)
        with session_scope() as session:
            repo.cancel_job(session, job_id=job_id)
        return rows

    monkeypatch.setattr(repo, "job_activity", read_then_cancel)
    scheduler.step(leases=False)  # a pass woken by finished trials: the leases were taken before

    assert job_id not in scheduler.runs
    job = get_job(job_id)
    assert job.status == "cancelled" and job.trials_created == 4
    assert [t.number for t in get_trials(job_id)] == [0, 1, 2, 3]
    assert len(broker.sent) == 4


# ---------------------------------------------------------------- 7. time limit


def test_time_limit_ends_the_job_and_cancels_in_flight_trials(settings_env, nb201_csv, make_broker):
    limit = 2.0
    load_table(nb201_csv)  # parse the table now, outside the job's clock
    job_id = make_job(tabular_spec(nb201_csv, max_trials=10_000, max_parallel=4, time_limit_s=limit))
    broker = make_broker()
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    broker.deliver()  # the first four trials are evaluated ...
    broker.hold = True  # ... then the workers go away
    scheduler.step()
    slow = get_trials(job_id)[4]  # one of the new trials is picked up by a worker that never returns
    broker.take(slow.id)
    with session_scope() as session:
        attempt = repo.claim_trials(session, trial_ids=[slow.id], worker="slow-worker:1")[0].attempts
    assert get_job(job_id).status == "running", "setting up took longer than the job's time limit"

    job = drive(scheduler, broker, job_id, timeout=limit + 15, poll=0.05)

    assert job.status == "completed", job.error
    assert limit <= (job.finished_at - job.started_at).total_seconds() < limit + 10
    trials = get_trials(job_id)
    assert len(trials) == job.trials_created == 8
    assert [t.status for t in trials] == ["completed"] * 4 + ["cancelled"] * 4
    assert all(t.error == "job time limit reached" for t in trials[4:])
    assert in_flight(job_id) == 0
    assert job.best_objective == pytest.approx(max(t.objective for t in trials[:4]))
    assert any("time limit" in e.message for e in get_events(job_id, "completed"))
    # The slow worker's late result is ignored.
    with session_scope() as session:
        assert not repo.finish_trials(session, outcomes=[dict(trial_id=slow.id, attempt=attempt, status="completed",
                                                             metrics={"val_acc_12ep": 1.0}, objective=1.0, score=1.0)])
    assert get_trials(job_id)[4].status == "cancelled"
    assert job_id not in scheduler.runs


def test_time_limit_without_any_result_fails_the_job(settings_env, nb201_csv, make_broker, caplog):
    caplog.set_level(logging.INFO, logger="scheduler")
    job_id = make_job(tabular_spec(nb201_csv, max_trials=10_000, max_parallel=2, time_limit_s=1.0))
    broker = make_broker()
    broker.hold = True  # no worker ever runs anything
    job = drive(Scheduler(settings_env, send=broker.send, owner="only"), broker, job_id,
                timeout=15, poll=0.05)

    assert job.status == "failed" and "no trial completed" in job.error
    assert [t.status for t in get_trials(job_id)] == ["cancelled", "cancelled"]
    assert any("time limit" in e.message for e in get_events(job_id, "failed"))
    # and the scheduler's log says so, with the job's id as a field
    said = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    assert said[-1].levelno == logging.WARNING and said[-1].getMessage() == (
        f"job {job_id} failed (time limit of 1 s reached; no trial completed; see the trials' errors)")


# ---------------------------------------------------------------- 8. idempotent workers


def test_run_trial_is_idempotent(settings_env, nb201_csv, make_broker, monkeypatch):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=3, max_parallel=3))
    broker = make_broker()
    broker.hold = True
    scheduler = Scheduler(settings_env, send=broker.send, owner="only")
    scheduler.step()
    first, second, third = get_trials(job_id)
    calls: Counter[int] = Counter()
    original = TabularEvaluator.evaluate

    def counting(self, space, arch, ctx):
        calls[ctx.trial_id] += 1
        return original(self, space, arch, ctx)

    monkeypatch.setattr(TabularEvaluator, "evaluate", counting)

    # A duplicated message: the second delivery does nothing.
    assert run_one(first.id) == "completed"
    done = get_trials(job_id)[0]
    assert run_one(first.id) == "skipped"
    again = get_trials(job_id)[0]
    assert calls[first.id] == 1
    assert (again.status, again.attempts, again.metrics, again.finished_at) == (
        "completed", 1, done.metrics, done.finished_at)

    # Two workers receive the same message at the same moment: one evaluates, one skips.
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def racer() -> None:
        barrier.wait()
        outcomes.append(run_one(second.id))

    racers = [threading.Thread(target=racer) for _ in range(2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(timeout=30)
    assert sorted(outcomes) == ["completed", "skipped"]
    assert calls[second.id] == 1 and get_trials(job_id)[1].attempts == 1

    # A cancelled trial is never evaluated.
    with session_scope() as session:
        repo.cancel_job(session, job_id=job_id)
    assert run_one(third.id) == "skipped"
    cancelled = get_trials(job_id)[2]
    assert (cancelled.status, cancelled.attempts, cancelled.metrics) == ("cancelled", 0, None)
    assert calls[third.id] == 0


# ---------------------------------------------------------------- 9. broker outage


def test_broker_outage_delays_trials_but_loses_none(settings_env, nb201_csv, make_broker):
    job_id = make_job(tabular_spec(nb201_csv, max_trials=6, max_parallel=2))
    broker = make_broker()
    broker_up = threading.Event()

    def send(messages: list[list[int]], queue: str) -> None:
        if not broker_up.is_set():
            raise ConnectionError("broker unreachable")
        broker.send(messages, queue)

    scheduler = Scheduler(settings_env, send=send, owner="only")
    scheduler.step()
    scheduler.step()
    # The trials are written and wait as pending; no more are created while they wait.
    assert [t.status for t in get_trials(job_id)] == ["pending", "pending"]
    assert job_id in scheduler.runs and broker.sent == []

    broker_up.set()
    job = drive(scheduler, broker, job_id, poll=0)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.status for t in trials] == ["completed"] * 6
    assert broker.sends_per_trial() == Counter({t.id: 1 for t in trials})
    assert [trial_id for trial_id, _ in broker.sent] == [t.id for t in trials]  # oldest first


def test_the_messages_of_a_send_that_failed_part_way_are_all_sent_again(settings_env, nb201_csv, make_broker):
    """The sender fails after some of a pass's messages left (a connection lost mid-pass; Celery's
    batch failing at its flush, when none left): it cannot say which, so every trial of the pass
    stays pending and goes out again on the next one. The message that did leave arrives twice and
    the worker's claim skips the second: the job completes with each trial run once."""
    job_id = make_job(tabular_spec(nb201_csv, max_trials=6, max_parallel=3))
    broker = make_broker()
    failed: list[list[list[int]]] = []

    def send(messages: list[list[int]], queue: str) -> None:
        if not failed:
            failed.append(messages)
            broker.send(messages[:1], queue)
            raise ConnectionError("broker went away after the first message")
        broker.send(messages, queue)

    scheduler = Scheduler(settings_env, send=send, owner="only")
    scheduler.step()
    assert [t.status for t in get_trials(job_id)] == ["pending"] * 3 and len(broker.messages) == 1

    job = drive(scheduler, broker, job_id, poll=0)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.status for t in trials] == ["completed"] * 6 and all(t.attempts == 1 for t in trials)
    [twice] = failed[0][0]
    assert broker.sends_per_trial() == Counter({t.id: 1 + (t.id == twice) for t in trials})
    assert broker.outcomes[twice] == ["completed", "skipped"]
