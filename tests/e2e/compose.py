"""Docker Compose's part, played on this machine: docker-compose.yml and the Dockerfile read as
Compose and Docker read them, and each service started as a local process with exactly the
environment, command and working directory its container would have.

What a container has that a local process cannot is mapped, and only that:

- the Compose network's hostnames: each service that other services reach by name (``postgres``,
  ``redis``) is stood in for by a real server of the test's (``stand_ins``); a URL that names the
  service is rewritten to the stand-in, and nothing else in it changes;
- the container's filesystem: the paths where a service mounts its volumes, and the image's
  home and working directory, are directories of the test's, and every setting that names such a
  path is rewritten to the directory (``/data`` → the host folder ``SCION_DATA_DIR`` names);
- published ports: a container port published as ``HOST:CONTAINER`` is served on a free port,
  which ``CONTAINER`` (in a command or a health check) and the published default (in a command
  typed on the host) both become.

``Compose.run_header_line`` runs one command of the file's header as a person would type it,
doing for each ``docker compose`` command what Compose would do here.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from tests.conftest import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
# Compose's interpolation (compose-spec "Interpolation"), the forms this file may use; any other
# `$` form makes ``interpolate`` fail rather than guess.
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
                       r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` (a parsed YAML tree) with ``$VAR``, ``${VAR}``, ``${VAR:-default}`` and
    ``${VAR-default}`` substituted from ``env`` and ``$$`` unescaped, as Compose does."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["other"] is not None:
            raise ValueError(f"interpolation this reader does not know in {value!r}")
        name = match["braced"] or match["named"]
        if match["op"] == ":-":
            return env.get(name) or match["default"]
        if match["op"] == "-":
            return env.get(name, match["default"])
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def load_compose(env: dict[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as Compose sees it with ``env``: YAML anchors and merge keys resolved,
    then variables interpolated."""
    return interpolate(yaml.safe_load(path.read_text()), env)


@dataclass
class Image:
    """What a container of the image starts with (from the Dockerfile): ENV, WORKDIR, ENTRYPOINT."""

    env: dict[str, str]
    workdir: str
    entrypoint: list[str]


def read_dockerfile(path: Path = DOCKERFILE) -> Image:
    text = re.sub(r"\\\n", " ", path.read_text())  # continuation lines joined
    env: dict[str, str] = {}
    workdir, entrypoint = "/", []
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            env |= dict(word.split("=", 1) for word in shlex.split(rest))
        elif instruction == "WORKDIR":
            workdir = rest.strip()
        elif instruction == "ENTRYPOINT":
            entrypoint = yaml.safe_load(rest)  # the exec form is a JSON list
    return Image(env, workdir, entrypoint)


def header_block(path: Path = COMPOSE_FILE) -> list[str]:
    """The commands the file's header tells a person to type: its first block of indented
    comment lines, trailing comments dropped."""
    lines, started = [], False
    for line in path.read_text().splitlines():
        if line.startswith("#   ") and line[4:5].strip():
            started = True
            lines.append(re.sub(r"\s+#\s.*$", "", line[4:]).strip())
        elif started:
            return lines
    return lines


def header_command(starting: str, path: Path = COMPOSE_FILE) -> str:
    """The one indented command of the header that starts with ``starting``, its continuation
    lines (after a trailing backslash) joined."""
    lines = [line[4:].strip() for line in path.read_text().splitlines() if line.startswith("#   ")]
    found = [i for i, line in enumerate(lines) if line.startswith(starting)]
    assert len(found) == 1, f"{len(found)} header commands start with {starting!r}"
    command, i = lines[found[0]], found[0]
    while command.endswith("\\"):
        i += 1
        command = command[:-1] + " " + lines[i]
    return re.sub(r"\s+#\s.*$", "", command)


def seconds(duration: str | None, default: float) -> float:
    """A Compose duration (``60s``, ``1m30s``) in seconds."""
    if not duration:
        return default
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


@dataclass
class Container:
    service: str
    proc: subprocess.Popen
    log: Path


