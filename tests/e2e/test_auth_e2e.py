"""Tokens over the real thing: `scion api --host 0.0.0.0` (a uvicorn process) turns auth on by
itself, `scion token create` issues tokens on the database, and the CLI sends SCION_TOKEN or
SCION_TOKEN_FILE. The CLI runs in-process (CliRunner) to keep this quick; the API is a process."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from client import cli
from client.stack import free_port
from scion.settings import get_settings
from storage.migrate import upgrade
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture
def public_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    url = f"sqlite:///{tmp_path / 'scion.db'}"
    upgrade(url)
    for key in [k for k in os.environ if k.startswith("SCION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", url)
    get_settings.cache_clear()
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "client", "api", "--host", "0.0.0.0", "--port", str(port)],
                                cwd=REPO, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        get_settings.cache_clear()


def test_public_api_needs_tokens_and_the_cli_sends_them(
    public_api: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, log = public_api
    runner = CliRunner()
    assert "API auth on" in log.read_text() and "0.0.0.0" in log.read_text()

    issued = {}
    for name in ("alice", "bob"):
        result = runner.invoke(cli.app, ["token", "create", "--name", name])
        assert result.exit_code == 0, result.output
        issued[name] = result.stdout.strip().splitlines()[-1]

    r = httpx.get(f"{base}/v1/jobs")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
    assert httpx.get(f"{base}/").status_code == 200  # the page stays public

    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"name": "alice-job", "space": {"type": "nb201"}, "strategy": {"type": "random"},
                                    "evaluator": {"type": "train", "dataset": "digits"}}))
    result = runner.invoke(cli.app, ["submit", str(spec), "--api", base])
    assert result.exit_code == 1 and "401" in result.output and "token" in result.output, result.output

    monkeypatch.setenv("SCION_TOKEN", issued["alice"])
    get_settings.cache_clear()
    result = runner.invoke(cli.app, ["submit", str(spec), "--api", base, "--json"])
    assert result.exit_code == 0, result.output
    assert '"owner": "alice"' in result.output

    monkeypatch.delenv("SCION_TOKEN")
    (tmp_path / "bob.token").write_text(issued["bob"] + "\n")
    monkeypatch.setenv("SCION_TOKEN_FILE", str(tmp_path / "bob.token"))
    get_settings.cache_clear()
    result = runner.invoke(cli.app, ["status", "--api", base, "--json"])
    assert result.exit_code == 0 and '"total": 0' in result.output, result.output
    result = runner.invoke(cli.app, ["cancel", "1", "--api", base])
    assert result.exit_code == 1 and "404" in result.output and "not found" in result.output, result.output

    # Nothing secret reached the server's log.
    text = log.read_text()
    assert issued["alice"] not in text and issued["bob"] not in text
