"""Every code block of README.md, ARCHITECTURE.md and docs/*.md works as shown, run the way a user
following the page runs it; a block that cannot run here says why in a ``<!-- not run: REASON -->``
comment right before it, and any other block fails.

By the block's language:

- ``bash`` / ``sh``: run with ``bash -e``, the venv's bin first on PATH, in a working directory of
  the page's own, after the page's earlier blocks. ``SCION_HOME`` is a temporary directory whose
  embedded stack (``client/stack.py``: API, scheduler, one worker) is ``SCION_API_URL`` and has
  finished one small training job. What a page names that exists only on a user's machine is
  replaced as ``SUBSTITUTIONS`` says. A block that starts the servers (``scion api``, ``scheduler``,
  ``worker``: a terminal each in real life) runs them in the background, and a job must then run
  through them with a token made by ``scion token create``, as docs/security.md says.
- ``python``: run with the venv's Python in the same directory, after the blocks above it.
- ``yaml``: a job spec, validated as the API validates a submission (``JobRequest``). A fragment
  (no ``space``) is the page's last whole spec with the fragment's keys in place of its own; the
  files a spec names are made in a data root first (``DOC_FILES``).
- ``text``: a diagram or a listing.

A block marked not run must still make sense: a ``scion`` command parses against the CLI, a
``python -m MODULE`` command's options are in its ``--help``, a ``make`` target exists (``make -n``),
a Python snippet compiles, and every test file the reason names exists.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import typer
import yaml
from pydantic import ValidationError

from client.cli import app as cli_app
from client.sdk import ScionClient
from client.stack import LocalStack, free_port
from scion.components import DATASETS, EVALUATORS, SPACES, STRATEGIES
from scion.settings import Settings, get_settings
from scion.spec import JobRequest
from tests.conftest import REPO, scratch_postgres
from tests.docs.markdown_blocks import DOCUMENTS, Block, all_blocks, blocks, commands, section
from tests.integration.harness import train_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

BIN = Path(sys.executable).parent
SHELLS = ("bash", "sh")
KNOWN = (*SHELLS, "python", "yaml", "text")

# What a page writes for things that exist only on the user's side, and the value (a key of
# Shell.values) that stands in for it here.
SUBSTITUTIONS: list[tuple[str, str]] = [
    (r"\bJOB\b", "job"),  # a job's id: the embedded stack's finished training job
    (r"postgresql\+psycopg://scion:secret@db-host:5432/scion", "database_url"),  # a new, empty database
    (r"redis://redis-host:6379/0", "redis_url"),  # the test Redis, SCION_TEST_REDIS_URL
    (r"--port 8000\b", "port_option"),  # a free port
]

# A line that starts a server (a terminal of its own for the user): run in the background here.
SERVER_LINE = re.compile(r"^(scion (?:api|scheduler|worker)\b[^#\n]*?)[ \t]*(#.*)?$", re.M)


def _npz_images(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.normal(size=(60, 1, 8, 8)).astype(np.float32), labels=np.arange(60) % 3)


# Files the pages' specs name, made in a data root before the specs are validated.
DOC_FILES: dict[str, Callable[[Path], None]] = {"my-arrays.npz": _npz_images}


def runnable(block: Block) -> bool:
    return block.not_run is None and block.lang in (*SHELLS, "python")


RUN_DOCS = [str(p.relative_to(REPO)) for p in DOCUMENTS if any(runnable(b) for b in blocks(p))]


# ---------------------------------------------------------------- every block is accounted for


def test_every_code_block_runs_or_says_why_not() -> None:
    unknown = [f"{b} ({b.lang or 'no language'})" for b in all_blocks() if b.lang not in KNOWN and not b.not_run]
    assert not unknown, (
        f"code blocks this test cannot run: {', '.join(unknown)}; give each a language it runs ({', '.join(KNOWN)}) "
        "or a `<!-- not run: REASON -->` line right before it")


def test_blocks_marked_not_run_still_parse() -> None:
    problems = []
    for block in all_blocks():
        if block.not_run is None:
            continue
        problems += [f"{block}: the reason names {path}, which does not exist"
                     for path in re.findall(r"tests/[\w/]+\.py", block.not_run) if not (REPO / path).is_file()]
        if block.lang == "python":
            try:
                compile(block.code, str(block), "exec")
            except SyntaxError as exc:
                problems.append(f"{block}: {exc}")
        elif block.lang in SHELLS:
            runs_elsewhere = bool(re.search(r"tests/[\w/]+\.py runs these lines", block.not_run))
            for argv in commands(block.code):
                why = _command_problem(argv)
                if why and not (runs_elsewhere and why.endswith(CHECKABLE)):  # that test runs the others
                    problems.append(f"{block}: {' '.join(argv)}: {why}")
    assert not problems, "\n".join(problems)


CHECKABLE = "scion, python -m MODULE and make, which this test can check"


def _command_problem(argv: list[str]) -> str | None:
    """Why ``argv`` would not start as written, or None; a command is not run, only parsed."""
    while argv and re.fullmatch(r"\w+=.*", argv[0]):  # VAR=value before the command
        argv = argv[1:]
    program = Path(argv[0]).name
    if program == "scion":
        return _scion_parse_problem(argv[1:])
    if program.startswith("python") and argv[1:2] == ["-m"]:
        return _module_options_problem(argv[2], argv[3:])
    if program == "make":  # a dry run: the targets exist
        dry = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
        return dry.stderr.strip() or None if dry.returncode else None
    return f"{program} is none of {CHECKABLE}"


def _scion_parse_problem(args: list[str]) -> str | None:
    """Parse ``scion ARGS`` as the CLI does, without running it (Typer's own click)."""
    command = typer.main.get_command(cli_app)
    name, parent = "scion", None
    try:
        while isinstance(command, typer.core.TyperGroup):
            ctx = typer.Context(command, info_name=name, parent=parent)
            name = args.pop(0) if args else ""
            sub = command.get_command(ctx, name)
            if sub is None:
                return f"no command {name!r} in {ctx.command_path}: {', '.join(command.list_commands(ctx))}"
            command, parent = sub, ctx
        command.make_context(name, args, parent=parent)
    except typer.TyperException as exc:
        return getattr(exc, "format_message", exc.__str__)()
    return None


@functools.cache
def _module_help(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=_python_env(dict(os.environ)))


def _module_options_problem(module: str, args: list[str]) -> str | None:
    help_text = _module_help(module)
    if help_text.returncode != 0:
        return f"python -m {module} --help failed: {help_text.stderr[-500:]}"
    unknown = [a for a in args if a.startswith("--") and a.split("=")[0] not in help_text.stdout]
    missing = [a for a in args if a.startswith("tests/") and not (REPO / a).exists()]
    if unknown or missing:
        return f"options not in its --help: {unknown}; missing files: {missing}"
    return None


def _python_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this checkout first on the import path (a snippet imports Scion's packages)."""
    return env | {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)}


# ---------------------------------------------------------------- job specs


def test_job_specs_in_the_pages_are_valid_submissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, make in DOC_FILES.items():
        make(data / name)
    monkeypatch.setenv("SCION_DATA_ROOTS", str(data))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    checked, problems = [], []
    try:
        for path in DOCUMENTS:
            whole = None
            for block in blocks(path):
                if block.lang != "yaml" or block.not_run:
                    continue
                spec = yaml.safe_load(block.code)
                if "space" in spec:
                    whole = spec
                elif whole is None:
                    problems.append(f"{block}: a spec fragment with no whole spec above it in {block.doc}")
                    continue
                else:
                    spec = whole | spec
                try:
                    JobRequest.model_validate(spec)
                    checked.append(str(block))
                except ValidationError as exc:
                    problems.append(f"{block}: {exc}")
    finally:
        get_settings.cache_clear()
    assert not problems, "\n".join(problems)
    assert len(checked) >= 3, checked  # the README's spec, its one-shot and its dataset fragments


# ---------------------------------------------------------------- the README names what exists


def test_the_readme_names_every_space_strategy_evaluator_and_dataset_with_its_settings() -> None:
    text = section(REPO / "README.md", "What a spec may name")
    missing = [f"{registry.kind} {name!r}" for registry in (SPACES, STRATEGIES, EVALUATORS, DATASETS)
               for name in registry.names() if f"`{name}`" not in text]
    for name in EVALUATORS.names():
        item = re.search(rf"^\s*- `{name}` —(.*?)(?=^\s*- |\Z)", text, re.M | re.S)
        settings = set(EVALUATORS[name].config.model_fields) - {"type"}
        missing += [f"evaluator {name!r}: its entry" if item is None else
                    f"evaluator {name!r}: setting `{s}`" for s in sorted(settings)
                    if item is None or f"`{s}`" not in item.group(1)]
    for name in DATASETS.names():
        row = re.search(rf"^\s*\| `{name}` \|(.*)$", text, re.M)
        settings = set(DATASETS[name].config.model_fields) - {"type"}
        missing += [f"dataset {name!r}: its table row" if row is None else
                    f"dataset {name!r}: setting `{s}`" for s in sorted(settings)
                    if row is None or f"`{s}`" not in row.group(1)]
    assert not missing, "README.md, 'What a spec may name', does not show: " + "; ".join(dict.fromkeys(missing))


# ---------------------------------------------------------------- running the pages


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, int]]:
    """An embedded stack in a temporary home, with one finished training job (one tiny network)."""
    home = tmp_path_factory.mktemp("scion-home")
    settings = Settings(home=home, database_url=None, broker_url=None)
    with LocalStack(settings, workers=1) as stack, ScionClient(stack.url) as client:
        job = client.submit(train_spec(budget={"max_trials": 1}))
        done = client.wait(job["id"], timeout_s=240)
        assert done["status"] == "completed", done
        yield stack, job["id"]