@dataclass
class Compose:
    """docker-compose.yml's services as local processes. ``stand_ins``: service name → the URL
    of the real server standing in for it; ``data_dir``: the host folder SCION_DATA_DIR names."""

    root: Path
    stand_ins: dict[str, str]
    data_dir: Path
    api_port: int
    config: dict[str, Any] = field(init=False)
    defaults: dict[str, Any] = field(init=False)
    image: Image = field(init=False)
    shell: dict[str, str] = field(init=False)  # the environment of the person typing the header
    running: list[Container] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = load_compose({"SCION_DATA_DIR": str(self.data_dir), "SCION_API_PORT": str(self.api_port)})
        self.defaults = load_compose({})  # what the header's host commands assume (port 8000)
        self.image = read_dockerfile()
        self.shell = {"PATH": os.environ["PATH"], "HOME": str(self.root / "host-home"), "PYTHONPATH": str(REPO)}
        (self.root / "host-home").mkdir(parents=True)

    # ------------------------------------------------------------------ a container's world

    def service(self, name: str) -> dict[str, Any]:
        return self.config["services"][name]

    def _published(self, name: str) -> dict[str, tuple[str, str]]:
        """container port → (the default published port, the port it is served on here)."""
        ports = {}
        for actual, default in zip(self.service(name).get("ports", []),
                                   self.defaults["services"][name].get("ports", []), strict=True):
            host, _, container = actual.rpartition(":")
            ports[container] = (default.rpartition(":")[0], host)
        return ports

    def _mounts(self, name: str, replica: int) -> dict[str, Path]:
        """Container path → host directory: its volumes, and the image's WORKDIR (its user's home)."""
        mounts = {self.image.workdir: self.root / "containers" / f"{name}-{replica}"}
        for volume in self.service(name).get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                host = (COMPOSE_FILE.parent / source).resolve()
            else:
                assert source in self.config.get("volumes", {}), f"{name}: undeclared volume {source}"
                host = self.root / "volumes" / source
            mounts[target] = host
        for host in mounts.values():
            host.mkdir(parents=True, exist_ok=True)
        return mounts

    def _path(self, value: str, mounts: dict[str, Path]) -> str:
        def mapped(part: str) -> str:
            for target in sorted(mounts, key=len, reverse=True):
                if part == target or part.startswith(target.rstrip("/") + "/"):
                    return str(mounts[target]) + part[len(target.rstrip("/")):]
            return part

        return ":".join(mapped(part) for part in value.split(":")) if value.startswith("/") else value

    def _url(self, value: str) -> str:
        """A URL naming a service by its hostname, pointed at the stand-in for it (its scheme kept)."""
        parts = urlsplit(value)
        if "://" not in value or parts.hostname not in self.stand_ins:
            return value
        real = urlsplit(self.stand_ins[parts.hostname])
        return urlunsplit(parts._replace(netloc=real.netloc, path=real.path))

    def environment(self, name: str, replica: int = 0) -> tuple[dict[str, str], Path]:
        """The environment and working directory of the service's container, mapped."""
        mounts = self._mounts(name, replica)
        env = {"PATH": os.environ["PATH"], "HOME": self.image.workdir, **self.image.env,
               **{k: str(v) for k, v in self.service(name).get("environment", {}).items()}}
        env = {k: self._url(self._path(v, mounts)) for k, v in env.items()}
        env["PYTHONPATH"] = str(REPO)  # the image installs Scion; here it runs from the work tree
        return env, Path(self._path(self.image.workdir, mounts))

    def argv(self, name: str, args: list[str]) -> list[str]:
        """A command in the image (after its ENTRYPOINT), with container ports served here."""
        ports = {c: here for c, (_, here) in self._published(name).items()}
        args = [ports.get(arg, arg) if i and args[i - 1] == "--port" else arg for i, arg in enumerate(args)]
        return self.local(args)

    @staticmethod
    def local(argv: list[str]) -> list[str]:
        """``scion ...`` as this work tree's CLI."""
        return [sys.executable, "-m", "client", *argv[1:]] if argv and argv[0] == "scion" else argv

    # ------------------------------------------------------------------ docker compose up / exec / down

    def up(self, services: list[str], profiles: list[str], wait: bool) -> None:
        """``docker compose up -d [--wait]``: each service after those it depends on (completed,
        healthy or started, as its ``depends_on`` says), one process per replica; with ``wait``,
        until every service started is as Compose's --wait wants it (a one-shot service that others
        wait for completed, one with a health check healthy, the others running)."""
        wanted = services or [n for n, s in self.config["services"].items()
                              if not s.get("profiles") or set(s["profiles"]) & set(profiles)]
        done: set[str] = set()

        def start(name: str) -> None:
            if name in done:
                return
            for dependency, rule in self.service(name).get("depends_on", {}).items():
                start(dependency)
                self.wait_for(dependency, rule["condition"])
            done.add(name)
            if name in self.stand_ins:
                return
            replicas = int(self.service(name).get("deploy", {}).get("replicas", 1))
            for replica in range(replicas):
                env, cwd = self.environment(name, replica)
                log = self.root / "logs" / f"{name}-{replica}.log"
                log.parent.mkdir(exist_ok=True)
                entry = self.image.entrypoint + self.service(name)["command"]
                with open(log, "ab") as out:
                    proc = subprocess.Popen(self.argv(name, entry), cwd=cwd, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                self.running.append(Container(name, proc, log))

        for name in wanted:
            start(name)
        one_shots = {dependency for s in self.config["services"].values()
                     for dependency, rule in s.get("depends_on", {}).items()
                     if rule["condition"] == "service_completed_successfully"}
        for name in done if wait else ():
            self.wait_for(name, "service_completed_successfully" if name in one_shots else
                          "service_healthy" if "healthcheck" in self.service(name) else "service_started")

    def containers(self, name: str) -> list[Container]:
        return [c for c in self.running if c.service == name]

    def wait_for(self, name: str, condition: str, timeout_s: float = 120) -> None:
        """Until ``name`` meets a ``depends_on`` condition (a stand-in is up before the test starts)."""
        deadline = time.monotonic() + timeout_s
        while name not in self.stand_ins:
            codes = [c.proc.poll() for c in self.containers(name)]
            if condition == "service_completed_successfully":
                if None not in codes:
                    assert codes == [0] * len(codes), f"{name} exited with {codes}: {self.logs(name)}"
                    return
            else:
                assert codes == [None] * len(codes), f"{name} exited with {codes}: {self.logs(name)}"
                if condition == "service_started" or self.healthy(name):
                    return
            assert time.monotonic() < deadline, f"{name} not {condition} within {timeout_s} s: {self.logs(name)}"
            time.sleep(0.2)

    def healthy(self, name: str) -> bool:
        """The service's own health check, run here against the port it is served on."""
        test = self.service(name)["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python", test
        command = test[2:]
        for container, (_, here) in self._published(name).items():
            command = [part.replace(f":{container}/", f":{here}/") for part in command]
        return subprocess.run([sys.executable, *command], capture_output=True, timeout=30).returncode == 0

    def logs(self, name: str) -> str:
        return "\n".join(c.log.read_text(errors="replace")[-4000:] for c in self.containers(name))

    def exec(self, name: str, argv: list[str]) -> subprocess.CompletedProcess:
        """``docker compose exec -T SERVICE ...``: in the environment of the service's container."""
        env, cwd = self.environment(name)
        return subprocess.run(self.local(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    def down(self) -> dict[str, float | None]:
        """``docker compose down``: SIGTERM to every process, SIGKILL after the service's
        ``stop_grace_period``; for each service, how long its slowest process took to stop (None:
        killed)."""
        for container in self.running:
            if container.proc.poll() is None:
                container.proc.terminate()
        took: dict[str, float | None] = {}
        started = time.monotonic()
        for container in self.running:
            grace = seconds(self.service(container.service).get("stop_grace_period"), 10.0)
            try:
                container.proc.wait(max(0.1, started + grace - time.monotonic()))
                spent: float | None = time.monotonic() - started
            except subprocess.TimeoutExpired:
                container.proc.kill()
                container.proc.wait()
                spent = None
            slowest = took.get(container.service, 0.0)
            took[container.service] = None if None in (slowest, spent) else max(slowest, spent)
            with contextlib.suppress(ProcessLookupError):  # its children (uvicorn's, Celery's pool)
                os.killpg(container.proc.pid, signal.SIGKILL)
        self.running.clear()
        return took

    # ------------------------------------------------------------------ the header, line by line

    def on_host(self, text: str) -> str:
        """A host command's published ports (their defaults, as the header assumes) served here."""
        for name in self.config["services"]:
            for default, here in self._published(name).values():
                text = text.replace(f"localhost:{default}", f"localhost:{here}")
        return text

    def run_header_line(self, line: str) -> subprocess.CompletedProcess | None:
        """Run one header command as typed in a shell from the compose file's directory."""
        if export := re.fullmatch(r"export (\w+)=\$\((.*)\)", line):
            done = self.run_header_line(export[2])
            assert done is not None and done.returncode == 0, (line, done)
            self.shell[export[1]] = done.stdout.strip()
            return done
        argv = shlex.split(self.on_host(line))
        if argv[:2] == ["docker", "compose"]:
            return self._docker_compose(argv[2:])
        if argv[0] == "scion":
            return subprocess.run(self.local(argv), cwd=COMPOSE_FILE.parent, env=self.shell, capture_output=True,
                                  text=True, timeout=600)
        if argv[0] == "open":  # a browser on the page
            response = httpx.get(argv[1], timeout=10)
            return subprocess.CompletedProcess(argv, 0 if response.status_code == 200 else 1, response.text, "")
        raise AssertionError(f"the test does not know how to run this header line: {line}")

    def _docker_compose(self, argv: list[str]) -> subprocess.CompletedProcess | None:
        profiles = []
        while argv[0] == "--profile":
            profiles.append(argv[1])
            argv = argv[2:]
        verb, rest = argv[0], argv[1:]
        if verb == "up":
            flags = [word for word in rest if word.startswith("-")]
            assert set(flags) <= {"-d", "--wait"} and "-d" in flags, argv
            self.up([word for word in rest if word not in flags], profiles, wait="--wait" in flags)
            return None
        if verb == "exec":
            assert rest[0] == "-T", "without -T, exec gives the command a terminal, which merges its stderr into $(...)"
            return self.exec(rest[1], rest[2:])
        if verb == "logs":  # following: each service named (or every one) is still running
            names = [word for word in rest if not word.startswith("-")] or list(dict.fromkeys(
                c.service for c in self.running if c.proc.poll() is None))
            for name in names:
                assert self.containers(name) and all(c.proc.poll() is None for c in self.containers(name)), name
            return subprocess.CompletedProcess(argv, 0, "\n".join(self.logs(n) for n in names), "")
        raise AssertionError(f"the test does not know `docker compose {verb}`")
