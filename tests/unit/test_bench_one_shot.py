"""``scion bench one-shot`` on tiny sizes: every part runs, its report has the promised shape and
sane values, the ground truth is trained once, and the target is judged as the issue states it."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from bench import one_shot as bench
from bench.ground_truth import GroundTruthCache, train_cells
from bench.proxies import PROXY_NAMES, sample_cells
from client.cli import app
from scion.spec import JobRequest
from spaces import make_space
from worker.evaluators.train import TrainEvaluator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"epochs": 1, "channels": 4, "cells_per_stage": 1}
SPOS_TINY = {"epochs": 1, "recalibration_batches": 2}


def test_ground_truth_is_trained_once_and_kept_per_recipe(tmp_path, monkeypatch):
    space = make_space(bench.space_config(4, 1))
    archs = sample_cells(space, 3, seed=0)
    cache = GroundTruthCache(tmp_path / bench.CACHE_NAME)
    first = train_cells(space, archs, bench.train_config("digits", 1), cache)
    assert [row["arch"] for row in first] == [space.key(a) for a in archs]
    assert all(0 <= row["val_acc"] <= 100 and row["params"] > 0 for row in first)

    def refuse(*args, **kwargs):
        raise AssertionError("a cached cell was trained again")

    monkeypatch.setattr(TrainEvaluator, "evaluate", refuse)
    assert train_cells(space, archs, bench.train_config("digits", 1), GroundTruthCache(cache.path)) == first
    with pytest.raises(AssertionError, match="trained again"):  # another recipe is another ground truth
        train_cells(space, archs, bench.train_config("digits", 2), cache)
    assert sample_cells(space, 5, seed=0)[:3] == archs  # a larger sample reuses a smaller one's cells


def test_ranking_correlates_spos_with_and_without_recalibration_and_the_proxies(tmp_path):
    report = bench.ranking(datasets=("digits",), cells=4, sample_seed=0, spos=SPOS_TINY, proxy_batch_size=16,
                           out_dir=tmp_path, **TINY)
    digits = report["datasets"]["digits"]
    assert set(digits["correlations"]) == {"spos_no_recalibration", "spos_recalibrated", *PROXY_NAMES,
                                           "params", "flops"}
    for corr in digits["correlations"].values():
        assert all(math.isnan(corr[k]) or -1 <= corr[k] <= 1 for k in ("kendall", "spearman"))
    assert len(digits["rows"]) == 4 and all(0 <= r["spos_recalibrated"] <= 100 for r in digits["rows"])
    assert digits["supernet"]["supernet_params"] > 0 and digits["supernet"]["recalibration_batches"] == 2
    assert (tmp_path / bench.CACHE_NAME).exists()
    text = bench.markdown({"ranking": report, "machine": {"processor": "x", "cpus": 1, "torch_threads": 1},
                           "wall_seconds": 1.0})
    assert "| SPOS inherited, BN recalibrated |" in text and "| synflow |" in text


def test_collapse_counts_skip_and_parameter_free_operations_of_the_derived_cells():
    report = bench.collapse(seeds=2, dataset="mnist1d", darts={"epochs": 1}, **TINY)
    assert list(report["remedies"]) == ["none", "darts-", "early-stop"]
    for remedy in report["remedies"].values():
        assert [r["seed"] for r in remedy["runs"]] == [0, 1]
        for run in remedy["runs"]:
            assert len(run["ops"]) == 6 and 0 <= run["skip_connect"] <= run["param_free"] <= 6
            assert run["epochs_trained"] == 1 and run["chosen_epoch"] is None  # too few epochs to stop early
        assert remedy["skip_connect"]["mean"] == sum(r["skip_connect"] for r in remedy["runs"]) / 2
        first, second = (run["arch_weights"]["cell"] for run in remedy["runs"])
        assert len(first) == 6 and first != second  # each seed its own run
    assert all(len(run["hessian_eigenvalues"]) == 1 for run in report["remedies"]["early-stop"]["runs"])
    assert report["remedies"]["none"]["runs"][0]["hessian_eigenvalues"] is None  # measured with DARTS-ES only
    text = bench.markdown({"collapse": report, "machine": {"processor": "x", "cpus": 1, "torch_threads": 1},
                           "wall_seconds": 1.0})
    assert "| early-stop (DARTS-ES) |" in text and "k = 5" in text


def test_collapse_runs_the_remedies_asked_for_and_refuses_unknown_ones():
    report = bench.collapse(seeds=1, dataset="mnist1d", darts={"epochs": 1}, remedies=("early-stop",), **TINY)
    assert list(report["remedies"]) == ["early-stop"]
    with pytest.raises(bench.BenchError, match="allowed: none, darts-, early-stop"):
        bench.collapse(seeds=1, dataset="mnist1d", darts={"epochs": 1}, remedies=("darts+",), **TINY)


def test_every_pipeline_is_a_valid_job():
    sizes = {"seed": 0, "epochs": 1, "candidates": 10, "search_trials": 5, "retrain_top_k": 2, "workers": 2,
             "channels": 4, "cells_per_stage": 1, "methods": {"spos": {"epochs": 1}}}
    for name in bench.PIPELINES:
        spec = bench.pipeline_spec(name, **sizes)
        JobRequest.model_validate(spec)
        assert spec["evaluator"]["epochs"] == 1 and spec["evaluator"]["dataset"]["type"] == "mnist1d"
    assert bench.pipeline_spec("spos", **sizes)["budget"]["max_trials"] == 5
    assert bench.pipeline_spec("evolution", **sizes)["budget"]["max_trials"] == 10
    assert bench.pipeline_spec("darts", **sizes)["one_shot"]["retrain_top_k"] == 1  # DARTS proposes one cell


def _summary(acc: float, std: float, seconds: float, completed: int = 3) -> dict:
    return {"seeds": 3, "completed": completed, "test_acc_mean": acc, "test_acc_std": std,
            "worker_seconds_mean": seconds}


def test_the_target_needs_accuracy_within_one_std_at_a_fifth_of_the_cost_on_every_seed():
    base = _summary(90.0, 1.0, 1000.0)
    target = bench.target_check({"evolution": base, "spos": _summary(89.1, 3.0, 200.0),
                                 "darts": _summary(88.9, 0.1, 50.0), "enas": _summary(95.0, 0.1, 201.0)})
    assert target["met"] is True and target["accuracy_floor"] == 89.0
    assert [name for name, c in target["pipelines"].items() if c["met"]] == ["spos"]
    assert not target["pipelines"]["darts"]["accuracy_ok"] and not target["pipelines"]["enas"]["cost_ok"]
    failed = bench.target_check({"evolution": base, "spos": _summary(95.0, 0.0, 10.0, completed=2)})
    assert failed["met"] is False and not failed["pipelines"]["spos"]["all_completed"]
    assert bench.target_check({"spos": base})["met"] is None


def test_cli_writes_the_json_and_prints_the_table(tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["bench", "one-shot", "--part", "collapse", "--collapse-seeds", "1",
                                      "--remedies", "none,early-stop", "--epochs", "1", "--channels", "4",
                                      "--darts", '{"epochs": 1}', "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report) >= {"collapse", "machine", "command"} and "ranking" not in report
    assert list(report["collapse"]["remedies"]) == ["none", "early-stop"]
    assert "| none (plain DARTS) |" in result.output and "--part collapse" in report["command"]
    bad = CliRunner().invoke(app, ["bench", "one-shot", "--part", "everything"])
    assert bad.exit_code != 0 and "ranking" in bad.output
