"""One real search per strategy family through the service's scheduler and worker code:
NAS-Bench-201 cells built in PyTorch and trained on digits, two workers at once."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from scheduler.loop import Scheduler
from scheduler.strategies import STRATEGIES
from storage.db import session_scope
from storage.models import TrialMetric
from tests.integration.harness import TINY_NET, drive, get_trials, make_job


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """Training is what these tests exercise; the database matrix is covered elsewhere."""
    return sqlite_url


def train_job(strategy: dict[str, Any], *, max_trials: int, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"family-{strategy['type']}",
        "space": TINY_NET,
        "strategy": strategy,
        "evaluator": {"type": "train", "dataset": "digits", "epochs": epochs, "batch_size": 128,
                      "latency_repeats": 1},
        "budget": {"max_trials": max_trials, "max_parallel": 2},
        "seed": 11,
        **extra,
    }


FAMILIES = {
    "random": {"type": "random"},
    "evolution": {"type": "evolution", "population_size": 3, "sample_size": 2},
    "local_search": {"type": "local_search"},
    "grid": {"type": "grid"},
    "reinforce": {"type": "reinforce"},
    "bananas": {"type": "bananas"},
    "pnas": {"type": "pnas"},
    "tpe": {"type": "tpe"},
}


def epochs_of(trial_id: int) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(select(TrialMetric.step).where(TrialMetric.trial_id == trial_id)
                                    .order_by(TrialMetric.step)))


@pytest.mark.parametrize("name", [n for n in FAMILIES if n in STRATEGIES])
def test_single_objective_family_trains_real_networks(name, settings_env, make_broker):
    job_id = make_job(train_job(FAMILIES[name], max_trials=5))
    job = _run(settings_env, make_broker, job_id)
    trials = get_trials(job_id)
    assert job.status == "completed", job.error
    assert len(trials) == 5 and all(t.told for t in trials)
    assert len({t.arch_key for t in trials}) == 5
    assert all(t.status == "completed" and 0 < t.metrics["val_acc"] <= 100 for t in trials)
    assert job.best_objective == max(t.objective for t in trials)
    assert job.strategy_state


def _run(settings, make_broker, job_id: int):
    broker = make_broker(threads=2)
    return drive(Scheduler(settings, send=broker.send), broker, job_id, timeout=300)


def test_multi_objective_nsga2_trains_and_sees_both_objectives(settings_env, make_broker):
    spec = train_job({"type": "nsga2", "population_size": 3}, max_trials=5,
                     objectives=[{"metric": "val_acc"}, {"metric": "params"}])
    job_id = make_job(spec)
    job = _run(settings_env, make_broker, job_id)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert all(t.status == "completed" and t.metrics["params"] > 0 for t in trials)


def test_asha_promotion_continues_from_the_checkpoint(settings_env, make_broker):
    """Rungs of 1 and 3 epochs, η=3: after three 1-epoch trials the best is promoted as a new
    trial that trains epochs 2-3 from its checkpoint, not from scratch."""
    asha = {"type": "asha", "mode": "promotion", "min_epochs": 1, "max_epochs": 3, "reduction_factor": 3}
    job_id = make_job(train_job(asha, max_trials=5, epochs=3))
    job = _run(settings_env, make_broker, job_id)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    promoted = [t for t in trials if (t.fidelity or {}).get("resume_from") is not None]
    assert promoted, [t.fidelity for t in trials]
    for trial in promoted:
        parent = next(t for t in trials if t.number == trial.fidelity["resume_from"])
        assert parent.arch_key == trial.arch_key
        assert epochs_of(parent.id) == [1]
        assert epochs_of(trial.id) == [2, 3], "a promotion trains only the epochs it adds"
    fresh = [t for t in trials if t not in promoted]
    assert all(epochs_of(t.id) == [1] for t in fresh)
    assert (settings_env.artifact_root / f"job-{job_id}" / f"trial-{promoted[0].number}" / "checkpoint.pt").exists()


def test_asha_stopping_stops_losing_trials_within_an_epoch(settings_env, make_broker):
    asha = {"type": "asha", "mode": "stopping", "min_epochs": 1, "max_epochs": 9, "reduction_factor": 3}
    job_id = make_job(train_job(asha, max_trials=6, epochs=9))
    job = _run(settings_env, make_broker, job_id)
    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    stopped = [t for t in trials if t.status == "stopped"]
    assert stopped, "with six candidates some must lose at a rung"
    for trial in stopped:
        assert trial.metrics["epochs"] in (1, 3) and trial.objective is not None
        with session_scope() as session:
            after = session.scalars(select(TrialMetric.step).where(
                TrialMetric.trial_id == trial.id, TrialMetric.created_at > trial.finished_at)).all()
        assert len(after) <= 1, f"trial {trial.number} trained epochs {after} after it was stopped"
        assert len(epochs_of(trial.id)) < 9
    assert any(t.status == "completed" and len(epochs_of(t.id)) == 9 for t in trials)
