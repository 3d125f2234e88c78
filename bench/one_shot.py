"""One-shot (weight-sharing) NAS against training every candidate: the backend of ``scion bench one-shot``.

Three parts (issue 14, "What must be shown"), on NAS-Bench-201 cells of a small skeleton:

- ``ranking``: a fixed, seeded sample of cells trained standalone with the ``train`` evaluator on
  each dataset (the ground truth, cached in the output directory: ``bench.ground_truth``), against
  which Kendall's tau and Spearman's rho of cheap scores are reported: the validation accuracy
  each cell reaches with the weights it inherits from one SPOS supernet (trained here, in process,
  with the worker's ``SupernetEvaluator``), scored by the ``InheritedEvaluator`` with and without
  BatchNorm recalibration; and, side by side, the zero-cost proxies and the params / FLOPs
  baselines (``bench.proxies``).
- ``pipelines``: through the embedded stack (API, scheduler, worker processes), what each pipeline
  finally returns (its job's best trial: the retrained network's standalone test accuracy) and the
  worker-seconds it used (the sum of its trials' run times), for SPOS + evolution, DARTS, ENAS and
  regularized evolution fully training each of N candidates with the same recipe, over seeds;
  and the issue's target, checked as stated: a one-shot pipeline's mean test accuracy within one
  standard deviation (over seeds) of regularized evolution's mean, or above it, with at most a
  fifth of its mean worker-seconds.
- ``collapse``: plain DARTS against DARTS with each published remedy, over seeds: DARTS- (the
  auxiliary skip) and DARTS-ES (early stopping on the dominant eigenvalue of the validation loss'
  Hessian in the architecture weights, which returns the cell of the epoch its rule points to):
  how many ``skip_connect`` and parameter-free operations the derived cell ends with, and for
  DARTS-ES the epoch each run stopped after, the epoch whose cell it returned, and the eigenvalue
  of every epoch (``--remedies`` runs a subset).

The methods' published defaults are for CIFAR-10 or ImageNet, hundreds of steps an epoch. MNIST-1D's
training split (2,800 examples) makes 44 steps an epoch at batch 64, 22 for DARTS (weights and
architecture each train on a half), so the benchmark's settings (``METHOD_DEFAULTS``, each
overridable from the command line) differ: every method 50 epochs at batch 64 (the SPOS supernet's
training accuracy still rises at 50); SPOS at the standalone recipe's learning rate, 0.05 (the
paper's 0.5 is for batches of 1024); DARTS with its architecture learning rate raised so that rate
times architecture steps is about DARTS' on CIFAR-10 (3e-4 x 19,550 against 5e-3 x 1,100: with the
published rate the architecture weights end within 0.02 of uniform and the derived cell is
arbitrary); ENAS with 10 controller updates an epoch instead of 50.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PARTS = ("ranking", "pipelines", "collapse")
GROUND_TRUTH = "ground-truth"  # the ranking's standalone trainings alone, e.g. ahead of the rest
CACHE_NAME = "one-shot-ground-truth.json"
REMEDIES = ("none", "darts-", "early-stop")  # DARTSMethodConfig.remedy's values, plain DARTS first
PIPELINES = ("spos", "darts", "enas", "evolution")
BASELINE = "evolution"
ONE_SHOT = ("spos", "darts", "enas")
COST_FRACTION = 0.2  # the target: at most a fifth of the baseline's worker-seconds
# The bench's method settings (see the module docstring); a command line's JSON is merged onto them.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "spos": {"epochs": 50, "batch_size": 64, "lr": 0.05},
    "darts": {"epochs": 50, "batch_size": 64, "arch_lr": 5e-3},
    "enas": {"epochs": 50, "batch_size": 64, "controller_steps": 10},
}

Progress = Callable[[str], None]


class BenchError(ValueError):
    """A mistake in what the benchmark was asked to do: the message says what to change."""


def _quiet(_: str) -> None:
    pass


def method_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The bench's config of method ``name`` (``METHOD_DEFAULTS`` with ``overrides``), validated."""
    from pydantic import ValidationError

    from scion.configs.one_shot import METHODS

    try:
        return METHODS[name](**(METHOD_DEFAULTS[name] | (overrides or {})))
    except ValidationError as exc:
        raise BenchError(f"{name} settings: {exc}") from None


