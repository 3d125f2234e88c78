"""What the CLI shows, as a user sees it: ``scion`` (typer's CliRunner on ``client.cli.app``, or a
real subprocess where a pipe matters) against a real API served on a loopback port, with the real
scheduler and worker code running the jobs in this process (``tests.integration.harness``).

Without a terminal nothing is cropped (tables are as wide as they need, architectures whole);
``scion watch`` streams a line (or a JSON line) per change, with the job's own elapsed time;
``--json`` is a flag; ``scion trial`` and ``scion events`` tell a trial's and a job's whole story;
``scion run`` names its API; ``scion export`` reads the embedded store with no API given."""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner, Result

from client import cli, render
from client.sdk import ScionClient
from scheduler.loop import Scheduler
from scion.settings import get_settings
from storage import repository as repo
from storage.db import session_scope, utcnow
from storage.models import Job
from tests.conftest import REPO
from tests.integration.harness import Broker, tabular_spec, train_spec

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("one_torch_thread")]


class Service:
    """The API at ``url``, and a thread that plays scheduler and worker until the test ends
    (``broker.hold`` keeps trials queued, workers away)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.broker = Broker()
        self.scheduler = Scheduler(get_settings(), send=self.broker.send, owner="cli-tests")
        self.client = ScionClient(url)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.05):
                self.scheduler.step()
                self.broker.deliver()
        except BaseException as exc:  # shown by close(), not lost in a thread
            self._error = exc

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.client.submit(spec)

    def finish(self, job_id: int, timeout_s: float = 120) -> dict[str, Any]:
        return self.client.wait(job_id, poll_s=0.1, timeout_s=timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.client.close()
        if self._error is not None:
            raise self._error


@pytest.fixture
def service(live_server: str) -> Iterator[Service]:
    running = Service(live_server)
    yield running
    running.close()


def scion(*args: str) -> Result:
    """``scion ARGS`` as a user with no terminal runs it (CliRunner's output is no tty)."""
    return CliRunner().invoke(cli.app, list(args))


# ---------------------------------------------------------------- tables


def test_trials_without_a_terminal_show_every_column_and_whole_architectures(service: Service,
                                                                                nb201_csv: Path) -> None:
    job = service.submit(tabular_spec(nb201_csv, max_trials=8, max_parallel=4, population=4, sample=2))
    service.finish(job["id"])
    result = scion("trials", str(job["id"]), "--api", service.url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    header = next(line for line in out.splitlines() if "architecture" in line)
    for column in ("#", "status", "val_acc_12ep", "test_acc_200ep", "architecture"):
        assert column in header  # at 80 columns the old table dropped test_acc_200ep
    items = service.client.trials(job["id"])["items"]
    assert len(items) == 8
    for trial in items:
        line = next(line for line in out.splitlines() if f" {trial['arch_key']} " in line)  # whole, on one line
        assert line.split("│")[1].strip() == str(trial["number"])
        if "queue_wait_s" in trial:  # the queue-wait branch's API
            assert "queued" in header
    assert "…" not in out and max(map(len, out.splitlines())) > 80
    as_json = scion("trials", str(job["id"]), "--api", service.url, "--json")
    assert json.loads(as_json.stdout)["total"] == 8


def arch_cells(out: str) -> list[list[str]]:
    """The architecture column of a table, row by row (a row is the lines from one number on)."""
    rows: list[list[str]] = []
    for line in out.splitlines():
        cells = line.split("│")
        if len(cells) < 3:
            continue
        if cells[1].strip():
            rows.append([])
        rows[-1].append(cells[-2].strip())
    return rows


def test_trials_in_a_narrow_terminal_fold_architectures_between_tokens_only(
        service: Service, nb201_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = service.submit(tabular_spec(nb201_csv, max_trials=4, max_parallel=4, population=4, sample=2))
    service.finish(job["id"])
    monkeypatch.setattr(cli, "console", Console(force_terminal=True, color_system=None, width=80))
    result = scion("trials", str(job["id"]), "--api", service.url)
    assert result.exit_code == 0, result.output
    keys = [t["arch_key"] for t in service.client.trials(job["id"])["items"]]
    rows = arch_cells(result.stdout)
    assert len(rows) == 4
    for key, lines in zip(keys, rows):
        assert len(lines) > 1 and "".join(lines) == key  # folded, nothing lost
        assert all(line.endswith(("|", "+")) for line in lines[:-1]), lines  # only after a separator
    assert max(map(len, result.stdout.splitlines())) <= 90


def test_render_folds_at_tokens_and_never_cuts_one() -> None:
    darts = "normal:sep_conv_3x3~0+sep_conv_5x5~1|skip_connect~0+dil_conv_3x3~2;reduce:max_pool_3x3~0+none~1"
    for width in (10, 25, 40, 200):
        lines = render.fold(darts, width).split("\n")
        assert "".join(lines) == darts
        assert all(len(line) <= width or "|" not in line.rstrip("|+;") for line in lines)
        assert all(line[-1] in "|+;" for line in lines[:-1])
    assert render.fold(darts, None) == darts


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0.0042, "4 ms"), (0.35, "350 ms"), (8.24, "8.2 s"), (59.96, "1 m 00 s"), (185, "3 m 05 s"),
    (3599.6, "1 h 00 m"), (3725, "1 h 02 m"), (90_000, "1 d 01 h"),
])
def test_one_human_format_for_a_span_of_time(seconds: float | None, shown: str) -> None:
    assert render.duration(seconds) == shown


