"""Declared spaces through the scheduler and the real training worker: each trial trains with
the hyperparameters its architecture carries, and a retrain job keeps them but trains for its
own evaluator's (longer) schedule."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from scheduler.loop import Scheduler
from tests.integration.harness import drive, epochs_recorded, get_trials, make_job

pytestmark = pytest.mark.timeout(300)

SPACE = {
    "type": "declared",
    "layers": [
        {"name": "flat", "ops": ["flatten"]},
        {"name": "hidden", "ops": [{"op": "linear", "units": [16, 32]}, "identity"]},
        {"name": "act", "ops": ["relu", "tanh"], "when": {"hidden": ["linear"]}},
    ],
    "hyperparameters": {"lr": [0.02, 0.1], "batch_size": [64, 128], "epochs": [1, 2]},
}
EVALUATOR = {"type": "train", "dataset": "digits", "latency_repeats": 1}  # what the space searches is left to it


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


def run(settings, make_broker, spec: dict[str, Any]) -> list[Any]:
    job_id = make_job(spec)
    broker = make_broker(threads=0)
    assert drive(Scheduler(settings, send=broker.send), broker, job_id, timeout=240, poll=0).status == "completed"
    return get_trials(job_id)


def initial_lr(settings, trial) -> float:
    path = settings.artifact_root / f"job-{trial.job_id}" / f"trial-{trial.number}" / "checkpoint.pt"
    return torch.load(path, weights_only=True)["optimizer"]["param_groups"][0]["initial_lr"]


def test_each_trial_trains_with_the_hyperparameters_its_architecture_carries(settings_env, make_broker) -> None:
    trials = run(settings_env, make_broker, {"space": SPACE, "strategy": {"type": "random"}, "evaluator": EVALUATOR,
                                             "budget": {"max_trials": 4, "max_parallel": 2}, "seed": 1})
    settings = [t.arch["hyperparameters"] for t in trials]
    assert {s["epochs"] for s in settings} == {1, 2}, settings  # both options met
    for trial, chosen in zip(trials, settings):
        assert trial.status == "completed"
        assert len(epochs_recorded(trial.id)) == chosen["epochs"]
        assert initial_lr(settings_env, trial) == chosen["lr"]


def test_a_setting_written_on_the_evaluator_is_the_one_every_trial_trains_with(settings_env, make_broker) -> None:
    space = {key: value for key, value in SPACE.items() if key != "hyperparameters"}  # default: lr and batch size
    trials = run(settings_env, make_broker, {"space": space, "strategy": {"type": "random"},
                                             "evaluator": {**EVALUATOR, "epochs": 1, "lr": 0.3},
                                             "budget": {"max_trials": 3, "max_parallel": 2}, "seed": 1})
    assert {trial.status for trial in trials} == {"completed"}
    assert all(set(trial.arch["hyperparameters"]) == {"batch_size"} for trial in trials), [t.arch for t in trials]
    assert [initial_lr(settings_env, trial) for trial in trials] == [0.3] * 3


def test_a_retrain_keeps_the_searched_settings_but_trains_for_its_own_schedule(settings_env, make_broker) -> None:
    arch = {"layers": {"flat": "flatten", "hidden": "linear(units=32)", "act": "relu"},
            "hyperparameters": {"lr": 0.1, "batch_size": 64, "epochs": 1}}
    (trial,) = run(settings_env, make_broker, {"kind": "retrain", "retrain": {"arch": arch}, "space": SPACE,
                                               "evaluator": {**EVALUATOR, "epochs": 2}})
    assert trial.status == "completed" and trial.arch == arch
    assert [m.step for m in epochs_recorded(trial.id)] == [1, 2]
    assert initial_lr(settings_env, trial) == 0.1
    assert trial.metrics["test_acc"] > 50  # chance is 10%
