"""``scion bench strategies``: the harness that judges search strategies on a tabular benchmark.

What a user relies on: the same command gives the same figures, incumbent curves only improve,
the reports are written, a typo in a strategy name says what exists, and no strategy ever sees
the held-out 200-epoch test accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench import strategies as bench
from client.cli import app
from scheduler.strategies import STRATEGIES, make_strategy
from spaces import SPACES, make_space
from worker.evaluators.nb201_table import load_table

TABLE = Path(__file__).resolve().parents[3] / "shared/data/nb201_cifar10.csv"

pytestmark = pytest.mark.skipif(not TABLE.exists(), reason=f"{TABLE} not present")


def test_the_table_keeps_only_the_columns_the_benchmark_may_use():
    table = load_table(TABLE)
    assert len(table) == 15625 and table.best_test == pytest.approx(94.37, abs=0.01)
    assert sorted(vars(table)) == ["index", "name", "path", "test", "val"]


def _curves(report):
    return {
        (p, label): (s["curves"]["test_mean"], s["curves"]["val_mean"], s["at"], s["final_test"])
        for p, per in report["results"].items()
        for label, s in per.items()
    }


@pytest.fixture(scope="module")
def report():
    return bench.run_benchmark(TABLE, ["rs", "rea"], budget=30, seeds=3, parallel=[1, 4], jobs=2)


def test_runs_are_deterministic(report):
    again = bench.run_benchmark(TABLE, ["rs", "rea"], budget=30, seeds=3, parallel=[1, 4], jobs=1)
    assert _curves(again) == _curves(report)
    assert set(report["results"]) == {"1", "4"}
    assert set(report["results"]["4"]) == {"rs", "rea"}


def test_incumbent_curves_never_get_worse_in_val_and_stay_in_the_table_range(report):
    table = load_table(TABLE)
    lo, hi = float(table.test.min()), float(table.test.max())
    for per in report["results"].values():
        for s in per.values():
            val = np.asarray(s["curves"]["val_mean"])
            assert len(val) == 30
            assert np.all(np.diff(val) >= -1e-9)
            at25 = s["at"]["25"]
            assert lo <= at25["test_mean"] <= hi
            assert at25["test_std"] >= 0
            assert float(table.val.min()) <= at25["val_mean"] <= float(table.val.max())
            assert s["ended_early"] == 0 and s["evaluations_min"] == 30
            assert s["ask_ms"]["max"] >= s["ask_ms"]["median"] > 0
    assert report["checkpoints"] == [25]


def test_each_run_is_monotone_per_seed():
    table = load_table(TABLE)
    for p in (1, 4):
        run = bench.run_one((str(TABLE), "rea", "evolution", {}, 1, p, 30, "nb201"))
        assert run.evaluations == 30 and len(run.ask_ms) >= 30 and len(run.tell_ms) == 30
        assert all(b >= a for a, b in zip(run.inc_val, run.inc_val[1:]))
        # the reported test accuracy is the one of the best-val architecture seen so far
        assert run.inc_test[-1] in set(table.test[table.val == run.inc_val[-1]].tolist())


def test_reports_are_written(report, tmp_path):
    out = tmp_path / "out"
    bench.write_json(report, out / "r.json")
    bench.write_markdown(report, out / "r.md")
    bench.plot(report, out / "img" / "r.png")
    data = json.loads((out / "r.json").read_text())
    at_25 = report["results"]["1"]["rea"]["at"]["25"]
    assert data["results"]["1"]["rea"]["at"]["25"]["test_mean"] == at_25["test_mean"]
    md = (out / "r.md").read_text()
    assert "| P | strategy | test @25 |" in md and "rea (evolution)" in md
    assert (out / "img" / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = out / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{bench.DOC_BEGIN}\nold table\n{bench.DOC_END}\n\n![plot](img/r.png)\n")
    bench.update_doc(doc, md)
    text = doc.read_text()
    assert "old table" not in text and md.strip() in text and text.endswith("![plot](img/r.png)\n")


def test_cli_writes_json_and_markdown(tmp_path):
    result = CliRunner().invoke(app, [
        "bench", "strategies", "--table", str(TABLE), "--strategies", "rs,rea", "--budget", "30",
        "--seeds", "2", "--parallel", "1,4", "--jobs", "1", "--config", 'rea={"population_size": 10}',
        "--json", str(tmp_path / "s.json"), "--markdown", str(tmp_path / "s.md"),
    ])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["parallel"] == [1, 4]
    assert data["results"]["4"]["rea"]["config"]["population_size"] == 10
    assert "scion bench strategies" in (tmp_path / "s.md").read_text()


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(bench.BenchError, match=r"unknown strategy 'nope'; available: .*rea \(evolution\)"):
        bench.run_benchmark(TABLE, ["rs", "nope"], budget=5, seeds=1)
    result = CliRunner().invoke(app, ["bench", "strategies", "--table", str(TABLE), "--strategies", "rs,nope"])
    assert result.exit_code == 2
    assert "unknown strategy 'nope'" in result.output
    assert "Traceback" not in result.output


def test_a_malformed_table_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,val_acc_12ep,test_acc_200ep\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,low,2\n")
    with pytest.raises(bench.BenchError, match=r"bad\.csv:2: val_acc_12ep 'low' is not a number"):
        bench.run_benchmark(bad, ["rs"], budget=5, seeds=1, jobs=1)


def test_bad_config_is_a_clear_error():
    with pytest.raises(bench.BenchError, match="population_size"):
        bench.run_benchmark(TABLE, ["rea"], budget=5, seeds=1, overrides={"evolution": {"population_size": 1}})
    with pytest.raises(bench.BenchError, match="not among --strategies"):
        bench.strategy_specs(["rs"], bench.parse_config_overrides(['rea={"population_size": 10}']))


class Recording:
    """Wraps a strategy and keeps every result it is told."""

    def __init__(self, inner):
        self.inner, self.space, self.told = inner, inner.space, []

    def ask(self):
        return self.inner.ask()

    def tell(self, result):
        self.told.append(result)
        self.inner.tell(result)


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_a_strategy_sees_val_acc_12ep_only(name):
    table = load_table(TABLE)
    space = make_space(SPACES["nb201"].config())
    wrapped = Recording(make_strategy(STRATEGIES[name].config(), space, 0))
    run = bench.simulate(wrapped, table, budget=40, parallel=4, seed=0)
    assert run.evaluations == 40 == len(wrapped.told)
    test_values = set(table.test.tolist())
    for result in wrapped.told:
        row = table.index[space.key(result.arch)]
        assert result.score == table.val[row]
        assert result.objectives == {"val_acc_12ep": table.val[row]}
        seen = {result.score, *result.objectives.values(), *getattr(result, "scores", {}).values()}
        assert table.test[row] not in seen
        assert not (seen - {table.val[row]}) & test_values
