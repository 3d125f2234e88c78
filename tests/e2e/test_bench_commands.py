"""The speed benchmarks a user runs, on tiny sizes: each finishes and writes its named figures.

Not timed: the figures depend on the machine; what is checked is that the runs happened (every
trial counted, every part of the stack found and measured) and that the JSON says so."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PG_URL

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def _bench(tmp_path, redis_url, *args: str) -> dict:
    out = tmp_path / "bench.json"
    broker = redis_url.rsplit("/", 1)[0] + "/11"  # emptied by the benchmark
    result = subprocess.run(
        [sys.executable, "-m", "client", "bench", *args, "--database-url", PG_URL, "--broker", broker,
         "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


def test_scheduler_bench_times_every_case(tmp_path, postgres_url, redis_url, nb201_csv):
    report = _bench(tmp_path, redis_url, "scheduler", "--table", str(nb201_csv), "--sizes", "10,200",
                    "--measured", "20", "--jobs", "3")
    cases = report["cases"]
    assert [(c["jobs"], c["finished_per_job"]) for c in cases] == [(1, 10), (1, 200), (3, 100)]
    assert [c["measured_trials"] for c in cases] == [20, 20, 30]
    assert all(c["cpu_ms_per_trial"] > 0 and c["statements_per_trial"] > 0 for c in cases)
    assert report["cpu_per_trial_largest_vs_smallest"] > 0 and report["cpu_per_trial_many_jobs_vs_one"] > 0


def test_scaling_bench_measures_throughput_and_where_the_cpu_went(tmp_path, postgres_url, redis_url, nb201_csv):
    report = _bench(tmp_path, redis_url, "scaling", "--table", str(nb201_csv), "--workers", "1",
                    "--tabular-trials", "30", "--training-trials", "0")
    assert list(report["workloads"]) == ["tabular"]
    (run,) = report["workloads"]["tabular"]["runs"]
    assert run["trials"] == 30 and run["worker_processes"] == 1 and run["trials_per_s"] > 0
    assert run["speedup_vs_one_worker"] == 1.0
    assert set(run["cores"]) == {"api", "scheduler", "worker", "postgres", "redis"}
    assert run["cpu_s"]["worker"] > 0 and run["cpu_s"]["scheduler"] > 0 and run["cpu_s"]["postgres"] > 0
    assert 0 < run["machine_busy"] <= 1 and run["bottleneck"]
    assert run["cpu_ms_per_trial"]["scheduler"] > 0
    assert set(run["idle_machine_ceiling_trials_per_s"]) == {"machine CPU", "scheduler"}


def test_fairness_bench_times_the_look_ups_with_the_workers_shared_and_without(tmp_path, nb201_csv):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "client", "bench", "fairness", "--table", str(nb201_csv), "--training-jobs", "1",
         "--training-trials", "2", "--epochs", "300", "--tabular-trials", "10", "--workers", "1",
         "--limit-s", "20", "--window-s", "1", "--json", str(out)], capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    shared, single = json.loads(out.read_text())["layouts"]
    assert shared["tabular"]["finished"] and shared["tabular"]["completed"] == 10
    assert shared["tabular"]["wall_s"] < 20 and shared["tabular"]["queue_wait"]["waiting"] == 0
    # One Celery worker for every queue: the look-ups wait behind the training trial, which outlasts the limit.
    assert not single["tabular"]["finished"] and single["tabular"]["wall_s"] is None
    assert single["tabular"]["queue_wait"]["waiting"] >= 1
    assert [t["job"] for t in shared["training"]] == ["training-0"] == [t["job"] for t in single["training"]]