def test_queue_waits_are_shown_where_the_api_reports_them() -> None:
    trial = {"number": 4, "status": "completed", "objective": 90.1, "metrics": {"train_seconds": 75.0},
             "arch_key": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "error": None, "attempts": 1,
             "phase": None, "worker": "celery@gpu-0", "fidelity": None, "duration_s": 75.2, "history": [],
             "queue_wait_s": 42.5}
    job = {"id": 3, "name": "q", "status": "running", "phase": None, "counts": {"completed": 1, "queued": 3},
           "trials_planned": 10, "best": trial, "elapsed_s": 3725.0, "error": None,
           "objective": {"metric": "val_acc", "mode": "max"},
           "queue_wait": {"median_s": 12.0, "max_s": 185.0, "waiting": 3}}
    console = Console(record=True, width=100, color_system=None)
    render.job_summary(console, job)
    render.print_table(console, render.trial_table([trial], "val_acc"))
    render.trial_detail(console, trial, job)
    out = console.export_text()
    assert "elapsed 1 h 02 m" in out and "queue wait median 12.0 s, max 3 m 05 s, 3 waiting" in out
    assert "queued" in out and "42.5 s" in out and "queued 42.5 s, ran 1 m 15 s" in out
    assert "queue wait median 12.0 s" in render.progress_line(job)
    without = {k: v for k, v in trial.items() if k != "queue_wait_s"}
    bare = Console(record=True, width=100, color_system=None)
    render.print_table(bare, render.trial_table([without], "val_acc"))
    assert "queued" not in bare.export_text()  # an API without the field: no column


# ---------------------------------------------------------------- flags


def json_flags(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command (by its words) with a --json flag; bench's --json FILE takes a value."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from json_flags(command, (*path, name))
        elif any("--json" in p.opts and getattr(p, "is_flag", False) for p in command.params):
            yield (*path, name)


def test_json_is_a_plain_flag_in_every_commands_help(service: Service, nb201_csv: Path) -> None:
    commands = list(json_flags(typer.main.get_command(cli.app)))
    assert {("status",), ("trials",), ("trial",), ("events",), ("watch",), ("run",), ("export",)} <= set(commands)
    for command in commands:
        help_text = scion(*command, "--help").stdout
        line = next(line for line in help_text.splitlines() if line.lstrip("│ ").startswith("--json"))
        assert "<bool>" not in line and "Print JSON" in line, (command, line)
    job = service.submit(tabular_spec(nb201_csv, max_trials=2))
    result = scion("status", str(job["id"]), "--json", "--api", service.url)
    assert result.exit_code == 0 and json.loads(result.stdout)["id"] == job["id"]


# ---------------------------------------------------------------- watch


class Lines:
    """A subprocess's stdout read line by line as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in proc.stdout], daemon=True).start()

    def next(self, timeout_s: float = 30) -> str:
        return self.lines.get(timeout=timeout_s)

    def rest(self, timeout_s: float = 60) -> list[str]:
        self.proc.wait(timeout_s)
        time.sleep(0.2)
        return [self.lines.get() for _ in range(self.lines.qsize())]


def started_long_ago(service: Service, job_id: int, seconds: float) -> None:
    """Hold the job's trials queued and move its start ``seconds`` back, as if it had run that long."""
    service.broker.hold = True
    deadline = time.monotonic() + 30
    while service.client.job(job_id)["status"] != "running":
        assert time.monotonic() < deadline, "the scheduler never started the job"
        time.sleep(0.05)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=seconds)))