def space_config(channels: int, cells_per_stage: int) -> Any:
    from spaces import SPACES

    return SPACES["nb201"].config(channels=channels, cells_per_stage=cells_per_stage)


def train_config(dataset: str, epochs: int) -> Any:
    """The standalone recipe: the ``train`` evaluator's defaults, ``epochs`` epochs, one latency repeat."""
    from scion.configs.evaluators import TrainConfig

    return TrainConfig(dataset=dataset, epochs=epochs, latency_repeats=1)


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values) if values else math.nan,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _supernet(one_shot: Any, train: Any, space: Any, artifacts: Path, seed: int = 0) -> dict[str, Any]:
    """Train one supernet in this process from ``seed`` (initial weights, batches, sampled paths);
    its checkpoint is the context's artifact of trial 0. Adds the last epoch's report (``last_epoch``)."""
    from bench.proxies import InProcessContext
    from worker.evaluators.supernet import SupernetEvaluator

    ctx = InProcessContext(artifacts, 0)
    return SupernetEvaluator(one_shot, train, seed).evaluate(space, None, ctx) | {"last_epoch": ctx.last}


# -- ranking -------------------------------------------------------------------------------------


def ranking(*, datasets: Sequence[str], cells: int, sample_seed: int, epochs: int, channels: int,
            cells_per_stage: int, spos: dict[str, Any], proxy_batch_size: int, out_dir: Path,
            truth_only: bool = False, progress: Progress = _quiet) -> dict[str, Any]:
    """Per dataset: the ground truth's spread and every score's rank correlation with it."""
    from bench.ground_truth import GroundTruthCache, train_cells
    from bench.proxies import sample_cells
    from spaces import make_space

    if cells < 2:
        raise BenchError(f"--cells must be at least 2 to rank anything, got {cells}")
    space = make_space(space_config(channels, cells_per_stage))
    archs = sample_cells(space, cells, sample_seed)
    cache = GroundTruthCache(out_dir / CACHE_NAME)
    method = method_config("spos", spos)
    report: dict[str, Any] = {
        "config": {"cells": cells, "sample_seed": sample_seed, "space": space.config.model_dump(mode="json"),
                   "recipe_epochs": epochs, "spos": method.model_dump(mode="json"),
                   "proxy_batch_size": proxy_batch_size, "cache": str(cache.path)},
        "datasets": {},
    }
    for dataset in datasets:
        train = train_config(dataset, epochs)
        started = time.perf_counter()
        truth = train_cells(space, archs, train, cache, progress=progress)
        accuracy = [row["val_acc"] for row in truth]
        result: dict[str, Any] = {
            "ground_truth": {"seconds": time.perf_counter() - started,
                             "val_acc": {"min": min(accuracy), "median": statistics.median(accuracy),
                                         "max": max(accuracy)}},
            "rows": truth,
        }
        if not truth_only:
            scores = {**_spos_scores(space, archs, train, method, progress), **_proxy_scores(
                space, archs, dataset, proxy_batch_size)}
            result["supernet"] = scores.pop("supernet")
            result["correlations"] = _correlations(scores, accuracy)
            for row, *values in zip(truth, *scores.values(), strict=True):
                row.update(zip(scores, values, strict=True))
        report["datasets"][dataset] = result
    return report


def _correlations(scores: dict[str, list[float]], accuracy: list[float]) -> dict[str, dict[str, float]]:
    from bench.proxies import rank_correlations

    return {name: rank_correlations(values, accuracy) for name, values in scores.items()}


