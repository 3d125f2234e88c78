"""Tools for the fault tests: a Redis server of the test's own, a TCP relay that can cut the
database off, the embedded stack with parts to kill and restart, and plain database reads.

Nothing here touches the shared servers' state: each test runs its own Redis on a free port and
its own PostgreSQL database (the ``postgres_url`` fixture).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis
from sqlalchemy import select

from client.stack import LocalStack, free_port
from storage.db import session_scope
from storage.models import Job, JobEvent, Trial, TrialMetric


class RedisServer:
    """A throw-away ``redis-server`` without persistence: killing it loses every message, as a
    broker host that crashes does."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        with open(self.directory / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on {self.port} did not start; see {self.directory}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class TcpProxy:
    """Relays connections from a local port to ``target``. ``cut()`` closes every relayed
    connection and answers new ones by hanging up, as a database server that went away does;
    ``restore()`` relays again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv
            sock.close()

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            doomed = list(self._open)
        self._close(*doomed)

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


class FaultStack(LocalStack):
    """The embedded stack (uvicorn API, scheduler, Celery worker) with parts a test may kill."""

    def process(self, name: str) -> subprocess.Popen:
        return next(proc for part, proc in reversed(self.procs) if part == name)

    def start_scheduler(self, name: str) -> subprocess.Popen:
        self._spawn(name, "scheduler")
        return self.process(name)

    def kill_pool_process(self, worker: str) -> int:
        """SIGKILL the Celery pool process named by a trial's ``worker`` (host:pid), after making
        sure it belongs to this stack's worker."""
        pid = int(worker.rsplit(":", 1)[1])
        if os.getpgid(pid) != self.process("worker").pid:
            raise RuntimeError(f"{worker} is not a process of this stack's worker")
        os.kill(pid, signal.SIGKILL)
        return pid

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def read_job(db_url: str, job_id: int) -> Job:
    with session_scope(db_url) as session:
        return session.get(Job, job_id)


def read_trials(db_url: str, job_id: int) -> list[Trial]:
    with session_scope(db_url) as session:
        return list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))


def read_events(db_url: str, job_id: int, kind: str) -> list[JobEvent]:
    with session_scope(db_url) as session:
        return list(session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == kind).order_by(JobEvent.id)))


def read_epochs(db_url: str, trial_id: int) -> list[TrialMetric]:
    with session_scope(db_url) as session:
        return list(session.scalars(
            select(TrialMetric).where(TrialMetric.trial_id == trial_id).order_by(TrialMetric.id)))
