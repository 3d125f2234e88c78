"""Zero-cost proxies against trained accuracy: how well does each rank real candidates?

Samples N NAS-Bench-201 cells (a small skeleton: 8 channels, one cell per stage), scores each
untrained with the ``proxy`` evaluator, trains each with the ``train`` evaluator for a few epochs
(same initial weights: both seed from the architecture), and reports the Spearman rank
correlation (and Kendall's tau, with a bootstrap 95% interval for Spearman) of every proxy with the
trained validation accuracy, next to the cost baselines params and FLOPs, and the time each proxy
takes per network. A proxy that is undefined for a network (NaN, e.g. NASWOT on a cell that
ignores its input) ranks that network last.

    python -m bench.proxies --dataset digits --n 40 --epochs 4 --json bench/out/proxies-digits.json \
        --markdown bench/out/proxies-digits.md --plot docs/img/proxies-digits.png
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROXY_NAMES = ("naswot", "synflow", "grad_norm", "jacob_cov")
BASELINES = ("params", "flops")


class InProcessContext:
    """The worker's EvalContext, in process: no database, no stopping, no constraints; it keeps the
    last epoch's report (``last``). Benchmarks that call evaluators directly (this one,
    ``bench.one_shot``) hand it to them."""

    def __init__(self, artifacts: Path, number: int) -> None:
        self.device, self.fidelity, self.number, self.attempt = "cpu", None, number, 1
        self.artifacts = artifacts
        self.last: dict[str, Any] = {}

    def artifact_path(self, number: int) -> Path:
        return self.artifacts / f"trial-{number}" / "checkpoint.pt"

    def check_costs(self, costs: dict[str, float]) -> None:
        pass

    def report(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.last = metrics


def _ranks(values: list[float]) -> np.ndarray:
    """Average ranks (1 = lowest) with NaN ranked below everything."""
    from scipy.stats import rankdata

    a = np.array(values, dtype=np.float64)
    return rankdata(np.where(np.isnan(a), -np.inf, a))


def rank_correlations(scores: list[float], accuracy: list[float], *, resamples: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """Spearman's rho (with a percentile-bootstrap 95% interval) and Kendall's tau-b."""
    from scipy.stats import kendalltau, spearmanr

    s, a = _ranks(scores), np.array(accuracy, dtype=np.float64)
    rho = float(spearmanr(s, a).statistic)
    tau = float(kendalltau(s, a).statistic)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        index = rng.integers(0, len(a), len(a))
        if np.ptp(s[index]) > 0 and np.ptp(a[index]) > 0:
            boot.append(float(spearmanr(s[index], a[index]).statistic))
    low, high = (np.percentile(boot, [2.5, 97.5]) if boot else (math.nan, math.nan))
    return {"spearman": rho, "spearman_low": float(low), "spearman_high": float(high), "kendall": tau,
            "undefined": int(np.isnan(np.array(scores, dtype=np.float64)).sum())}


def sample_cells(space: Any, n: int, seed: int) -> list[Any]:
    """``n`` distinct architectures of ``space``, the same ones for the same seed (a longer sample
    starts with a shorter one's architectures, in the same order)."""
    rng = np.random.default_rng(seed)
    archs: list[Any] = []
    seen: set[str] = set()
    while len(archs) < n:
        arch = space.sample(rng)
        if space.key(arch) not in seen:
            seen.add(space.key(arch))
            archs.append(arch)
    return archs


def run(dataset: str, n: int, epochs: int, *, channels: int, cells: int, batch_size: int, seed: int,
        progress: bool = True) -> dict[str, Any]:
    import torch

    from spaces import SPACES, make_space
    from worker.evaluators.proxy import ProxyConfig, ProxyEvaluator, proxy_batch
    from worker.evaluators.train import TrainConfig, TrainEvaluator, arch_seed
    from worker.training.datasets import load_dataset
    from worker.training.proxies import compute

    space = make_space(SPACES["nb201"].config(channels=channels, cells_per_stage=cells))
    data = load_dataset(dataset)
    proxy_eval = ProxyEvaluator(ProxyConfig(dataset=dataset, batch_size=batch_size, latency_repeats=3))
    train_eval = TrainEvaluator(TrainConfig(dataset=dataset, epochs=epochs, latency_repeats=1))
    archs = sample_cells(space, n, seed)

    x, y = proxy_batch(data, batch_size, "cpu")
    proxy_eval.evaluate(space, archs[0], InProcessContext(Path(tempfile.gettempdir()), 0))  # warm-up, not timed
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as artifacts:
        for i, arch in enumerate(archs):
            ctx = InProcessContext(Path(artifacts), i)
            scored = proxy_eval.evaluate(space, arch, ctx)
            # each proxy timed on its own, on the same initial weights and batch as the evaluator used
            torch.manual_seed(arch_seed(space.key(arch)))
            model = space.build(arch, data.input_shape, data.num_classes)
            again, seconds = compute(model, x, y, PROXY_NAMES)
            for name in PROXY_NAMES:  # the evaluator and a second run agree: deterministic
                a, b = scored[name], again[name]
                assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6), (name, a, b)
            trained = train_eval.evaluate(space, arch, ctx)
            rows.append({
                "arch": space.key(arch),
                **{name: scored[name] for name in PROXY_NAMES},
                **{f"seconds_{name}": seconds[name] for name in PROXY_NAMES},
                "proxy_evaluator_seconds": scored["train_seconds"],
                "params": scored["params"], "flops": scored["flops"],
                "val_acc": trained["val_acc"], "test_acc": trained["test_acc"],
                "train_seconds": trained["train_seconds"],
            })
            if progress:
                print(f"[{i + 1}/{n}] val_acc {trained['val_acc']:6.2f}  naswot {scored['naswot']:9.2f}  "
                      f"proxies {sum(seconds.values()) * 1000:6.0f} ms  train {trained['train_seconds']:5.1f} s  "
                      f"{space.key(arch)}", flush=True)
    wall = time.perf_counter() - started

    accuracy = [r["val_acc"] for r in rows]
    correlations = {name: rank_correlations([r[name] for r in rows], accuracy) for name in (*PROXY_NAMES, *BASELINES)}
    timing = {
        name: {"mean_ms": 1000 * statistics.fmean(r[f"seconds_{name}"] for r in rows),
               "median_ms": 1000 * statistics.median(r[f"seconds_{name}"] for r in rows),
               "max_ms": 1000 * max(r[f"seconds_{name}"] for r in rows)}
        for name in PROXY_NAMES
    }
    timing["all four"] = {
        "mean_ms": 1000 * statistics.fmean(sum(r[f"seconds_{p}"] for p in PROXY_NAMES) for r in rows),
        "median_ms": 1000 * statistics.median(sum(r[f"seconds_{p}"] for p in PROXY_NAMES) for r in rows),
        "max_ms": 1000 * max(sum(r[f"seconds_{p}"] for p in PROXY_NAMES) for r in rows),
    }
    return {
        "config": {"dataset": dataset, "n": n, "epochs": epochs, "channels": channels, "cells_per_stage": cells,
                   "batch_size": batch_size, "seed": seed, "torch_threads": torch.get_num_threads()},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
        "wall_seconds": wall,
        "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in rows),
        "proxy_evaluator_seconds_mean": statistics.fmean(r["proxy_evaluator_seconds"] for r in rows),
        "val_acc": {"min": min(accuracy), "median": statistics.median(accuracy), "max": max(accuracy)},
        "correlations": correlations,
        "timing": timing,
        "rows": rows,
    }