@dataclass
class Shell:
    """A page's blocks run one after another in one directory and environment, as in one terminal."""

    cwd: Path
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)

    def substitute(self, code: str) -> str:
        for pattern, key in SUBSTITUTIONS:
            code = re.sub(pattern, lambda _: self.values[key], code)  # noqa: B023 -- called by re.sub at once, only where the pattern occurs
        return code

    def run(self, argv: list[str], block: Block, timeout: float = 240, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, cwd=self.cwd, env=env or self.env, capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, (f"{block} exited with {result.returncode}: {' '.join(argv)[:2000]}\n"
                                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def bash(self, block: Block) -> None:
        self.run(["bash", "-e", "-c", self.substitute(block.code)], block)

    def python(self, block: Block) -> None:
        script = self.cwd / f"snippet-{Path(block.doc).stem}-{block.line}.py"
        script.write_text(self.substitute(block.code))
        self.run([sys.executable, script.name], block)

    def servers(self, block: Block) -> None:
        """Start the block's servers in the background, on a new PostgreSQL database and the test
        Redis, then make a token and run a small job through them; stop them all afterwards."""
        with scratch_postgres(migrated=False) as database_url:
            self.values["database_url"] = database_url
            script = SERVER_LINE.sub(lambda m: f"{m.group(1)} & {m.group(2) or ''}", self.substitute(block.code))
            log = self.cwd / f"servers-{block.line}.log"
            with open(log, "wb") as out:
                servers = subprocess.Popen(["bash", "-e", "-c", script + "\nwait\n"], cwd=self.cwd, env=self.env,
                                           stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                api = f"http://127.0.0.1:{self.values['port']}"
                _wait_ready(api, servers, log)
                env = self.env | {"SCION_DATABASE_URL": database_url, "SCION_BROKER_URL": self.values["redis_url"]}
                token = self.run(["scion", "token", "create", "--name", "docs"], block, env=env).stdout.strip()
                spec = self.cwd / "tiny.yaml"
                spec.write_text(yaml.safe_dump(train_spec(budget={"max_trials": 1})))
                ran = self.run(["scion", "run", str(spec), "--api", api, "--json"], block,
                               env=env | {"SCION_TOKEN": token})
                job = json.loads(ran.stdout)
                assert job["status"] == "completed" and job["counts"] == {"completed": 1}, job
            finally:
                _stop(servers)


def _wait_ready(api: str, servers: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert servers.poll() is None, f"the block exited with {servers.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{api}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{api} was not ready within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(group: subprocess.Popen) -> None:
    """SIGTERM to every process of the group ``group`` leads (each server shuts its own children
    down), then SIGKILL to whatever is left after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        group.poll()  # reaps the leader, the shell, which exits at once
        try:
            os.killpg(group.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group.pid, signal.SIGKILL)
    group.wait()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("doc", RUN_DOCS)
def test_a_pages_commands_and_snippets_run_as_shown(doc: str, embedded: tuple[LocalStack, int], redis_url: str,
                                                   tmp_path: Path) -> None:
    stack, job = embedded
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_") or k.startswith("SCION_TEST_")}
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "SCION_HOME": str(stack.home),
            "SCION_API_URL": stack.url}
    port = free_port()
    shell = Shell(tmp_path, _python_env(env), {"job": str(job), "redis_url": redis_url, "port": str(port),
                                                "port_option": f"--port {port}"})
    ran = []
    for block in blocks(REPO / doc):
        if not runnable(block):
            continue
        if block.lang == "python":
            shell.python(block)
        elif SERVER_LINE.search(block.code):
            shell.servers(block)
        else:
            shell.bash(block)
        ran.append(str(block))
    assert ran
