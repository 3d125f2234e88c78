"""What an operator reads in the processes' logs (SCION_HOME/logs on the embedded stack): a start
line per worker, a line per trial outcome and per job transition, the scheduler's shutdown, the
API's writes at info and its polls at debug only; every line timestamped, as text or as JSON."""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from client.sdk import ScionClient
from client.stack import LocalStack
from scion.settings import Settings
from tests.integration.harness import wait_for

pytestmark = pytest.mark.slow

IN_TABLE = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
NOT_IN_TABLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
TEXT_LINE = re.compile(r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[\w.]+)"
                       r"(?: \[(?P<where>[^\]]+)\])?: (?P<msg>.*)")
# Celery's own notice, printed outside logging when the worker is told to stop (no setting turns it off).
CELERY_SHUTDOWN_NOTICE = "worker: Warm shutdown (MainProcess)"


def _tabular(table: Path, name: str, archs: list[str]) -> dict:
    return {"name": name, "space": {"type": "nb201"}, "strategy": {"type": "random"},
            "evaluator": {"type": "tabular", "table": str(table)},
            "budget": {"max_trials": len(archs), "max_parallel": 1}, "warm_start": archs}


def _records(text: str, fmt: str) -> list[dict]:
    """Each log record as a dict (level, logger, msg and, in JSON, its fields); fails on a line
    without a timestamp."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line == CELERY_SHUTDOWN_NOTICE:
            continue
        if fmt == "json":
            record = json.loads(line)
            datetime.fromisoformat(record["ts"])
            records.append(record)
        elif line[0].isspace():  # a further line of the record above (a traceback, a multi-line warning)
            records[-1]["msg"] += "\n" + line
        else:
            match = TEXT_LINE.fullmatch(line)
            assert match, f"a log line without a timestamp: {line!r}"
            records.append(match.groupdict())
    return records


def _find(records: list[dict], pattern: str) -> dict:
    found = [r for r in records if re.search(pattern, r["msg"])]
    assert len(found) == 1, (pattern, [r["msg"] for r in records])
    return found[0]


@pytest.mark.parametrize(("fmt", "level"), [("text", "info"), ("json", "debug")])
def test_processes_log_outcomes_and_transitions_with_timestamps(tmp_path, fmt, level):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    table = home / "data" / "two.csv"
    table.write_text(f"arch,val_acc_12ep,test_acc_12ep,test_acc_200ep\n{IN_TABLE},63.364,69.55,85.8633\n")
    env = {"SCION_LOG_FORMAT": fmt, "SCION_LOG_LEVEL": level}
    with LocalStack(Settings(home=home), workers=1, env=env) as stack, ScionClient(stack.url) as client:
        mixed = client.submit(_tabular(table, "one-each", [IN_TABLE, NOT_IN_TABLE]))["id"]
        assert client.wait(mixed, poll_s=0.2, timeout_s=60)["counts"] == {"completed": 1, "failed": 1}
        failing = client.submit(_tabular(table, "none-completes", [NOT_IN_TABLE]))["id"]
        assert client.wait(failing, poll_s=0.2, timeout_s=60)["status"] == "failed"
        cancelled = client.submit({
            "name": "to-cancel", "space": {"type": "nb201", "channels": 4, "cells_per_stage": 1},
            "strategy": {"type": "random"}, "evaluator": {"type": "train", "dataset": "digits", "epochs": 100},
            "budget": {"max_trials": 1, "max_parallel": 1}})["id"]
        wait_for(lambda: client.job(cancelled)["counts"].get("running"), timeout=60, what="a running trial",
                 interval=0.2)
        client.cancel(cancelled)
        wait_for(lambda: ") stopped in " in (stack.logs / "worker.log").read_text(), timeout=30,
                 what="the worker to stop the cancelled trial", interval=0.2)
    logs = {name: _records((home / "logs" / f"{name}.log").read_text(), fmt)
            for name in ("api", "scheduler", "worker")}

    worker = logs["worker"]
    ready = {role: _find(worker, rf"^worker ready: 1 process\(es\) on cpu, queues {queues}$")
             for role, queues in (("gpu", "gpu"), ("cpu", "cpu, export"))}  # training and cheap trials apart
    outcomes = {
        "completed": _find(worker, rf"^trial \d+ \(job {mixed}, number 0\) completed in [\d.]+ s: objective 63\.364$"),
        "failed": _find(worker, rf"^trial \d+ \(job {mixed}, number 1\) failed in [\d.]+ s: architecture .* is not "
                                rf"in table"),
        "stopped": _find(worker, rf"^trial \d+ \(job {cancelled}, number 0\) stopped in [\d.]+ s: stop requested"),
    }
    assert [outcomes[s]["level"] for s in ("completed", "failed", "stopped")] == ["INFO", "WARNING", "INFO"]
    by_role = [("gpu", ready["gpu"]), ("cpu", ready["cpu"]), ("cpu", outcomes["completed"]),
               ("cpu", outcomes["failed"]), ("gpu", outcomes["stopped"])]
    for role, record in by_role:  # each names the worker's node (its role, unique) and its device
        if fmt == "json":
            assert re.fullmatch(rf"{role}-\d+@\S+", record["worker"]) and record["device"] == "cpu", record
        else:
            assert re.fullmatch(rf"{role}-\d+@\S+ cpu", record["where"]), record
    if fmt == "json":
        assert outcomes["completed"]["job_id"] == mixed and outcomes["completed"]["objective"] == 63.364
        assert outcomes["failed"]["trial_number"] == 1 and "not in table" in outcomes["failed"]["error"]
        assert isinstance(outcomes["stopped"]["trial_id"], int) and outcomes["stopped"]["duration_s"] > 0

    scheduler = logs["scheduler"]
    transitions = [
        _find(scheduler, rf"^job {mixed} started by scheduler "),
        _find(scheduler, rf"^job {mixed} completed \(budget spent\); best trial 0: 63\.36$"),
        _find(scheduler, rf"^job {failing} failed \(budget spent; no trial completed; see the trials' errors\)$"),
        _find(scheduler, rf"^job {cancelled} was cancelled"),
    ]
    assert transitions[2]["level"] == "WARNING"
    if fmt == "json":
        assert [r["job_id"] for r in transitions] == [mixed, mixed, failing, cancelled]
    assert _find(scheduler, r"stopped; released no jobs$")

    api = logs["api"]
    writes = [r for r in api if re.search(r'"POST /v1/jobs(/\d+/cancel)? HTTP/1.1" 20[01]$', r["msg"])]
    assert [r["level"] for r in writes] == ["INFO"] * 4  # three submissions and the cancellation
    polls = [r for r in api if f'"GET /v1/jobs/{mixed} HTTP/1.1"' in r["msg"]]
    if level == "info":
        assert polls == []  # the SDK polled the job, and none of it reached the info log
    else:
        assert polls and {r["level"] for r in polls} == {"DEBUG"}
