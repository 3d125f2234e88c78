"""A process that cannot work as configured refuses to start: `scion api`, `scion scheduler` and
`scion worker`, each started as a real process, exit within seconds, non-zero, with one line that
names the fix, create nothing, and (the worker) leave a trial queued before they started queued
(storage/preflight.py)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from alembic import command
from sqlalchemy import select

from client.sdk import ScionClient
from client.stack import LocalStack, free_port
from scion.settings import Settings
from storage.db import session_scope
from storage.migrate import alembic_config, upgrade
from storage.models import Trial
from tests.conftest import scratch_postgres

pytestmark = pytest.mark.slow

PROCESSES = ("api", "scheduler", "worker")
# Far below the worker's database retry window (SCION_DATABASE_RETRY_SECONDS, 300 s by default):
# a refused process never waits for the database, it says so and exits.
REFUSED_WITHIN_S = 10.0
# A broker the combination check refuses without connecting to it (the host need not exist).
SHARED_BROKER = "redis://redis-host:6379/0"


@dataclass
class Exit:
    code: int
    seconds: float
    stdout: str
    stderr: str

    def refused(self, fix: str) -> str:
        """Assert the process refused to start, saying ``fix`` on its one line of output; that line."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert self.code != 0, (self.stdout, self.stderr)
        assert self.seconds < REFUSED_WITHIN_S, f"took {self.seconds:.1f} s to refuse"
        assert len(lines) == 1 and not self.stdout.strip(), (self.stdout, self.stderr)
        assert lines[0].startswith("error: ") and fix in lines[0], lines[0]
        return lines[0]


