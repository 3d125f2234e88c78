"""The embedded stack: API, scheduler and workers as local processes on one machine.

``scion run`` and ``scion up`` use it when no API URL is given. Each part is the same
process a production deployment runs, started with this machine's database and broker URLs,
so what works here works when the parts are spread over machines. ``scion export`` with no API
given only reads what such a stack left: the API served in its own process (``embedded_api``),
the network exported there as a worker would (``export_here``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from client.sdk import ScionClient
from scion.settings import Settings
from storage import artifacts
from storage.migrate import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StackError(RuntimeError):
    """A part of the embedded stack did not start; the message says which and why."""


class LocalStack:
    def __init__(self, settings: Settings, *, workers: int = 2, port: int | None = None,
                 host: str = "127.0.0.1", api_workers: int = 1, env: dict[str, str] | None = None) -> None:
        """``workers``: Celery pool processes for training (``scion worker --concurrency``; as many
        again serve the cheap queues: worker/consumers.py); ``api_workers``: uvicorn worker processes;
        ``env``: further SCION_… settings for every process of the stack."""
        self.settings, self.workers, self.host, self.api_workers = settings, workers, host, api_workers
        self.extra_env = env or {}
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.home = settings.resolved_home()
        self.log_dir = self.home / "logs"
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SCION_HOME=str(self.home),
            SCION_DATABASE_URL=self.settings.db_url,
            SCION_BROKER_URL=self.settings.broker,
            PYTHONUNBUFFERED="1",
        )
        env.pop("SCION_API_URL", None)
        env.update(self.extra_env)
        for name in ("SCION_DATABASE_URL_FILE", "SCION_BROKER_URL_FILE"):  # the values above replace them
            env.pop(name, None)
        return env

    def _spawn(self, name: str, *args: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "client", *args], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, proc))

    def start(self, timeout_s: float = 60.0) -> LocalStack:
        """Start every part and wait until the API is ready; raises StackError (with the stack
        stopped again) when a part refuses to start or the API is not ready in time."""
        try:
            self._start(timeout_s)
        except BaseException as exc:  # Ctrl-C while starting too: nothing of the stack outlives it
            self.stop()
            if isinstance(exc, StackError) or not isinstance(exc, Exception):
                raise
            raise StackError(f"{type(exc).__name__}: {exc}") from exc
        return self

    def _start(self, timeout_s: float) -> None:
        upgrade(self.settings.db_url)
        self.spawn_api()
        self._spawn("scheduler", "scheduler")
        if self.workers:
            self._spawn("worker", "worker", "--concurrency", str(self.workers))
        self._wait_ready(timeout_s)

    def spawn_api(self) -> None:
        self._spawn("api", "api", "--host", self.host, "--port", str(self.port), "--workers", str(self.api_workers))

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with ScionClient(self.url) as client:
            while time.monotonic() < deadline:
                if why := self.exited():
                    raise StackError(why)
                if client.ready():
                    return
                time.sleep(0.2)
        raise StackError(f"the API at {self.url} was not ready within {timeout_s:.0f} s; see {self.log_dir}")

    def exited(self) -> str | None:
        """Which part of the stack has exited, with the last line it wrote (a refusal to start
        is one line) and its log; None while all run."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                log = self.log_dir / f"{name}.log"
                lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
                said = f": {lines[-1]}" if lines else ""
                return f"{name} exited with {proc.returncode}{said}; see {log}"
        return None

    def stop(self, timeout_s: float = 20.0) -> None:
        for _, proc in self.procs:  # the leaders shut their own children down (Celery's pool, too)
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # nothing of the stack outlives it
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()

    def wait(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set or a part exits, as ``scion up`` does."""
        while not stop.wait(0.5) and all(proc.poll() is None for _, proc in self.procs):
            pass

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def logs(self) -> Path:
        return self.log_dir


@contextlib.contextmanager
def serve(app: Any, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 20.0) -> Iterator[str]:
    """The ASGI ``app`` served by uvicorn in a thread of this process while the block runs, as
    ``scion api`` serves it (header deadlines included); its URL."""
    import uvicorn

    from api.slow_clients import uvicorn_options

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"could not serve the API on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def embedded_api(settings: Settings) -> Iterator[str]:
    """The API over the embedded store (``settings``' database and artifacts), served in this
    process on a loopback port, with no scheduler and no workers: it starts in well under a second
    and resumes no job, for a command that only reads what ``scion run`` left."""
    upgrade(settings.db_url)
    from api.main import create_app

    with serve(create_app()) as url:
        yield url


def export_here(job_id: int, number: int, fmt: str) -> str | None:
    """Export a completed trial's network into the store in this process, as a worker would when the
    API asks it; the reason it cannot be exported, or None (exported, or something the API answers
    itself: a missing or unfinished trial, an unknown format)."""
    if fmt not in artifacts.FORMATS:
        return None
    from worker.export import export_trial

    request = uuid.uuid4().hex
    if export_trial(job_id, number, fmt, request) is not None:
        return None
    return artifacts.recorded_failure(job_id, number, fmt, request)