def watch(service: Service, job_id: int, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")}
    return subprocess.Popen([sys.executable, "-m", "client", "watch", str(job_id), "--api", service.url, *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_watch_without_a_terminal_streams_a_line_per_change_with_the_jobs_elapsed_time(
        service: Service, nb201_csv: Path) -> None:
    job = service.submit(tabular_spec(nb201_csv, max_trials=6, max_parallel=2, population=2, sample=2))
    started_long_ago(service, job["id"], 3630)
    proc = watch(service, job["id"])
    out = Lines(proc)
    first = out.next()  # while the job runs, not at its end
    assert f"job {job['id']}" in first and "running" in first and "0/6 done" in first
    assert "elapsed 1 h 01 m" in first  # the job's elapsed time, not the watcher's
    service.broker.hold = False
    rest = out.rest()
    assert proc.returncode == 0, proc.stderr.read()
    progress = [first, *(line for line in rest if line.startswith(f"job {job['id']} ") and " done, " in line)]
    assert "completed" in progress[-1] and "6/6 done" in progress[-1] and "best val_acc_12ep" in progress[-1]
    assert len(set(progress)) == len(progress)  # a line per change, none repeated
    assert any("leaderboard" in line for line in rest), "".join(rest)


def test_watch_json_streams_the_job_as_json_lines(service: Service, nb201_csv: Path) -> None:
    job = service.submit(tabular_spec(nb201_csv, max_trials=4, max_parallel=2, population=2, sample=2))
    started_long_ago(service, job["id"], 100)
    proc = watch(service, job["id"], "--json")
    out = Lines(proc)
    first = json.loads(out.next())
    assert first["id"] == job["id"] and first["status"] == "running" and first["elapsed_s"] >= 100
    service.broker.hold = False
    snapshots = [first, *map(json.loads, out.rest())]
    assert proc.returncode == 0
    assert snapshots[-1]["status"] == "completed" and snapshots[-1]["counts"] == {"completed": 4}


def test_watch_in_a_terminal_draws_a_bar_with_the_jobs_elapsed_time(service: Service, nb201_csv: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    job = service.submit(tabular_spec(nb201_csv, max_trials=4, max_parallel=2, population=2, sample=2))
    started_long_ago(service, job["id"], 100)
    service.broker.hold = False
    service.finish(job["id"])
    monkeypatch.setattr(cli, "console", Console(force_terminal=True, color_system=None, width=150))
    result = scion("watch", str(job["id"]), "--api", service.url)
    assert result.exit_code == 0, result.output
    bar = next(line for line in result.stdout.splitlines() if "4/4" in line)
    assert re.search(r"elapsed 1 m 4\d s", bar) and "best val_acc_12ep" in bar, bar


# ---------------------------------------------------------------- one trial, a job's events


def test_trial_shows_metrics_learning_curve_and_a_failed_trials_whole_error(service: Service) -> None:
    trained = service.submit(train_spec(epochs=3, budget={"max_trials": 1}))
    infeasible = service.submit({**train_spec(epochs=1, budget={"max_trials": 1}),
                                 "constraints": [{"metric": "params", "max": 1}]})
    service.finish(trained["id"])
    service.finish(infeasible["id"])

    result = scion("trial", str(trained["id"]), "0", "--api", service.url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    api_trial = service.client.trial(trained["id"], 0)
    assert f"trial 0 of job {trained['id']}" in out and "completed, attempt 1" in out
    assert api_trial["arch_key"] in out
    assert "val_acc (objective)" in out and "test_acc" in out and "params" in out
    assert "accuracy (%)" in out and "loss" in out and "epoch" in out  # the curves, drawn
    assert "train_acc" in out and "train_loss" in out
    assert json.loads(scion("trial", str(trained["id"]), "0", "--api", service.url, "--json").stdout) == api_trial

    failed = service.client.trial(infeasible["id"], 0)
    assert failed["status"] == "failed" and failed["error"]
    result = scion("trial", str(infeasible["id"]), "0", "--api", service.url)
    assert failed["error"] in result.stdout  # whole, on its lines
    missing = scion("trial", str(infeasible["id"]), "7", "--api", service.url)
    assert missing.exit_code == 1 and "error 404" in missing.output


def test_events_lists_every_event_across_pages(service: Service, nb201_csv: Path) -> None:
    job = service.submit(tabular_spec(nb201_csv, max_trials=2))
    service.finish(job["id"])
    with session_scope() as session:  # more than the largest page a server returns (500)
        for i in range(520):
            repo.add_event(session, job_id=job["id"], kind="note", message=f"note {i}")
    result = scion("events", str(job["id"]), "--api", service.url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) > 520 and "submitted" in result.stdout and "completed" in lines[-521]
    assert lines[-1].endswith("note 519") and " UTC  note " in lines[-1]
    as_json = json.loads(scion("events", str(job["id"]), "--api", service.url, "--json").stdout)
    assert len(as_json) == len(lines) and as_json[-1]["message"] == "note 519"


# ---------------------------------------------------------------- run, export


def test_run_says_which_api_it_uses(service: Service, nb201_csv: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tabular_spec(nb201_csv, max_trials=3)))
    result = scion("run", str(spec), "--api", service.url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"using the API at {service.url}"
    assert "completed" in result.stdout and "leaderboard" in result.stdout


def test_export_without_an_api_reads_the_embedded_store(service: Service, nb201_csv: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    trained = service.submit(train_spec(epochs=1, budget={"max_trials": 1}))
    tabular = service.submit(tabular_spec(nb201_csv, max_trials=1))
    service.finish(trained["id"])
    service.finish(tabular["id"])
    monkeypatch.delenv("SCION_API_URL", raising=False)
    get_settings.cache_clear()

    result = scion("export", str(trained["id"]), "--format", "onnx", "-o", str(tmp_path / "net.onnx"))
    assert result.exit_code == 0, result.output
    assert "no API given: reading the embedded store" in result.output
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"))
    shape = session.get_inputs()[0].shape
    logits = session.run(None, {"input": __import__("numpy").zeros((2, *shape[1:]), dtype="float32")})[0]
    assert logits.shape == (2, 10)  # digits

    result = scion("export", str(trained["id"]), "--format", "state_dict", "-o", str(tmp_path / "net.pt"), "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    sidecar = json.loads(Path(written["architecture"]).read_text())
    assert sidecar["arch_key"] == service.client.trial(trained["id"], 0)["arch_key"]

    refused = scion("export", str(tabular["id"]), "--format", "onnx", "-o", str(tmp_path / "t.onnx"))
    assert refused.exit_code == 1 and "error 409" in refused.output and "tabular" in refused.output


def test_names_errors_and_events_cannot_drive_the_terminal(service: Service, nb201_csv: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    markup = "[link=https://evil.example]click[/link] [reverse]me"
    job = service.submit({**tabular_spec(nb201_csv, max_trials=2, max_parallel=2, population=2, sample=1),
                          "name": markup})
    service.finish(job["id"])
    older = service.submit({**tabular_spec(nb201_csv, max_trials=2, max_parallel=2, population=2, sample=1)})
    service.finish(older["id"])
    hostile = "old\x1b]8;;https://evil.example\x1b\\job\x1b[31m\r\ngpj.\u202eexe"  # stored before names were checked
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == older["id"]).values(name=hostile))
        repo.add_event(session, job_id=older["id"], kind="note", message="trial said \x1b[2Jbye\x07")
    monkeypatch.setattr(cli, "console", Console(force_terminal=True, color_system=None, width=200))
    for args in (("status",), ("status", str(job["id"])), ("status", str(older["id"])), ("events", str(older["id"])),
                 ("trial", str(older["id"]), "0")):
        out = scion(*args, "--api", service.url).stdout
        assert not [c for c in out if c not in "\n" and not c.isprintable()], (args, out)
        assert markup in out or "gpj.exe" in out or "bye" in out, (args, out)  # shown literally, cleaned
    assert markup in scion("status", str(job["id"]), "--api", service.url).stdout
