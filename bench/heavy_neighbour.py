"""A small job beside a job whose strategy thinks for long, in one scheduler (issue 16, item 5).

A job of ``small_trials`` NAS-Bench-201 table look-ups is submitted to a scheduler that drives it
alone, then beside a PNAS job with the largest predictor a spec may set (``HEAVY``), once with the
asks in the pass (``SCION_SCHEDULER_ASIDE_SECONDS=0``, the plain path: how Scion ran before) and
once aside (``scheduler/aside.py``, as shipped). The heavy job has run its random warm-up, so its
next pass fits its predictor. Measured: the small job's wall time from submission to completion,
and how long after that submission the heavy job's first predicted trials were written. The real
``Scheduler`` steps in this process against a PostgreSQL database of its own, pausing
``scheduler_poll_seconds`` between passes as its loop does; each pass's messages are evaluated
right after it by the worker's own ``run_trials`` (after an untimed run that loads the table).
Also given: the memory a predictor's fit holds (weights, gradients, Adam's two moments and a
scratch copy, float32), for the largest allowed and for the red team's 64 networks of 8 layers of
512 units.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.dispatch import scratch_database
from bench.scheduler_cost import bench_settings
from scheduler.loop import Scheduler
from scion.configs.strategies import MAX_ENSEMBLE, MAX_FIT_EPOCHS, MAX_HIDDEN_LAYERS, MAX_HIDDEN_UNITS
from scion.spec import JobSpec
from storage import repository as repo
from storage.db import session_scope
from storage.migrate import upgrade
from storage.models import Job
from worker.runner import run_trials

HEAVY = {"type": "pnas", "ensemble_size": MAX_ENSEMBLE, "hidden_units": MAX_HIDDEN_UNITS,
         "hidden_layers": MAX_HIDDEN_LAYERS, "epochs": MAX_FIT_EPOCHS, "initial_samples": 2, "pool_size": 10_000,
         "top_k": 100}
RED_TEAM = {"ensemble_size": 64, "hidden_units": 512, "hidden_layers": 8}
NB201_ENCODING = 30  # inputs of a predictor on NAS-Bench-201 (6 edges x 5 operations, one-hot)


def fit_memory_mb(ensemble_size: int, hidden_units: int, hidden_layers: int, inputs: int = NB201_ENCODING) -> float:
    """What a fit of ``surrogate.MLPEnsemble`` holds: five float32 arrays of its parameters."""
    per_network = inputs * hidden_units + hidden_units + (hidden_layers - 1) * (hidden_units + 1) * hidden_units \
        + hidden_units + 1
    return round(ensemble_size * per_network * 4 * 5 / 2**20, 1)


def spec(table: Path, strategy: dict[str, Any], trials: int, parallel: int) -> dict[str, Any]:
    return JobSpec.model_validate({
        "space": {"type": "nb201"}, "strategy": strategy, "evaluator": {"type": "tabular", "table": str(table)},
        "budget": {"max_trials": trials, "max_parallel": parallel}, "seed": 1,
    }).model_dump(mode="json")


def _job(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def _create(name: str, job_spec: dict[str, Any]) -> int:
    with session_scope() as session:
        return repo.create_job(session, name=name, spec=job_spec).id


def run_layout(*, database_url: str, broker: str, table: Path, heavy: bool, aside_seconds: float | None,
               small_trials: int, limit_s: float) -> dict[str, Any]:
    with scratch_database(database_url) as db_url, bench_settings(db_url, broker) as settings:
        upgrade(db_url)
        if aside_seconds is not None:
            settings = settings.model_copy(update={"scheduler_aside_seconds": aside_seconds})
        sent: list[list[int]] = []
        scheduler = Scheduler(settings, send=lambda messages, queue: sent.extend(messages), owner="bench")

        def step() -> None:
            scheduler.step()
            while sent:
                run_trials(sent.pop(0), "cpu")
            time.sleep(settings.scheduler_poll_seconds)

        heavy_id = _create("heavy predictor", spec(table, HEAVY, 100, 2)) if heavy else None
        while heavy_id is not None and _job(heavy_id).trials_created < 2:
            step()  # its random warm-up: its next ask fits the predictor
        started = time.perf_counter()
        small = _create("small", spec(table, {"type": "evolution"}, small_trials, small_trials))
        small_s = heavy_s = None
        while time.perf_counter() - started < limit_s and (small_s is None or (heavy and heavy_s is None)):
            step()
            if small_s is None and _job(small).status == "completed":
                small_s = time.perf_counter() - started
            if heavy and heavy_s is None and _job(heavy_id).trials_created > 2:
                heavy_s = time.perf_counter() - started
        return {"small_s": round(small_s, 2) if small_s is not None else None,
                "heavy_first_round_s": round(heavy_s, 2) if heavy_s is not None else None}


def run(*, database_url: str, broker: str, table: Path, small_trials: int = 3,
        limit_s: float = 600.0) -> dict[str, Any]:
    # Untimed first: the worker code's first look-up loads the table, which the layouts then share.
    run_layout(database_url=database_url, broker=broker, table=table, heavy=False, aside_seconds=None,
               small_trials=small_trials, limit_s=limit_s)
    layouts = [("alone", False, None), ("beside the heavy job, asks in the pass (ASIDE_SECONDS=0)", True, 0.0),
               ("beside the heavy job, asks aside (as shipped)", True, None)]
    return {
        "settings": {"small_trials": small_trials, "heavy": HEAVY, "limit_s": limit_s},
        "fit_memory_mb": {"largest allowed": fit_memory_mb(MAX_ENSEMBLE, MAX_HIDDEN_UNITS, MAX_HIDDEN_LAYERS),
                          "red team (64 x 512 x 8)": fit_memory_mb(**RED_TEAM)},
        "layouts": [{"layout": name, **run_layout(database_url=database_url, broker=broker, table=table, heavy=heavy,
                                                  aside_seconds=aside, small_trials=small_trials, limit_s=limit_s)}
                    for name, heavy, aside in layouts],
    }
