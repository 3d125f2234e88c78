"""Multi-fidelity against full trainings, through the real service.

Runs, on an embedded stack (API, scheduler, worker processes), a random search of K full
trainings and ASHA over the same space and data, then compares the best accuracy reached and
the training time spent (the sum of every trained epoch's wall time, stopped trials included).

    python -m bench.multifidelity --json bench/out/multifidelity.json
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings


def job_spec(name: str, strategy: dict[str, Any], max_trials: int, epochs: int, dataset: str, seed: int) -> dict:
    return {
        "name": name,
        "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1},
        "strategy": strategy,
        "evaluator": {"type": "train", "dataset": dataset, "epochs": epochs, "latency_repeats": 1},
        "budget": {"max_trials": max_trials, "max_parallel": 2},
        "seed": seed,
    }


def measure(client: ScionClient, spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    job = client.wait(client.submit(spec)["id"], poll_s=0.5)
    wall = time.perf_counter() - started
    trials = client.trials(job["id"], limit=500)["items"]
    epochs = seconds = 0.0
    for trial in trials:
        history = client.trial(job["id"], trial["number"])["history"]
        epochs += len(history)
        seconds += sum(h["metrics"]["epoch_seconds"] for h in history)
    best = job["best"] or {}
    return {
        "job": job["id"], "status": job["status"], "trials": len(trials),
        "configurations": len({t["arch_key"] for t in trials}),
        "epochs_trained": int(epochs), "train_seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
        "best_val_acc": best.get("objective"), "best_test_acc": (best.get("metrics") or {}).get("test_acc"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-trainings", type=int, default=12, help="K: trials of the baseline.")
    parser.add_argument("--epochs", type=int, default=9, help="A full training, in epochs.")
    parser.add_argument("--asha-trials", type=int, default=30, help="ASHA's trials (promotions included).")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    asha = {"type": "asha", "mode": "promotion", "min_epochs": 1, "max_epochs": args.epochs, "reduction_factor": 3}
    runs = {
        "full trainings (random search)": job_spec("full", {"type": "random"}, args.full_trainings, args.epochs,
                                                   args.dataset, args.seed),
        "ASHA (promotion from checkpoints)": job_spec("asha", asha, args.asha_trials, args.epochs, args.dataset,
                                                      args.seed),
        "ASHA (stopping)": job_spec("asha-stop", asha | {"mode": "stopping"}, args.full_trainings, args.epochs,
                                    args.dataset, args.seed),
    }
    with tempfile.TemporaryDirectory() as home, LocalStack(Settings(home=Path(home)), workers=args.workers) as stack:
        with ScionClient(stack.url) as client:
            results = {name: measure(client, spec) for name, spec in runs.items()}

    baseline = results["full trainings (random search)"]
    for result in results.values():
        result["train_time_ratio"] = round(result["train_seconds"] / baseline["train_seconds"], 3)
    print(f"{'run':36} {'trials':>6} {'configs':>7} {'epochs':>6} {'train s':>8} {'ratio':>6} {'best val':>8} {'test':>6}")
    for name, r in results.items():
        print(f"{name:36} {r['trials']:6d} {r['configurations']:7d} {r['epochs_trained']:6d} {r['train_seconds']:8.1f}"
              f" {r['train_time_ratio']:6.2f} {r['best_val_acc']:8.2f} {r['best_test_acc'] or 0:6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "machine": platform.processor()
                                         or platform.machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
