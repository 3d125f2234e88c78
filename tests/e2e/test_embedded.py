"""`scion run` on the embedded stack (SQLite, filesystem broker, local processes), as a new
user runs it: a subprocess, from the repository root, with nothing configured."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def scion_run(spec: Path, home: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")}
    env["SCION_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "client", "run", str(spec), *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_tabular_example_completes_and_reports_held_out_accuracy(tmp_path, nb201_csv):
    result = scion_run(REPO / "examples" / "tabular-nb201.yaml", tmp_path / "home", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads(result.stdout)
    assert job["status"] == "completed"
    assert job["counts"] == {"completed": 100}
    best = job["best"]
    assert best["metrics"]["val_acc_12ep"] == best["objective"]
    with nb201_csv.open() as f:
        table_best = max(float(row["test_acc_200ep"]) for row in csv.DictReader(f))
    assert 85.0 < best["metrics"]["test_acc_200ep"] <= table_best
    assert len(best["arch"]) == 6


def test_training_job_with_a_broken_candidate_completes_and_shows_leaderboard(tmp_path):
    """Real training through the whole stack; the warm-start candidate with every edge `none`
    trains (to chance), proving even degenerate cells are scored rather than crashing."""
    spec = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    spec["space"] |= {"channels": 4, "cells_per_stage": 1}
    spec["evaluator"] |= {"epochs": 1}
    spec["budget"] = {"max_trials": 4, "max_parallel": 2}
    spec["warm_start"] = ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = scion_run(path, tmp_path / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "completed" in out and "leaderboard" in out and "best trial" in out
    home = (tmp_path / "home").resolve()
    assert f"(database sqlite:///{home / 'scion.db'}, 2 workers, logs in {home / 'logs'})" in result.stderr
    assert "using the embedded stack at http://127.0.0.1:" in result.stderr  # which API it used
    assert "val_acc" in out and "params" in out


def test_bad_spec_is_refused_with_the_field_and_allowed_values(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"space": {"type": "nb201"}, "strategy": {"type": "annealing"},
                                    "evaluator": {"type": "train", "dataset": "digits"}}))
    result = scion_run(path, tmp_path / "home", timeout=120)
    assert result.returncode == 1
    assert "strategy" in result.stderr and "evolution" in result.stderr and "random" in result.stderr


def test_a_worker_that_dies_ends_the_run_with_its_log_named_instead_of_a_wait_forever(tmp_path):
    spec = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    spec["space"] |= {"channels": 4, "cells_per_stage": 1}
    spec["evaluator"] |= {"epochs": 200}
    spec["budget"] = {"max_trials": 2, "max_parallel": 2}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")}
    env["SCION_HOME"] = str(tmp_path / "home")
    run = subprocess.Popen([sys.executable, "-m", "client", "run", str(path)], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (worker := _child(run.pid, "client worker")) or not _trial_started(tmp_path / "home"):
            assert run.poll() is None and time.monotonic() < deadline, "the search did not start"
            time.sleep(0.2)
        os.kill(worker, signal.SIGKILL)
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1
    unwrapped = "".join(stderr.split())  # the console wraps long lines
    assert "workerexited" in unwrapped and "logs/worker.log" in unwrapped, stderr[-2000:]


def _child(parent: int, command: str) -> int | None:
    """The pid of ``parent``'s child process whose command line holds ``command``."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == parent and command in line:
            return int(entry.name)
    return None


def _trial_started(home: Path) -> bool:
    log = home / "logs" / "worker.log"
    return log.exists() and "ready" in log.read_text()