def _spos_scores(space: Any, archs: list[Any], train: Any, method: Any, progress: Progress) -> dict[str, Any]:
    """Each cell's validation accuracy with inherited weights, without and with BN recalibration."""
    from bench.proxies import InProcessContext
    from scion.configs.one_shot import OneShotConfig
    from worker.evaluators.inherited import InheritedEvaluator

    one_shot = OneShotConfig(method=method)
    with tempfile.TemporaryDirectory() as artifacts:
        started = time.perf_counter()
        trained = _supernet(one_shot, train, space, Path(artifacts))
        supernet = {"val_acc": trained["val_acc"], "seconds": time.perf_counter() - started,
                    "supernet_params": trained["supernet_params"]}
        progress(f"[{train.dataset.type}] SPOS supernet: val_acc {trained['val_acc']:.2f} "
                 f"in {supernet['seconds']:.0f} s")
        checkpoint = InProcessContext(Path(artifacts), 0).artifact_path(0)
        scores: dict[str, Any] = {"supernet": supernet}
        for name, batches in (("spos_no_recalibration", 0), ("spos_recalibrated", method.recalibration_batches)):
            scoring = OneShotConfig(method=method.model_copy(update={"recalibration_batches": batches}))
            evaluator = InheritedEvaluator(scoring, train, checkpoint)
            started = time.perf_counter()
            scores[name] = [float(evaluator.evaluate(space, arch, InProcessContext(Path(artifacts), i + 1))["val_acc"])
                            for i, arch in enumerate(archs)]
            supernet[f"{name}_seconds_per_cell"] = (time.perf_counter() - started) / len(archs)
        supernet["recalibration_batches"] = method.recalibration_batches
    return scores


def _proxy_scores(space: Any, archs: list[Any], dataset: str, batch_size: int) -> dict[str, list[float]]:
    """The zero-cost proxies and the cost baselines of each (untrained) cell, as ``bench.proxies`` scores them."""
    from bench.proxies import BASELINES, PROXY_NAMES, InProcessContext
    from worker.evaluators.proxy import ProxyConfig, ProxyEvaluator

    evaluator = ProxyEvaluator(ProxyConfig(dataset=dataset, batch_size=batch_size, latency_repeats=1))
    with tempfile.TemporaryDirectory() as artifacts:
        scored = [evaluator.evaluate(space, arch, InProcessContext(Path(artifacts), i)) for i, arch in enumerate(archs)]
    return {name: [float(s[name]) for s in scored] for name in (*PROXY_NAMES, *BASELINES)}


# -- collapse ------------------------------------------------------------------------------------


def collapse(*, seeds: int, dataset: str, epochs: int, channels: int, cells_per_stage: int,
             darts: dict[str, Any], remedies: Sequence[str] = REMEDIES, progress: Progress = _quiet) -> dict[str, Any]:
    """Per remedy (none, darts-, early-stop, or those asked for), the derived cell of each seed and
    its skip / parameter-free counts; the epochs each run trained, and with early-stop the epoch
    whose cell it returned and every epoch's dominant Hessian eigenvalue."""
    from scion.configs.one_shot import OneShotConfig
    from spaces import make_space
    from worker.one_shot.darts import param_free
    from worker.one_shot.epochs import load_checkpoint

    if seeds < 1:
        raise BenchError(f"--collapse-seeds must be at least 1, got {seeds}")
    unknown = [r for r in remedies if r not in REMEDIES]
    if unknown or not remedies:
        raise BenchError(f"unknown remedy(ies) {', '.join(unknown) or '(none given)'}; allowed: {', '.join(REMEDIES)}")
    space = make_space(space_config(channels, cells_per_stage))
    train = train_config(dataset, epochs)
    report: dict[str, Any] = {"config": {"seeds": seeds, "dataset": dataset, "space": space.config.model_dump(
        mode="json"), "darts": method_config("darts", darts).model_dump(mode="json"), "remedies": list(remedies)},
        "remedies": {}}
    for remedy in remedies:
        method = method_config("darts", darts | {"remedy": remedy})
        runs = []
        for seed in range(seeds):
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as artifacts:
                trained = _supernet(OneShotConfig(method=method), train, space, Path(artifacts), seed)
                state = load_checkpoint(Path(artifacts) / "trial-0" / "checkpoint.pt")["method"]
            derived = space.validate(trained["candidates"][0])
            runs.append({"seed": seed, "arch": space.key(derived), "ops": list(derived),
                         "skip_connect": sum(op == "skip_connect" for op in derived),
                         "param_free": sum(param_free(op) for op in derived),
                         "val_acc": trained["val_acc"], "seconds": time.perf_counter() - started,
                         "epochs_trained": trained["epochs_trained"], "chosen_epoch": state.get("stopped_at"),
                         "hessian_eigenvalues": state.get("eigenvalues") or None,
                         "arch_weights": trained["last_epoch"].get("arch_weights")})
            r = runs[-1]
            stop = (f"  stopped after epoch {r['epochs_trained']}, cell of epoch {r['chosen_epoch']}"
                    if r["chosen_epoch"] is not None else "")
            progress(f"[collapse {remedy} seed {seed}] {r['arch']}  skip {r['skip_connect']}  "
                     f"parameter-free {r['param_free']}{stop}  {r['seconds']:.0f} s")
        report["remedies"][remedy] = {
            "distinct_cells": len({r["arch"] for r in runs}),
            "skip_connect": _mean_std([r["skip_connect"] for r in runs]),
            "param_free": _mean_std([r["param_free"] for r in runs]),
            "stopped_early": sum(r["chosen_epoch"] is not None for r in runs),
            "seconds": _mean_std([r["seconds"] for r in runs]),
            "runs": runs,
        }
    return report


