"""The default workers shared between jobs, as real processes: `scion worker` runs the cheap queues on
a Celery worker of their own, so a table look-up job finishes while every training slot is busy,
each Celery worker says what it is by its node name and its row in the workers table, and SIGTERM
stops them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings
from storage import repository as repo
from storage.db import autocommit
from storage.migrate import upgrade
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def live_workers(db_url: str) -> list:
    with autocommit(db_url) as connection:
        return repo.live_workers(connection, fresh_s=60)


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.2)
    return value


def test_a_cheap_job_completes_while_every_training_slot_is_busy(tmp_path, nb201_csv):
    training = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    training["space"] |= {"channels": 4, "cells_per_stage": 1}
    training["evaluator"] |= {"epochs": 500}  # far longer than this test
    training["budget"] = {"max_trials": 4, "max_parallel": 2}
    tabular = {"name": "look-ups", "space": {"type": "nb201"}, "strategy": {"type": "random"},
               "evaluator": {"type": "tabular", "table": str(nb201_csv)},
               "budget": {"max_trials": 40, "max_parallel": 8}, "seed": 0}
    settings = Settings(home=tmp_path / "home")
    with LocalStack(settings, workers=1) as stack, ScionClient(stack.url) as client:
        names = {w.name.split("-")[0]: w for w in wait_until(lambda: len(live_workers(settings.db_url)) == 2
                                                              and live_workers(settings.db_url), 60, "two workers")}
        assert set(names) == {"gpu", "cpu"}  # <role>-<pid>@<host>, one Celery worker each
        assert (names["gpu"].queues, names["gpu"].slots) == ("gpu", 1)
        assert (names["cpu"].queues, names["cpu"].slots, names["cpu"].device) == ("cpu,export", 1, "cpu")
        assert all("@" in w.name and w.name.split("-")[1].split("@")[0].isdigit() for w in names.values())

        busy = client.submit(training)["id"]
        wait_until(lambda: client.job(busy)["counts"].get("running"), 90, "a training trial to run")
        started = time.monotonic()
        done = client.wait(client.submit(tabular)["id"], poll_s=0.1, timeout_s=60)
        took = time.monotonic() - started

        assert done["status"] == "completed" and done["counts"] == {"completed": 40}
        assert took < 30, f"the look-ups took {took:.1f} s behind the training trial"
        assert done["queue_wait"]["waiting"] == 0 and done["queue_wait"]["max_s"] < 10
        training_now = client.job(busy)
        assert training_now["counts"].get("running") == 1 and "completed" not in training_now["counts"]
        # Its fair share of the one training slot: one trial running, none queued behind it.
        assert training_now["queue_wait"]["waiting"] == 0, training_now["queue_wait"]
        trials = client.trials(busy)["items"]
        assert [t["queue_wait_s"] is not None for t in trials] == [True]
        client.cancel(busy)


def test_scion_worker_stops_both_of_its_celery_workers_on_sigterm(tmp_path):
    home = tmp_path / "home"
    settings = Settings(home=home)
    upgrade(settings.db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")} | {"SCION_HOME": str(home)}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "client", "worker", "--concurrency", "1", "--name", "box"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        rows = wait_until(lambda: len(live_workers(settings.db_url)) == 2 and live_workers(settings.db_url), 90,
                          "two workers to register")
        assert sorted(w.name.split("-")[1] for w in rows) == ["cpu", "gpu"]
        assert all(w.name.startswith("box-") for w in rows)
        children = [int(w.name.split("-")[2].split("@")[0]) for w in rows]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert live_workers(settings.db_url) == []  # each removed its row: its slots are gone at once
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