def markdown(report: dict[str, Any], command: str) -> str:
    c = report["config"]
    lines = [
        "```sh", command, "```", "",
        f"{c['n']} NB201 cells (channels {c['channels']}, {c['cells_per_stage']} cell per stage), dataset "
        f"`{c['dataset']}`, trained {c['epochs']} epochs each; proxies on one batch of {c['batch_size']}. "
        f"Validation accuracy {report['val_acc']['min']:.1f}–{report['val_acc']['max']:.1f}% "
        f"(median {report['val_acc']['median']:.1f}). CPU, {c['torch_threads']} torch thread(s), "
        f"{report['machine']['cpus']} cores shared with other work; wall time {report['wall_seconds']:.0f} s "
        f"(training {report['train_seconds_mean']:.1f} s per network, the whole proxy evaluator "
        f"{1000 * report['proxy_evaluator_seconds_mean']:.0f} ms per network including FLOPs and latency).",
        "",
        "| score | Spearman ρ with val acc | 95% bootstrap interval | Kendall τ | undefined "
        "| mean ms / network | median ms |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, corr in report["correlations"].items():
        t = report["timing"].get(name)
        ms = (f"{t['mean_ms']:.1f} | {t['median_ms']:.1f}") if t else "– | –"
        label = name if name in PROXY_NAMES else f"{name} (baseline)"
        lines.append(f"| {label} | {corr['spearman']:.3f} | [{corr['spearman_low']:.2f}, {corr['spearman_high']:.2f}] "
                     f"| {corr['kendall']:.3f} | {corr['undefined']} | {ms} |")
    t = report["timing"]["all four"]
    lines.append(f"| all four proxies | | | | | {t['mean_ms']:.1f} | {t['median_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = (*PROXY_NAMES, *BASELINES)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    accuracy = np.array([r["val_acc"] for r in report["rows"]])
    for ax, name in zip(axes.flat, names, strict=True):
        values = np.array([r[name] for r in report["rows"]], dtype=np.float64)
        ok = ~np.isnan(values)
        ax.scatter(values[ok], accuracy[ok], s=18)
        if name in ("synflow", "params", "flops") and (values[ok] > 0).all():
            ax.set_xscale("log")
        corr = report["correlations"][name]
        undefined = f" ({(~ok).sum()} undefined)" if (~ok).any() else ""
        ax.set_title(f"{name}: Spearman {corr['spearman']:.2f}{undefined}")
        ax.set_xlabel(name)
        ax.set_ylabel("val acc (%)")
    c = report["config"]
    fig.suptitle(f"Zero-cost proxies vs. accuracy after {c['epochs']} epochs: {c['n']} NB201 cells on {c['dataset']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="A built-in dataset name (digits, mnist1d).")
    parser.add_argument("--n", type=int, default=40, help="Networks to sample, score and train.")
    parser.add_argument("--epochs", type=int, default=4, help="Training epochs per network.")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=1, help="NB201 cells per stage.")
    parser.add_argument("--batch-size", type=int, default=64, help="The proxies' batch.")
    parser.add_argument("--seed", type=int, default=0, help="Which networks are sampled.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared).")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    report = run(args.dataset, args.n, args.epochs, channels=args.channels, cells=args.cells,
                 batch_size=args.batch_size, seed=args.seed)
    command = (f"python -m bench.proxies --dataset {args.dataset} --n {args.n} --epochs {args.epochs}"
               + (f" --json {args.json}" if args.json else "") + (f" --plot {args.plot}" if args.plot else ""))
    text = markdown(report, command)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report | {"command": command}, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
