"""docker-compose.yml as written: the file is a valid Compose file whose parts agree with one
another, and the commands of its header, run one after the other as a person types them, take a
job from nothing to its end on the processes Compose would start, each with exactly the
environment its container gets (tests/e2e/compose.py plays Compose's part on this machine)."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import make_url

from client.stack import free_port
from storage.db import session_scope
from storage.models import Job, Trial
from tests.conftest import REPO, scratch_postgres
from tests.e2e.compose import COMPOSE_FILE, Compose, header_block, header_command, load_compose, read_dockerfile
from tests.e2e.faults import RedisServer

# The images a Scion service runs: the one built from the Dockerfile (all but the stand-ins).
STAND_INS = ("postgres", "redis")


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    """The official Compose Specification schema (as check-jsonschema ships it) against ``path``."""
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def docker_compose_present() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=60).returncode == 0


def test_the_compose_file_is_valid(tmp_path: Path) -> None:
    checked = check_jsonschema(COMPOSE_FILE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    interpolated = tmp_path / "interpolated.yml"  # as Compose sees it with no variable set
    interpolated.write_text(yaml.safe_dump(load_compose({}), sort_keys=False))
    checked = check_jsonschema(interpolated)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the check can fail: a misspelt depends_on condition is refused, naming it
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("service_completed_successfully", "service_completed"))
    refused = check_jsonschema(broken)
    assert refused.returncode != 0 and "service_completed" in refused.stdout + refused.stderr
    if docker_compose_present():  # Compose's own reading, where the plugin is installed
        config = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
                                capture_output=True, text=True, timeout=120)
        assert config.returncode == 0, config.stderr


def test_the_readme_gives_the_headers_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    readme = [[re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines()] for block in blocks]
    assert header_block() in readme


def test_the_compose_files_parts_agree() -> None:
    compose = load_compose({})
    services, image = compose["services"], read_dockerfile()
    postgres = services["postgres"]["environment"]
    for name, service in services.items():
        if name in STAND_INS:
            continue
        env = image.env | service["environment"]
        database = make_url(env["SCION_DATABASE_URL"])  # the database the postgres service creates
        assert (database.host, database.port, database.username, database.password, database.database) == (
            "postgres", 5432, postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]), name
        assert env["SCION_BROKER_URL"].startswith("redis://redis:6379/"), name
        mounted = {volume.split(":")[1] for volume in service.get("volumes", [])}
        if name != "migrate":  # every process that reads spec files or weights sees them where the settings say
            assert set(env["SCION_DATA_ROOTS"].split(":")) <= mounted, name
            assert env["SCION_ARTIFACTS"] in mounted, name
    assert image.env["SCION_DATA_ROOTS"] == "/data"
    # The header's CPU-host line names services of the file, and its profile brings the CPU worker.
    cpu = shlex.split(header_command("docker compose --profile"))
    profile, named = cpu[3], [word for word in cpu[5:] if not word.startswith("-")]
    assert set(named) <= set(services) and "worker-cpu" in named
    assert profile in services["worker-cpu"]["profiles"]
    # A worker on another machine, as the header starts it: the same settings, its data at /data.
    remote = shlex.split(header_command("docker run"))
    given = {remote[i + 1].split("=")[0] for i, word in enumerate(remote) if word == "-e"}
    assert given == {"SCION_DATABASE_URL", "SCION_BROKER_URL"}
    mounted = {remote[i + 1].split(":")[1] for i, word in enumerate(remote) if word == "-v"}
    assert set(image.env["SCION_DATA_ROOTS"].split(":")) <= mounted


@pytest.fixture
def compose(tmp_path: Path, own_redis: RedisServer, nb201_csv: Path) -> Iterator[Compose]:
    """The file's services on this machine: a fresh PostgreSQL database without any schema (the
    migrate service creates it) for ``postgres``, a Redis server of the test's for ``redis``, and
    the folder holding the NAS-Bench-201 table as SCION_DATA_DIR."""
    with scratch_postgres(migrated=False) as database:
        stack = Compose(tmp_path, {"postgres": database, "redis": own_redis.url}, nb201_csv.parent, free_port())
        try:
            yield stack
        finally:
            stack.down()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("host", ["gpu", "cpu"])
def test_the_headers_commands_run_a_job_to_its_end(compose: Compose, host: str) -> None:
    """As the header says, and on a host without NVIDIA GPUs with its CPU-worker line first."""
    lines = header_block()
    assert lines[0].startswith("docker compose up -d"), lines
    if host == "cpu":
        lines[0] = header_command("docker compose --profile cpu")
    printed = {}
    for line in lines:
        done = compose.run_header_line(line)
        if done is not None:
            assert done.returncode == 0, f"`{line}` failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            printed[line] = done.stdout
    assert compose.shell["SCION_TOKEN"].startswith("scion_")
    (run,) = [out for line, out in printed.items() if line.startswith("scion run")]
    assert "completed" in run and "leaderboard" in run, run

    with session_scope(compose.stand_ins["postgres"]) as session:
        job = session.scalars(select(Job)).one()
        trials = session.scalars(select(Trial).where(Trial.job_id == job.id)).all()
        assert (job.status, job.owner) == ("completed", "me")  # the token's owner
        assert len(trials) == 100 and {t.status for t in trials} == {"completed"}

    # `docker compose down`: every process stops within its service's stop_grace_period
    stopped = compose.down()
    assert None not in stopped.values(), stopped
    assert {"api", "scheduler", f"worker{'-cpu' if host == 'cpu' else ''}"} <= set(stopped), stopped
