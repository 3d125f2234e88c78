"""Measured costs as constraints, and learning-curve early stopping, through the scheduler and
the real training worker."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler.loop import Scheduler
from scion.spec import JobSpec
from tests.integration.harness import TINY_NET, drive, get_events, get_trials, make_job
from tests.integration.test_strategy_families import epochs_of

GOOD = ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "skip_connect", "nor_conv_3x3"]
EMPTY = ["none"] * 6  # the cell passes nothing on: chance accuracy, a flat learning curve


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


def spec(**extra) -> dict:
    return {
        "space": TINY_NET, "strategy": {"type": "random"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 2, "batch_size": 128, "latency_repeats": 1},
        "budget": {"max_trials": 3, "max_parallel": 2}, "seed": 2, **extra,
    }


def run(settings, make_broker, job_spec: dict):
    job_id = make_job(job_spec)
    broker = make_broker(threads=2)
    return drive(Scheduler(settings, send=broker.send), broker, job_id, timeout=300), get_trials(job_id)


def test_candidates_over_a_cost_limit_are_measured_but_not_trained(settings_env, make_broker):
    job, trials = run(settings_env, make_broker, spec(constraints=[{"metric": "params", "max": 100}]))
    assert job.status == "failed"  # nothing was feasible
    for trial in trials:
        assert trial.status == "failed" and trial.error.startswith("infeasible, not trained: params =")
        assert trial.metrics["params"] > 100 and trial.metrics["latency_ms"] > 0
        assert epochs_of(trial.id) == []


def test_a_loose_cost_limit_lets_every_candidate_train(settings_env, make_broker):
    job, trials = run(settings_env, make_broker, spec(constraints=[{"metric": "latency_ms", "max": 10_000}]))
    assert job.status == "completed"
    assert all(t.status == "completed" for t in trials)


def test_constraint_on_a_metric_that_is_not_a_cost_is_refused():
    with pytest.raises(ValidationError, match=r"constraints\[0\]\.metric: 'val_acc' .* allowed: params, flops"):
        JobSpec.model_validate(spec(constraints=[{"metric": "val_acc", "max": 5}]))


def test_early_stopping_needs_a_learning_curve(nb201_csv):
    tabular = {"space": {"type": "nb201"}, "strategy": {"type": "random"},
               "evaluator": {"type": "tabular", "table": str(nb201_csv)}, "early_stopping": {"type": "curve"}}
    with pytest.raises(ValidationError, match="reports no learning curve"):
        JobSpec.model_validate(tabular)


def test_hopeless_learning_curve_is_stopped_early(settings_env, make_broker):
    job_spec = spec(warm_start=[GOOD, GOOD[::-1], EMPTY], early_stopping={"type": "curve", "top_k": 1})
    job_spec["evaluator"]["epochs"] = 8
    job, trials = run(settings_env, make_broker, job_spec)
    assert job.status == "completed"
    hopeless = trials[2]
    assert hopeless.status == "stopped", [(t.number, t.status) for t in trials]
    assert len(epochs_of(hopeless.id)) < 8
    assert any("learning-curve early stopping" in e.message for e in get_events(job.id, "trial_stopped"))
    assert trials[0].status == "completed" and len(epochs_of(trials[0].id)) == 8
