"""A spec file with a syntax error is one line naming the place (``file:line:column: what was
expected``), from the CLI (as JSON with ``--json``) and the SDK alike, never a traceback; the SDK
finds the API as the CLI does (SCION_API_URL) and submits a spec file as well as a dict."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client.cli import app
from client.sdk import ScionClient
from client.spec_file import SpecFileError, read_spec
from scion.settings import get_settings

BROKEN_YAML = "name: x\nspace:\n  type: nb201\n   channels: 8\n"  # line 4 indented under a scalar
BROKEN_JSON = '{"name": "x",\n "space": {"type": "nb201",}}\n'  # a trailing comma on line 2


@pytest.mark.parametrize(("name", "text", "where", "what"), [
    ("spec.yaml", BROKEN_YAML, ":4:", "mapping values are not allowed here"),
    ("spec.json", BROKEN_JSON, ":2:", "Expecting property name enclosed in double quotes"),
    ("spec.yaml", "- a\n- b\n", "", "must hold one mapping (the job spec), not list"),
])
def test_a_broken_spec_file_is_one_line_naming_the_place(tmp_path: Path, name: str, text: str, where: str,
                                                         what: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecFileError) as info:
        read_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}{where}") and what in message and "\n" not in message


def test_the_cli_says_where_and_nothing_more(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(BROKEN_YAML)
    with pytest.raises(SpecFileError) as info:
        read_spec(path)
    runner = CliRunner()
    plain = runner.invoke(app, ["submit", str(path), "--api", "http://127.0.0.1:9"])
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    assert plain.output.strip().splitlines() == [f"error: {info.value}"]
    as_json = runner.invoke(app, ["run", str(path), "--json"])
    assert as_json.exit_code == 2 and json.loads(as_json.output) == {"error": str(info.value)}
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.yaml"), "--api", "http://127.0.0.1:9"])
    assert missing.exit_code == 2 and "nope.yaml: no such file" in missing.output


def test_the_sdk_finds_the_api_as_the_cli_does_and_submits_a_file(live_server: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCION_API_URL", live_server)
    get_settings.cache_clear()
    spec = tmp_path / "spec.yaml"
    spec.write_text("space: {type: nb201}\nstrategy: {type: random}\n"
                    "evaluator: {type: train, dataset: digits}\nbudget: {max_trials: 1}\n")
    with ScionClient() as client:
        job = client.submit(spec)
        assert client.job(job["id"])["max_trials"] == 1
        with pytest.raises(SpecFileError, match=r"spec\.json:2:"):
            (tmp_path / "spec.json").write_text(BROKEN_JSON)
            client.submit(str(tmp_path / "spec.json"))
    monkeypatch.delenv("SCION_API_URL")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="set SCION_API_URL"):
        ScionClient()
