"""Multi-fidelity against full trainings, through the real service.

Runs, on an embedded stack (API, scheduler, worker processes), a random search of K full
trainings and ASHA over the same space and data, then compares the best accuracy reached and
the training time spent (the sum of every trained epoch's wall time, stopped trials included).

    python -m bench.multifidelity --seeds 3 --json bench/out/multifidelity.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
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


RUNS = ("full trainings", "ASHA promotion", "ASHA stopping")


def specs(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """The same seed makes every run draw the same candidates in the same order (and each
    architecture trains with its own fixed seed): ASHA sees the baseline's K candidates first,
    then more, bought with the epochs it does not spend on hopeless ones."""
    asha = {"type": "asha", "mode": "promotion", "min_epochs": args.min_epochs, "max_epochs": args.epochs,
            "reduction_factor": args.eta}
    return {
        "full trainings": job_spec("full", {"type": "random"}, args.full_trainings, args.epochs, args.dataset, seed),
        "ASHA promotion": job_spec("asha", asha, args.asha_trials, args.epochs, args.dataset, seed),
        "ASHA stopping": job_spec("asha-stop", asha | {"mode": "stopping"}, args.stopping_trials, args.epochs,
                                  args.dataset, seed),
    }


def summarise(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Means over seeds; the gap to the baseline's best is the figure the claim rests on."""
    summary = {}
    for name in RUNS:
        rows = [seed_results[name] for seed_results in per_seed]
        summary[name] = {
            "mean_best_val_acc": round(statistics.mean(r["best_val_acc"] for r in rows), 2),
            "mean_best_test_acc": round(statistics.mean(r["best_test_acc"] or 0.0 for r in rows), 2),
            "mean_train_seconds": round(statistics.mean(r["train_seconds"] for r in rows), 1),
            "mean_epochs_trained": round(statistics.mean(r["epochs_trained"] for r in rows), 1),
            "train_time_ratio": round(sum(r["train_seconds"] for r in rows)
                                      / sum(s["full trainings"]["train_seconds"] for s in per_seed), 3),
            "best_matched_seeds": sum(r["best_val_acc"] >= s["full trainings"]["best_val_acc"]
                                      for r, s in zip(rows, per_seed)),
        }
    for row in summary.values():
        row["best_val_gap"] = round(row["mean_best_val_acc"] - summary["full trainings"]["mean_best_val_acc"], 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-trainings", type=int, default=12, help="K: trials of the baseline.")
    parser.add_argument("--epochs", type=int, default=9, help="A full training, in epochs.")
    parser.add_argument("--min-epochs", type=int, default=1, help="ASHA's bottom rung, in epochs.")
    parser.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor.")
    parser.add_argument("--asha-trials", type=int, default=40, help="ASHA promotion's trials (promotions included).")
    parser.add_argument("--stopping-trials", type=int, default=24, help="ASHA stopping's candidates.")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seeds", type=int, default=3, help="Repeat everything with seeds 0..N-1.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    per_seed = []
    with tempfile.TemporaryDirectory() as home, LocalStack(Settings(home=Path(home)), workers=args.workers) as stack, \
            ScionClient(stack.url) as client:
        for seed in range(args.seeds):
            results = {name: measure(client, spec) for name, spec in specs(args, seed).items()}
            per_seed.append(results)
            print(f"seed {seed}: " + ", ".join(f"{name} best {r['best_val_acc']:.2f} in {r['train_seconds']:.0f} s"
                                               for name, r in results.items()), flush=True)
    summary = summarise(per_seed)
    print(f"{'run':16} {'epochs':>7} {'train s':>8} {'ratio':>6} {'best val':>8} {'gap':>6} {'test':>6} {'matched':>7}")
    for name, r in summary.items():
        print(f"{name:16} {r['mean_epochs_trained']:7.1f} {r['mean_train_seconds']:8.1f} {r['train_time_ratio']:6.2f}"
              f" {r['mean_best_val_acc']:8.2f} {r['best_val_gap']:+6.2f} {r['mean_best_test_acc']:6.2f}"
              f" {r['best_matched_seeds']:>4}/{args.seeds}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "machine": platform.processor()
                                         or platform.machine(), "summary": summary, "per_seed": per_seed}, indent=2))


if __name__ == "__main__":
    main()
