"""``scion bench one-shot --part pipelines`` on tiny sizes, through a real embedded stack: every
pipeline's job completes and is measured (its retrained network's test accuracy, the worker-seconds
of its trials by phase), and the target is judged against the baseline that ran."""
from __future__ import annotations

import pytest

from bench import one_shot as bench

pytestmark = pytest.mark.slow

TINY_METHODS = {"spos": {"epochs": 1}, "darts": {"epochs": 1},
                "enas": {"epochs": 1, "controller_steps": 1, "controller_aggregate": 2, "samples": 2}}


def test_every_pipeline_completes_and_is_measured():
    report = bench.pipelines(names=bench.PIPELINES, seeds=1, epochs=1, candidates=3, search_trials=3,
                             retrain_top_k=1, workers=2, channels=4, cells_per_stage=1, methods=TINY_METHODS)
    for name in bench.PIPELINES:
        (run,) = report["runs"][name]
        assert run["status"] == "completed", run
        assert 0 < run["test_acc"] <= 100 and run["worker_seconds"] > 0
        assert sum(run["phase_seconds"].values()) == pytest.approx(run["worker_seconds"])
    assert report["runs"]["evolution"][0]["trials"] == 3
    assert set(report["runs"]["spos"][0]["phase_seconds"]) == {"supernet", "search", "retrain"}
    assert report["runs"]["spos"][0]["trials"] == 1 + 3 + 1  # supernet, search, retrain
    assert set(report["target"]["pipelines"]) == {"spos", "darts", "enas"}
    assert isinstance(report["target"]["met"], bool)
    assert "| evolution |" in bench.markdown({"pipelines": report, "wall_seconds": 1.0,
                                              "machine": {"processor": "x", "cpus": 1, "torch_threads": 1}})