# -- pipelines -----------------------------------------------------------------------------------


def pipeline_spec(name: str, *, seed: int, epochs: int, candidates: int, search_trials: int, retrain_top_k: int,
                  workers: int, channels: int, cells_per_stage: int, methods: dict[str, dict[str, Any]]) -> dict:
    """The job of pipeline ``name``: ``evolution`` trains every candidate with the recipe; the
    one-shot ones add a method and retrain their best ``retrain_top_k`` with the same recipe."""
    spec: dict[str, Any] = {
        "name": f"bench-one-shot-{name}-seed{seed}",
        "space": space_config(channels, cells_per_stage).model_dump(mode="json"),
        "evaluator": train_config("mnist1d", epochs).model_dump(mode="json"),
        "budget": {"max_trials": candidates, "max_parallel": workers},
        "seed": seed,
    }
    if name == BASELINE:
        return spec | {"strategy": {"type": "evolution"}}
    method = method_config(name, methods.get(name))
    one_shot = {"method": method.model_dump(mode="json"),
                "retrain_top_k": min(retrain_top_k, method.candidates() or retrain_top_k)}
    spec |= {"one_shot": one_shot}
    if method.uses_strategy:  # budget.max_trials: the search phase's scored sub-networks
        return spec | {"strategy": {"type": "evolution"}, "budget": spec["budget"] | {"max_trials": search_trials}}
    return spec | {"budget": {"max_parallel": workers}}  # the method proposes its own candidates


def _all_trials(client: Any, job_id: int) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    while True:
        page = client.trials(job_id, limit=500, offset=len(trials))
        trials += page["items"]
        if len(trials) >= page["total"] or not page["items"]:
            return trials


