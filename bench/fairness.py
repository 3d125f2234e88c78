"""A cheap job behind training jobs, on the default embedded stack (SQLite, the filesystem broker,
``LocalStack``'s default workers).

Training jobs shaped like examples/quickstart.yaml (digits) are submitted first and run until every
training slot is busy; then a job of table look-ups (NAS-Bench-201, ``tabular_trials`` trials) is
submitted, and its wall time from submission to completion is measured, with its queue waits as
the API reports them (``queue_wait``) when it ends, and the training jobs' queue waits and
completed trials ``window_s`` after its submission (the same moment in both layouts). Run twice in
one session: as shipped (the cheap queues on a Celery worker of their own, per-job fair shares of
the slots) and with both turned off (``SCION_WORKER_SPLIT_QUEUES`` and ``SCION_SCHEDULER_FAIR_SHARE``
false: one Celery worker for every queue, jobs served in the order they queued), the layout Scion
had before. A look-up job still running after ``limit_s`` is reported as not finished.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings
from storage import repository as repo
from storage.db import autocommit

TERMINAL = ("completed", "failed", "cancelled")
SETTINGS_OFF = {"SCION_WORKER_SPLIT_QUEUES": "false", "SCION_SCHEDULER_FAIR_SHARE": "false"}


def training_spec(n: int, trials: int, epochs: int) -> dict[str, Any]:
    """examples/quickstart.yaml with its own seed and ``trials`` trials of ``epochs`` epochs."""
    return {
        "name": f"training-{n}", "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1},
        "strategy": {"type": "evolution", "population_size": 8, "sample_size": 3},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": epochs, "batch_size": 64, "lr": 0.05},
        "objectives": [{"metric": "val_acc"}], "budget": {"max_trials": trials, "max_parallel": 2}, "seed": n,
    }


def tabular_spec(table: Path, trials: int) -> dict[str, Any]:
    return {"name": "look-ups", "space": {"type": "nb201"},
            "strategy": {"type": "evolution", "population_size": 20, "sample_size": 5},
            "evaluator": {"type": "tabular", "table": str(table)},
            "budget": {"max_trials": trials, "max_parallel": 8}, "seed": 1}


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:g} s")
        time.sleep(0.2)


def _training_slots(db_url: str) -> int:
    with autocommit(db_url) as connection:
        return sum(w.slots for w in repo.live_workers(connection, fresh_s=60) if "gpu" in w.queues.split(","))


def run_layout(*, fair: bool, table: Path, training_jobs: int, training_trials: int, epochs: int,
               tabular_trials: int, workers: int, limit_s: float, window_s: float) -> dict[str, Any]:
    """One stack: the training jobs once its workers are up, then the look-up job once every
    training slot is busy."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        stack = LocalStack(settings, workers=workers, env=None if fair else SETTINGS_OFF)
        with stack, ScionClient(stack.url) as client:
            _wait(lambda: _training_slots(settings.db_url) >= workers, 300, "the workers did not start")
            training = [client.submit(training_spec(n, training_trials, epochs))["id"] for n in range(training_jobs)]
            _wait(lambda: sum(client.job(j)["counts"].get("running", 0) for j in training) >= workers, 300,
                  "the training trials did not occupy every worker slot")
            started = time.perf_counter()
            look_ups = client.submit(tabular_spec(table, tabular_trials))["id"]
            jobs, wall = None, None
            while wall is None or jobs is None:
                elapsed = time.perf_counter() - started
                if wall is None and ((job := client.job(look_ups))["status"] in TERMINAL or elapsed >= limit_s):
                    wall = elapsed
                if jobs is None and elapsed >= window_s:
                    jobs = [client.job(j) for j in training]
                time.sleep(0.1)
            for j in [*training, look_ups]:
                if client.job(j)["status"] not in TERMINAL:
                    client.cancel(j)
    done = job["status"] == "completed"
    return {
        "layout": "shared (split queues, fair shares)" if fair else "one consumer, first come first served",
        "tabular": {"finished": done, "wall_s": round(wall, 1) if done else None, "limit_s": limit_s,
                    "completed": job["counts"].get("completed", 0), "queue_wait": _rounded(job["queue_wait"])},
        "training": [{"job": j["name"], "completed": j["counts"].get("completed", 0),
                      "running": j["counts"].get("running", 0), "queue_wait": _rounded(j["queue_wait"])}
                     for j in jobs],
    }


def _rounded(wait: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in wait.items()}


def run(*, table: Path, training_jobs: int = 3, training_trials: int = 20, epochs: int = 4,
        tabular_trials: int = 40, workers: int = 2, limit_s: float = 600.0, window_s: float = 120.0) -> dict[str, Any]:
    shape = {"training_jobs": training_jobs, "training_trials": training_trials, "epochs": epochs,
             "tabular_trials": tabular_trials, "workers": workers, "limit_s": limit_s, "window_s": window_s}
    return {"settings": shape, "layouts": [run_layout(fair=fair, table=table, **shape) for fair in (True, False)]}
