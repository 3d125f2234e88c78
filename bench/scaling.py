"""Scaling with workers: end-to-end throughput with 1, 2 and 4 worker processes, and what limits it.

Each run goes through the production path (HTTP submit, scheduler, Celery on Redis, worker
processes, PostgreSQL) with ``bench.dispatch.run_job``, on a PostgreSQL database of its own, after
a small warm-up job. Two workloads:

- ``tabular``: NAS-Bench-201 look-ups, so trials cost nothing and the service is all there is;
- ``training``: real trainings of a tiny NAS-Bench-201 network on digits for one epoch.

During each measured job the CPU used by each part (API, scheduler, workers with their pool,
PostgreSQL, Redis) and the machine's busy share are read from /proc (``bench.proc_cpu``). The
bottleneck named for a run follows from the CPU each part spends per trial (see ``analyse``).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.dispatch import run_job, scratch_database
from bench.proc_cpu import cpu_usage
from client.stack import LocalStack

TINY_NET = {"type": "nb201", "channels": 4, "cells_per_stage": 1}


def tabular_spec(table: Path, trials: int, parallel: int) -> dict[str, Any]:
    return {"name": "scaling-tabular", "space": {"type": "nb201"}, "strategy": {"type": "random"},
            "evaluator": {"type": "tabular", "table": str(table)},
            "budget": {"max_trials": trials, "max_parallel": parallel}, "seed": 0}


def training_spec(trials: int, parallel: int) -> dict[str, Any]:
    return {"name": "scaling-training", "space": TINY_NET, "strategy": {"type": "random"},
            "evaluator": {"type": "train", "dataset": "digits", "epochs": 1, "batch_size": 128,
                          "latency_repeats": 1},
            "budget": {"max_trials": trials, "max_parallel": parallel}, "seed": 0}


def stack_cpu(stack: LocalStack):
    """CPU of the stack's parts (each with its child processes), of the PostgreSQL backends
    serving its database, and of the Redis server (shared with whoever else uses it)."""
    database = make_url(stack.settings.db_url).database
    return cpu_usage({name: proc.pid for name, proc in stack.procs},
                     {"postgres": f" {database} ", "redis": "redis-server"})


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """CPU milliseconds per trial by part; the throughput each would allow on an idle machine (all
    its cores on this mix; the scheduler, one process, on one core), steadier than throughput on a
    shared machine; and the bottleneck of this run: the machine's CPU when every core was busy,
    else the scheduler when it used most of its core, else waiting (too few workers, latency)."""
    per_trial = {part: round(cpu * 1000 / run["trials"], 2) for part, cpu in run["cpu_s"].items()}
    ceilings = {"machine CPU": run["machine_cores"] * 1000 / sum(per_trial.values()),
                "scheduler": 1000 / per_trial["scheduler"] if per_trial["scheduler"] else float("inf")}
    if run["machine_busy"] is not None and run["machine_busy"] >= 0.9:
        bottleneck = f"machine CPU (most: {max(per_trial, key=per_trial.get)})"
    elif run["cores"]["scheduler"] >= 0.8:
        bottleneck = "scheduler"
    else:
        bottleneck = "waiting: no CPU saturated"
    if run["other_cores"] >= 0.2:
        bottleneck += f"; {run['other_cores']} of {run['machine_cores']} cores busy with other work"
    return {"cpu_ms_per_trial": per_trial,
            "idle_machine_ceiling_trials_per_s": {name: round(value, 1) for name, value in ceilings.items()},
            "bottleneck": bottleneck}


def measure(database_url: str, broker: str, spec: dict[str, Any], warmup: dict[str, Any],
            workers: int) -> dict[str, Any]:
    with scratch_database(database_url) as db_url:
        run = run_job(db_url, broker, spec, workers, warmup=warmup, probe=stack_cpu)
    return {"worker_processes": workers, **run, **analyse(run)}


def run(*, database_url: str, broker: str, table: Path, workers: tuple[int, ...] = (1, 2, 4),
        tabular_trials: int = 1000, training_trials: int = 24, parallel: int = 16, repeats: int = 1
        ) -> dict[str, Any]:
    """Each (workload, worker count) is run ``repeats`` times and its fastest run kept: on a shared
    machine the slower ones measure the neighbours."""
    table = table.resolve()
    workloads = {
        "tabular": partial(tabular_spec, table, parallel=parallel),
        "training": partial(training_spec, parallel=min(parallel, 2 * max(workers))),
    }
    trials = {"tabular": tabular_trials, "training": training_trials}
    report: dict[str, Any] = {"workloads": {}}
    for name, spec in workloads.items():
        if not trials[name]:
            continue
        runs = [max((measure(database_url, broker, spec(trials[name]), spec(max(2 * n, trials[name] // 10)), n)
                     for _ in range(repeats)), key=lambda r: r["trials_per_s"])
                for n in workers]
        base = runs[0]["trials_per_s"] / runs[0]["worker_processes"]
        for r in runs:
            r["speedup_vs_one_worker"] = round(r["trials_per_s"] / base, 2)
            r["efficiency"] = round(r["speedup_vs_one_worker"] / r["worker_processes"], 2)
        report["workloads"][name] = {"trials": trials[name], "runs": runs}
    report["settings"] = {"workers": list(workers), "max_parallel": parallel, "repeats": repeats,
                          "tabular_trials": tabular_trials,
                          "training_trials": training_trials, "training": training_spec(0, 0)["evaluator"] |
                          {"network": TINY_NET}}
    return report