def measure(client: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job to its end: what it returns and what it cost."""
    started = time.perf_counter()
    job = client.wait(client.submit(spec)["id"], poll_s=1.0)
    trials = _all_trials(client, job["id"])
    best = job["best"] or {}
    phases: dict[str, float] = {}
    for t in trials:
        phase = t.get("phase") or "search"
        phases[phase] = phases.get(phase, 0.0) + (t["duration_s"] or 0.0)
    return {
        "job": job["id"], "status": job["status"], "error": job["error"], "trials": len(trials),
        "worker_seconds": sum(phases.values()), "phase_seconds": phases,
        "wall_seconds": time.perf_counter() - started,
        "best_trial": best.get("number"), "best_arch": best.get("arch_key"),
        "test_acc": (best.get("metrics") or {}).get("test_acc") if job["status"] == "completed" else None,
    }


def pipelines(*, names: Sequence[str], seeds: int, epochs: int, candidates: int, search_trials: int,
              retrain_top_k: int, workers: int, channels: int, cells_per_stage: int,
              methods: dict[str, dict[str, Any]], progress: Progress = _quiet) -> dict[str, Any]:
    """Every pipeline for seeds 0..seeds-1 on one embedded stack, then the target check."""
    from client.sdk import ScionClient
    from client.stack import LocalStack
    from scion.settings import Settings

    unknown = [n for n in names if n not in PIPELINES]
    if unknown or not names:
        raise BenchError(f"unknown pipeline(s) {', '.join(unknown) or '(none given)'}; allowed: {', '.join(PIPELINES)}")
    if seeds < 1:
        raise BenchError(f"--seeds must be at least 1, got {seeds}")
    sizes = {"epochs": epochs, "candidates": candidates, "search_trials": search_trials,
             "retrain_top_k": retrain_top_k, "workers": workers, "channels": channels,
             "cells_per_stage": cells_per_stage, "methods": methods}
    specs = {name: [pipeline_spec(name, seed=seed, **sizes) for seed in range(seeds)] for name in names}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as home, LocalStack(Settings(home=Path(home)), workers=workers) as stack, \
            ScionClient(stack.url) as client:
        for seed in range(seeds):
            for name in names:
                runs[name].append(measure(client, specs[name][seed]) | {"seed": seed})
                r = runs[name][-1]
                progress(f"[{name} seed {seed}] {r['status']}: test_acc {r['test_acc']}, "
                         f"{r['worker_seconds']:.0f} worker-s, {r['trials']} trials")
    summary = {name: _summarise(rows) for name, rows in runs.items()}
    return {"config": sizes | {"seeds": seeds, "dataset": "mnist1d", "pipelines": list(names)},
            "specs": {name: s[0] for name, s in specs.items()}, "summary": summary,
            "target": target_check(summary), "runs": runs}


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if r["test_acc"] is not None]
    acc = _mean_std([r["test_acc"] for r in done])
    cost = _mean_std([r["worker_seconds"] for r in rows])
    phases = dict.fromkeys(p for r in rows for p in r["phase_seconds"])
    return {"seeds": len(rows), "completed": len(done), "test_acc_mean": acc["mean"], "test_acc_std": acc["std"],
            "worker_seconds_mean": cost["mean"], "worker_seconds_std": cost["std"],
            "distinct_answers": len({r["best_arch"] for r in done}),
            "phase_seconds_mean": {p: statistics.fmean(r["phase_seconds"].get(p, 0.0) for r in rows) for p in phases},
            "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in rows)}


def target_check(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's target, per one-shot pipeline: mean test accuracy at least the baseline's mean
    minus one standard deviation of its seeds, mean worker-seconds at most a fifth of the
    baseline's, and every seed completed. ``met`` when some pipeline passes all three."""
    base = summary.get(BASELINE)
    if base is None:
        return {"met": None, "why": f"the baseline ({BASELINE}) was not run"}
    floor = base["test_acc_mean"] - base["test_acc_std"]
    budget = COST_FRACTION * base["worker_seconds_mean"]
    checks = {}
    for name in (n for n in ONE_SHOT if n in summary):
        s = summary[name]
        checks[name] = {
            "accuracy_ok": s["test_acc_mean"] >= floor,
            "cost_ok": s["worker_seconds_mean"] <= budget,
            "all_completed": s["completed"] == s["seeds"],
            "accuracy_gap": s["test_acc_mean"] - base["test_acc_mean"],
            "cost_ratio": s["worker_seconds_mean"] / base["worker_seconds_mean"],
        }
        checks[name]["met"] = all(checks[name][k] for k in ("accuracy_ok", "cost_ok", "all_completed"))
    return {"met": any(c["met"] for c in checks.values()) if checks else None, "accuracy_floor": floor,
            "worker_seconds_budget": budget, "pipelines": checks}


# -- the whole benchmark and its report -----------------------------------------------------------


def run(parts: Sequence[str], *, progress: Progress = _quiet, threads: int = 1, **options: Any) -> dict[str, Any]:
    """The parts asked for (``PARTS`` or ``GROUND_TRUTH``), with the options each takes."""
    import torch

    torch.set_num_threads(threads)
    shared = {k: options[k] for k in ("epochs", "channels", "cells_per_stage")}
    methods = options["methods"]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "torch_threads": threads},
        "command": options.get("command"),
    }
    started = time.perf_counter()
    if "ranking" in parts or GROUND_TRUTH in parts:
        report["ranking"] = ranking(datasets=options["datasets"], cells=options["cells"],
                                    sample_seed=options["sample_seed"], spos=methods.get("spos", {}),
                                    proxy_batch_size=options["proxy_batch_size"], out_dir=options["out_dir"],
                                    truth_only="ranking" not in parts, progress=progress, **shared)
    if "pipelines" in parts:
        report["pipelines"] = pipelines(names=options["pipelines"], seeds=options["seeds"],
                                        candidates=options["candidates"], search_trials=options["search_trials"],
                                        retrain_top_k=options["retrain_top_k"], workers=options["workers"],
                                        methods=methods, progress=progress, **shared)
    if "collapse" in parts:
        report["collapse"] = collapse(seeds=options["collapse_seeds"], dataset="mnist1d",
                                      darts=methods.get("darts", {}), remedies=options.get("remedies", REMEDIES),
                                      progress=progress, **shared)
    report["wall_seconds"] = time.perf_counter() - started
    return report


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