def start(process: str, cwd: Path, **settings: str) -> Exit:
    """``scion PROCESS`` with only ``settings`` of Scion's (no other SCION_… variable of this test
    run), as an operator would start it, run until it exits (or 60 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")} | settings
    command_line = {"api": ["api", "--host", "127.0.0.1", "--port", str(free_port())],
                    "scheduler": ["scheduler"], "worker": ["worker", "--concurrency", "1"]}[process]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "client", *command_line], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    return Exit(done.returncode, time.monotonic() - started, done.stdout, done.stderr)


def closed_port_url() -> str:
    return f"postgresql+psycopg://scion:secret@127.0.0.1:{free_port()}/scion"


@pytest.mark.parametrize("process", PROCESSES)
def test_no_database_file_is_reported_and_none_is_created(process: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    line = start(process, tmp_path, SCION_HOME=str(home)).refused("run `scion db upgrade`")
    assert str(home / "scion.db") in line
    assert not (home / "scion.db").exists()


@pytest.mark.parametrize("process", PROCESSES)
def test_a_database_without_the_schema_is_refused(process: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a database, but nothing of Scion's in it
    start(process, tmp_path, SCION_DATABASE_URL=f"sqlite:///{path}").refused(
        f"the database at sqlite:///{path} has no Scion schema: run `scion db upgrade`")


@pytest.mark.postgres
@pytest.mark.parametrize("process", PROCESSES)
def test_a_postgresql_database_without_the_schema_is_refused(process: str, tmp_path: Path) -> None:
    with scratch_postgres(migrated=False) as url:
        start(process, tmp_path, SCION_DATABASE_URL=url, SCION_BROKER_URL=SHARED_BROKER).refused(
            "has no Scion schema: run `scion db upgrade`")


@pytest.mark.parametrize("process", PROCESSES)
def test_a_schema_behind_this_version_is_refused(process: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "-1")  # as an older Scion left it
    line = start(process, tmp_path, SCION_DATABASE_URL=url).refused("run `scion db upgrade`")
    assert "is at schema revision" in line and "this Scion needs" in line


@pytest.mark.parametrize("process", PROCESSES)
def test_a_shared_broker_with_a_private_sqlite_file_is_refused(process: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    start(process, tmp_path, SCION_HOME=str(home), SCION_BROKER_URL=SHARED_BROKER).refused(
        "set SCION_DATABASE_URL to the PostgreSQL database every process uses")
    assert not (home / "scion.db").exists()
    sqlite_file = f"sqlite:///{tmp_path / 'private.db'}"
    upgrade(sqlite_file)  # even a migrated one: other machines cannot open it
    start(process, tmp_path, SCION_DATABASE_URL=sqlite_file, SCION_BROKER_URL=SHARED_BROKER).refused(
        "is a broker shared between machines")


@pytest.mark.parametrize("process", PROCESSES)
def test_an_unreachable_database_is_refused_at_once(process: str, tmp_path: Path) -> None:
    line = start(process, tmp_path, SCION_DATABASE_URL=closed_port_url()).refused("cannot reach the database at")
    assert "secret" not in line  # the password is masked


@pytest.mark.parametrize("process", ["scheduler", "worker"])
def test_a_broker_inside_one_process_is_refused_where_messages_pass(process: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scion.db'}"
    upgrade(url)
    start(process, tmp_path, SCION_DATABASE_URL=url, SCION_BROKER_URL="memory://").refused(
        "carries messages only within one process")


@pytest.mark.postgres
def test_a_misconfigured_worker_leaves_the_queued_trials_to_a_good_one(
    tmp_path: Path, postgres_url: str, redis_url: str, nb201_csv: Path
) -> None:
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    settings = Settings(home=tmp_path / "home", database_url=postgres_url, broker_url=redis_url)
    spec = {"name": "queued-before-the-worker", "space": {"type": "nb201"}, "strategy": {"type": "random"},
            "evaluator": {"type": "tabular", "table": str(nb201_csv)}, "budget": {"max_trials": 3, "max_parallel": 3}}
    with LocalStack(settings, workers=0) as stack, ScionClient(stack.url) as client:  # API and scheduler only
        job = client.submit(spec)
        deadline = time.monotonic() + 60
        while client.job(job["id"])["counts"] != {"queued": 3}:
            assert time.monotonic() < deadline, client.job(job["id"])
            time.sleep(0.2)
        messages = broker.llen("cpu")
        assert messages >= 1

        with scratch_postgres(migrated=False) as bare:
            for misconfigured, fix in [
                ({"SCION_BROKER_URL": redis_url}, "set SCION_DATABASE_URL"),  # the database URL forgotten
                ({"SCION_BROKER_URL": redis_url, "SCION_DATABASE_URL": closed_port_url()}, "cannot reach"),
                ({"SCION_BROKER_URL": redis_url, "SCION_DATABASE_URL": bare}, "run `scion db upgrade`"),
            ]:
                start("worker", tmp_path, SCION_HOME=str(tmp_path / "worker-home"), **misconfigured).refused(fix)
                assert broker.llen("cpu") == messages and not broker.hlen("unacked"), "a message was taken"
                with session_scope(postgres_url) as session:
                    trials = session.scalars(select(Trial).where(Trial.job_id == job["id"])).all()
                    assert [(t.status, t.attempts, t.worker) for t in trials] == [("queued", 0, None)] * 3
        assert not (tmp_path / "worker-home" / "scion.db").exists()

        env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")}
        env |= {"SCION_DATABASE_URL": postgres_url, "SCION_BROKER_URL": redis_url,
                "SCION_HOME": str(tmp_path / "worker-home"), "SCION_DATA_ROOTS": str(nb201_csv.parent)}
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "client", "worker", "--concurrency", "1"], cwd=tmp_path,
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            final = client.wait(job["id"], timeout_s=120)
        finally:
            worker.terminate()
            worker.wait(30)
    with session_scope(postgres_url) as session:
        trials = session.scalars(select(Trial).where(Trial.job_id == job["id"])).all()
        assert [(t.status, t.attempts) for t in trials] == [("completed", 1)] * 3, [t.error for t in trials]
    assert final["status"] == "completed", final
    broker.flushdb()


def test_the_embedded_stack_says_which_part_refused_and_why(tmp_path: Path) -> None:
    stack = LocalStack(Settings(home=tmp_path / "home", broker_url=SHARED_BROKER), workers=1)
    try:
        with pytest.raises(RuntimeError, match=r"exited with 1: error: SCION_BROKER_URL=\S+ is a broker shared"):
            stack.start()
    finally:
        stack.stop()


def test_scion_run_says_so_in_one_line_when_the_embedded_stack_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")}
    env.update(SCION_HOME=str(tmp_path / "home"), SCION_BROKER_URL=SHARED_BROKER)
    spec = Path(__file__).parents[2] / "examples" / "quickstart.yaml"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "client", "run", str(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and time.monotonic() - started < 60
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is a broker shared" in errors[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