SCORE_LABELS = {"spos_no_recalibration": "SPOS inherited, no BN recalibration",
                "spos_recalibrated": "SPOS inherited, BN recalibrated"}


def markdown(report: dict[str, Any]) -> str:
    """The report's tables, one section per part that ran."""
    lines = ["```sh", report["command"], "```", ""] if report.get("command") else []
    if "ranking" in report:
        lines += _ranking_markdown(report["ranking"])
    if "pipelines" in report:
        lines += _pipelines_markdown(report["pipelines"])
    if "collapse" in report:
        lines += _collapse_markdown(report["collapse"])
    m = report["machine"]
    lines.append(f"CPU ({m['processor']}, {m['cpus']} cores shared with other work, {m['torch_threads']} torch "
                 f"thread(s) in process); wall time {report['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _ranking_markdown(r: dict[str, Any]) -> list[str]:
    c = r["config"]
    lines = [f"### Ranking: {c['cells']} NB201 cells (channels {c['space']['channels']}, "
             f"{c['space']['cells_per_stage']} cell per stage, sample seed {c['sample_seed']}) against their "
             f"validation accuracy trained standalone {c['recipe_epochs']} epochs", ""]
    for dataset, d in r["datasets"].items():
        acc = d["ground_truth"]["val_acc"]
        lines.append(f"`{dataset}`: ground truth val acc {acc['min']:.1f}–{acc['max']:.1f}% (median "
                     f"{acc['median']:.1f}).")
        if "correlations" not in d:
            lines.append("")
            continue
        s = d["supernet"]
        lines += [f"SPOS supernet ({c['spos']['epochs']} epochs, {s['supernet_params']:,} parameters) trained in "
                  f"{s['seconds']:.0f} s; recalibration on {s['recalibration_batches']} batches.", "",
                  "| score | Kendall τ | Spearman ρ | 95% bootstrap interval (ρ) | undefined |",
                  "| --- | ---: | ---: | --- | ---: |"]
        for name, corr in d["correlations"].items():
            label = SCORE_LABELS.get(name, f"{name} (baseline)" if name in ("params", "flops") else name)
            lines.append(f"| {label} | {_f(corr['kendall'])} | {_f(corr['spearman'])} | "
                         f"[{_f(corr['spearman_low'], 2)}, {_f(corr['spearman_high'], 2)}] | {corr['undefined']} |")
        lines.append("")
    return lines


def _pipelines_markdown(p: dict[str, Any]) -> list[str]:
    c = p["config"]
    lines = [f"### Cost against quality on `mnist1d` ({c['seeds']} seeds; recipe {c['epochs']} epochs; "
             f"regularized evolution trains {c['candidates']} candidates, SPOS + evolution scores "
             f"{c['search_trials']}; the one-shot pipelines retrain their best {c['retrain_top_k']})", "",
             "| pipeline | test acc (mean ± std) | worker-s (mean ± std) | of which by phase | vs evolution's worker-s "
             "| completed | distinct answers | target |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    target = p["target"]
    for name, s in p["summary"].items():
        check = target.get("pipelines", {}).get(name)
        verdict = "baseline" if name == BASELINE else ("met" if check and check["met"] else "not met")
        ratio = f"{check['cost_ratio']:.3f}" if check else "–"
        phases = ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in s["phase_seconds_mean"].items())
        lines.append(f"| {name} | {_f(s['test_acc_mean'], 2)} ± {_f(s['test_acc_std'], 2)} | "
                     f"{_f(s['worker_seconds_mean'], 0)} ± {_f(s['worker_seconds_std'], 0)} | {phases} | {ratio} | "
                     f"{s['completed']}/{s['seeds']} | {s['distinct_answers']} | {verdict} |")
    if target["met"] is None:
        lines += ["", f"Target not checked: {target.get('why', 'no one-shot pipeline ran')}.", ""]
    else:
        lines += ["", f"Target (a one-shot pipeline's mean test accuracy ≥ {_f(target['accuracy_floor'], 2)}, "
                      f"evolution's mean minus one std, with ≤ {_f(target['worker_seconds_budget'], 0)} worker-s, a "
                      f"fifth of evolution's): **{'met' if target['met'] else 'not met'}**.", ""]
    return lines


REMEDY_LABELS = {"none": "none (plain DARTS)", "darts-": "darts- (auxiliary skip)",
                 "early-stop": "early-stop (DARTS-ES)"}


def _collapse_markdown(r: dict[str, Any]) -> list[str]:
    c = r["config"]
    lines = [f"### Collapse: DARTS on NB201 / `{c['dataset']}`, {c['seeds']} seeds, {c['darts']['epochs']} epochs; "
             f"operations of the derived cell (of 6)", "",
             "| remedy | skip_connect (mean ± std) | parameter-free (mean ± std) | per seed (skip / parameter-free) "
             "| epochs trained (→ epoch of the cell returned) | distinct cells | seconds per run |",
             "| --- | ---: | ---: | --- | --- | ---: | ---: |"]
    for remedy, s in r["remedies"].items():
        per_seed = ", ".join(f"{run['skip_connect']}/{run['param_free']}" for run in s["runs"])
        epochs = ", ".join(f"{run['epochs_trained']}" if run["chosen_epoch"] is None
                           else f"{run['epochs_trained']} → {run['chosen_epoch']}" for run in s["runs"])
        lines.append(f"| {REMEDY_LABELS.get(remedy, remedy)} | {_f(s['skip_connect']['mean'], 2)} ± "
                     f"{_f(s['skip_connect']['std'], 2)} | {_f(s['param_free']['mean'], 2)} ± "
                     f"{_f(s['param_free']['std'], 2)} | {per_seed} | {epochs} | {s['distinct_cells']} | "
                     f"{_f(s['seconds']['mean'], 0)} |")
    lines += ["", "Parameter-free: none, skip_connect and pooling."]
    if "early-stop" in r["remedies"]:
        d = c["darts"]
        lines.append(f"DARTS-ES: the Hessian's dominant eigenvalue smoothed over k = {d['stop_window']} epochs; a run "
                     f"stops when the smoothed value k epochs back is below {d['stop_ratio']} of the latest and "
                     f"returns the cell of that earlier epoch ({d['hessian_steps']} power-iteration steps at most on "
                     f"{d['hessian_batches']} batch(es) of the architecture half).")
    return [*lines, ""]


__all__ = ["CACHE_NAME", "GROUND_TRUTH", "METHOD_DEFAULTS", "PARTS", "PIPELINES", "REMEDIES", "BenchError",
           "collapse", "markdown", "method_config", "pipeline_spec", "pipelines", "ranking", "run", "target_check"]
