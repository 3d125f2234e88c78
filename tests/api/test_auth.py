"""Security and limits as a user meets them: API tokens (401 without a valid one, every job its
owner's, another owner's jobs invisible, admins see all, tokens stored hashed), auth 'auto' by
listen address, request-size and job-size limits, and secrets kept out of what Scion prints.

The real app (``api.main.create_app``) in a TestClient against a fresh SQLite file and a fresh
PostgreSQL database (``settings_env``); tokens are made the way ``scion token create`` makes
them, on the database directly.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from api.main import create_app
from client import cli
from client.sdk import ScionClient
from scion.settings import Settings, get_settings, mask_url
from storage import tokens
from storage.db import session_scope
from storage.models import ApiToken
from tests.api.test_api import add_trial, no_traceback, train_spec
from tests.api.test_web import _render

pytestmark = pytest.mark.timeout(60)

PUBLIC = {"/healthz", "/readyz", "/"}  # plus /docs and /openapi.json, which are not API routes


def make_token(name: str, owner: str | None = None, admin: bool = False) -> str:
    with session_scope() as session:
        return tokens.create_token(session, name=name, owner=owner, is_admin=admin)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth_on(settings_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SCION_AUTH", "on")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client
    get_settings.cache_clear()


def operations(app) -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation in the app's OpenAPI document."""
    return [(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item]


def private_routes(app) -> list[tuple[str, str]]:
    """(method, path with ids filled in) for every API route that is not public."""
    return [(m, re.sub(r"\{[^}]+\}", "1", p)) for m, p in operations(app) if p not in PUBLIC]


def job_routes(app, job_id: int) -> list[tuple[str, str]]:
    """Every route about one job (reads first, cancel last), with the job's id and trial 0."""
    out = [(m, p.replace("{job_id}", str(job_id)).replace("{number}", "0"))
           for m, p in operations(app) if p.startswith("/v1/jobs/{job_id}")]
    return sorted(out, key=lambda mp: (mp[0] != "GET", mp[1]))


# ---------------------------------------------------------------- 401


def test_requests_without_a_valid_token_get_401(auth_on: TestClient) -> None:
    good = make_token("alice-laptop", owner="alice")
    revoked = make_token("old")
    with session_scope() as session:
        tokens.revoke_token(session, name="old")

    cases = {
        "no header": {},
        "basic auth": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": bearer("not-a-token"),
        "unknown token": bearer("scion_" + "A" * 43),
        "revoked token": bearer(revoked),
        "token with a suffix": bearer(good + "x"),
        "very long": bearer("scion_" + "x" * 5000),
    }
    for what, headers in cases.items():
        r = auth_on.get("/v1/jobs", headers=headers)
        assert r.status_code == 401, (what, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer"), (what, r.headers)
        detail = r.json()["detail"]
        assert "token" in detail, (what, detail)
        assert good not in r.text and revoked not in r.text
        no_traceback(r)
    assert "Authorization: Bearer" in auth_on.get("/v1/jobs").json()["detail"]
    assert "revoked" in auth_on.get("/v1/jobs", headers=bearer(revoked)).json()["detail"]
    # Bad input from someone without a token is still a 401: nothing about the spec is revealed.
    assert auth_on.post("/v1/jobs", json={"space": 3}).status_code == 401

    r = auth_on.get("/v1/jobs", headers=bearer(good))
    assert r.status_code == 200, r.text
    with session_scope() as session:
        used = session.scalar(select(ApiToken).where(ApiToken.name == "alice-laptop"))
        assert used.last_used_at is not None

    # The probes, the docs, the schema and the page stay public.
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/"):
        r = auth_on.get(path)
        assert r.status_code in (200, 503) and r.status_code != 401, (path, r.text)


def test_every_route_but_the_public_ones_asks_for_a_token(auth_on: TestClient) -> None:
    routes = private_routes(auth_on.app)
    assert ("POST", "/v1/jobs") in routes and ("GET", "/v1/spaces") in routes
    for method, path in routes:
        r = auth_on.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")


# ---------------------------------------------------------------- owners


def populate(client: TestClient, token: str, name: str) -> dict[str, Any]:
    r = client.post("/v1/jobs", json=train_spec(name=name), headers=bearer(token))
    assert r.status_code == 201, r.text
    job = r.json()
    with session_scope() as session:
        add_trial(session, job["id"], 0, "completed", objective=90.0, score=90.0,
                  metrics={"val_acc": 90.0, "params": 1000.0})
    return job


def test_another_owners_jobs_are_invisible_and_admins_see_all(auth_on: TestClient) -> None:
    client = auth_on
    alice, alice2 = make_token("alice", owner="alice"), make_token("alice-ci", owner="alice")
    bob, root = make_token("bob"), make_token("root", admin=True)

    a_job = populate(client, alice, "alice's search")
    b_job = populate(client, bob, "bob's search")
    assert a_job["owner"] == "alice" and b_job["owner"] == "bob"

    def ids(token: str, **params: Any) -> list[int]:
        r = client.get("/v1/jobs", headers=bearer(token), params=params)
        assert r.status_code == 200, r.text
        assert r.json()["total"] == len(r.json()["items"])
        return [j["id"] for j in r.json()["items"]]

    assert ids(alice) == [a_job["id"]] == ids(alice2)  # the owner's, whichever of its tokens
    assert ids(bob) == [b_job["id"]]
    assert ids(bob, status="pending") == [b_job["id"]]
    assert ids(root) == [b_job["id"], a_job["id"]]

    missing = client.get("/v1/jobs/999999", headers=bearer(bob)).json()["detail"]
    routes = job_routes(client.app, a_job["id"])
    assert len(routes) >= 7, routes  # job, trials, trial, best, pareto, events, cancel
    for method, path in routes:
        r = client.request(method, path, headers=bearer(bob))
        assert r.status_code == 404, (method, path, r.text)
        # Exactly what a job that does not exist says: nothing tells bob the job is there.
        assert r.json() == {"detail": missing.replace("999999", str(a_job["id"]))}, (path, r.text)
        if method == "GET":  # the owner and an admin see the job (a route may still lack what it serves)
            for token in (alice, alice2, root):
                r = client.request(method, path, headers=bearer(token))
                assert r.status_code < 500, (method, path, r.text)
                if r.status_code != 200:
                    assert r.json()["detail"] != missing.replace("999999", str(a_job["id"])), (path, r.text)
    for path in ("", "/trials", "/trials/0", "/best", "/pareto", "/events"):
        assert client.get(f"/v1/jobs/{a_job['id']}{path}", headers=bearer(alice)).status_code == 200, path
    assert client.get(f"/v1/jobs/{a_job['id']}", headers=bearer(alice)).json()["status"] == "pending"

    r = client.post(f"/v1/jobs/{a_job['id']}/cancel", headers=bearer(alice2))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    r = client.post(f"/v1/jobs/{b_job['id']}/cancel", headers=bearer(root))  # an admin may cancel any job
    assert r.status_code == 200 and r.json()["owner"] == "bob", r.text

    # A job submitted while auth was off has no owner: only admins see it.
    with session_scope() as session:
        from storage import repository as repo

        orphan = repo.create_job(session, name="before auth", spec=a_job["spec"]).id
    assert client.get(f"/v1/jobs/{orphan}", headers=bearer(alice)).status_code == 404
    assert client.get(f"/v1/jobs/{orphan}", headers=bearer(root)).status_code == 200
    assert orphan not in ids(alice) and orphan in ids(root)


def test_with_auth_off_everyone_sees_everything(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCION_AUTH", "off")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        job = client.post("/v1/jobs", json=train_spec(), headers=bearer("anything")).json()
        assert job["owner"] is None
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [job["id"]]


# ---------------------------------------------------------------- tokens at rest, the token commands


def test_tokens_are_stored_hashed_and_the_commands_never_show_them_again(settings_env) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["token", "create", "--name", "ci", "--owner", "team-a", "--admin"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"scion_[A-Za-z0-9_-]{43}", secret), result.output
    assert "not shown again" in result.output

    again = runner.invoke(cli.app, ["token", "create", "--name", "ci"])
    assert again.exit_code == 1 and "already exists" in again.output

    with session_scope() as session:
        rows = session.execute(text("SELECT * FROM tokens")).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "ci" and row["owner"] == "team-a" and bool(row["is_admin"])
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    dumped = repr([dict(r) for r in rows])
    assert secret not in dumped and secret[6:] not in dumped  # the raw token is nowhere in the database

    listed = runner.invoke(cli.app, ["token", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"name": "ci"' in listed.output and secret not in listed.output
    table = runner.invoke(cli.app, ["token", "list"])
    assert table.exit_code == 0 and "team-a" in table.output and secret not in table.output

    revoked = runner.invoke(cli.app, ["token", "revoke", "ci"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output, revoked.output
    with session_scope() as session:
        assert tokens.authenticate(session, secret=secret) is None
    unknown = runner.invoke(cli.app, ["token", "revoke", "nobody"])
    assert unknown.exit_code == 1 and "no token named" in unknown.output

    # Tokens are random: two never match.
    with session_scope() as session:
        a, b = (tokens.create_token(session, name=n) for n in ("a", "b"))
    assert a != b


# ---------------------------------------------------------------- auth 'auto'


@pytest.mark.parametrize(("host", "enabled"), [
    ("127.0.0.1", False), ("127.0.1.1", False), ("::1", False), ("[::1]", False), ("localhost", False),
    ("0.0.0.0", True), ("::", True), ("192.168.1.20", True), ("scion.example.org", True), (None, False),
])
def test_auth_auto_is_on_unless_the_api_listens_on_loopback(host: str | None, enabled: bool) -> None:
    assert Settings(auth="auto", api_host=host).auth_enabled is enabled
    assert Settings(auth="on", api_host=host).auth_enabled is True
    assert Settings(auth="off", api_host=host).auth_enabled is False


def test_scion_api_passes_its_host_to_the_app_and_says_whether_it_is_open(
    settings_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.delenv("SCION_AUTH", raising=False)
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: served.append(kw["host"]))
    runner = CliRunner()
    for host, status, asks in [("127.0.0.1", "auth off", False), ("0.0.0.0", "auth on", True)]:
        monkeypatch.delenv("SCION_API_HOST", raising=False)
        result = runner.invoke(cli.app, ["api", "--host", host, "--port", "1"])
        assert result.exit_code == 0, result.output
        assert status in result.output, result.output
        assert get_settings().api_host == host and served[-1] == host
        with TestClient(create_app()) as client:
            assert (client.get("/v1/jobs").status_code == 401) is asks
            assert client.get("/healthz").status_code == 200
    assert "open" in cli.auth_line("127.0.0.1") and "WARNING" not in cli.auth_line("127.0.0.1")
    monkeypatch.setenv("SCION_AUTH", "off")
    get_settings.cache_clear()
    assert "WARNING" in cli.auth_line("0.0.0.0")


# ---------------------------------------------------------------- the web page


def test_page_sends_a_stored_token_and_asks_for_one_on_401() -> None:
    with TestClient(create_app()) as client:
        html = client.get("/").text
    assert 'localStorage' in html and '"scion.token"' in html
    assert "headers.Authorization = `Bearer ${state.token}`" in html
    assert 'id="auth"' in html and 'id="auth-token" type="password"' in html
    assert "e.status === 401" in html


def test_browser_asks_for_a_token_when_the_api_wants_one(
    live_server: str, sqlite_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chromium: Path
) -> None:
    monkeypatch.setenv("SCION_AUTH", "on")
    get_settings.cache_clear()
    def shown(dom: str, element: str) -> bool:
        tag = re.search(rf'<[a-z]+ id="{element}"[^>]*>', dom)
        assert tag, element
        return " hidden" not in tag.group(0)

    dom = _render(f"{live_server}/", tmp_path)
    assert shown(dom, "auth") and "Paste your API token" in dom, dom[-3000:]
    assert not shown(dom, "banner")  # no "cannot reach the API" alarm
    assert "token needed" in dom

    monkeypatch.setenv("SCION_AUTH", "off")
    get_settings.cache_clear()
    dom = _render(f"{live_server}/", tmp_path)
    assert not shown(dom, "auth") and shown(dom, "jobs-empty")


# ---------------------------------------------------------------- limits


def test_request_body_over_the_limit_is_413(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCION_MAX_BODY_BYTES", "4096")
    get_settings.cache_clear()
    spec = train_spec(name="x" * 150)
    big = train_spec(warm_start=[["none"] * 6] * 200)  # valid JSON, ~9 KB
    with TestClient(create_app()) as client:
        assert client.post("/v1/jobs", json=spec).status_code == 201
        r = client.post("/v1/jobs", json=big)
        assert r.status_code == 413, r.text
        assert "4 KiB" in r.json()["detail"] and "4096 bytes" in r.json()["detail"], r.text
        # No Content-Length (chunked): counted as it arrives.
        payload = json.dumps(big).encode()
        r = client.post("/v1/jobs", content=iter([payload[:3000], payload[3000:]]),
                        headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and "4096 bytes" in r.json()["detail"], r.text
        small = json.dumps(spec).encode()
        r = client.post("/v1/jobs", content=iter([small[:50], small[50:]]),
                        headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        assert client.get("/v1/jobs").json()["total"] == 2


def test_job_size_and_page_size_caps_are_422_naming_field_and_cap(
    settings_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCION_MAX_TRIALS_CAP", "50")
    monkeypatch.setenv("SCION_MAX_PARALLEL_CAP", "4")
    monkeypatch.setenv("SCION_MAX_PAGE_SIZE", "10")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        cases = [
            ({"max_trials": 51}, ["budget.max_trials", "51", "cap of 50", "max_trials_cap"]),
            ({"max_trials": 50, "max_parallel": 5}, ["budget.max_parallel", "cap of 4", "max_parallel_cap"]),
            ({"max_trials": 10**6}, ["budget.max_trials", "100000"]),  # the absolute bound still holds
        ]
        for budget, fragments in cases:
            r = client.post("/v1/jobs", json=train_spec(budget=budget))
            assert r.status_code == 422, (budget, r.text)
            assert all(f in r.json()["detail"] for f in fragments), (fragments, r.text)
            no_traceback(r)
        assert client.post("/v1/jobs", json=train_spec(budget={"max_trials": 50, "max_parallel": 4})).status_code == 201
        # max_parallel is clamped to max_trials before the cap applies.
        assert client.post("/v1/jobs", json=train_spec(budget={"max_trials": 3, "max_parallel": 8})).status_code == 201

        for path in ("/v1/jobs", "/v1/jobs/1/trials", "/v1/jobs/1/events"):
            r = client.get(path, params={"limit": 11})
            assert r.status_code == 422, (path, r.text)
            assert "limit" in r.json()["detail"] and "10" in r.json()["detail"], r.text
            assert client.get(path, params={"limit": 10}).status_code == 200, path

        for spec, field in [
            (train_spec(name="n" * 201), "name"),
            (train_spec(objectives=[{"metric": "m" * 101}]), "objectives[0].metric"),
            (train_spec(constraints=[{"metric": "c" * 101, "max": 1}]), "constraints[0].metric"),
        ]:
            r = client.post("/v1/jobs", json=spec)
            assert r.status_code == 422 and field in r.json()["detail"], r.text
        for path in ("/v1/jobs/2147483648", "/v1/jobs/1/trials/99999999999999999999"):
            r = client.get(path)
            assert r.status_code == 422, (path, r.text)


# ---------------------------------------------------------------- secrets


def test_db_upgrade_prints_the_database_url_without_its_password(
    settings_env, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":  # the test server trusts local connections: any password does
        url = url.set(password="hunter2-not-shown")
    secret_url = url.render_as_string(hide_password=False)
    monkeypatch.setenv("SCION_DATABASE_URL", secret_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli.app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    squeezed = "".join(result.output.split())  # however the console wrapped it
    assert "".join(f"database at {mask_url(secret_url)} is at revision head".split()) in squeezed, result.output
    if url.password:
        assert ":***@" in result.output
    assert "hunter2" not in repr(get_settings()) and "hunter2" not in str(get_settings())


def test_settings_and_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "TOKEN"):
        monkeypatch.delenv(f"SCION_{name}", raising=False)
    (tmp_path / "db").write_text("postgresql+psycopg://scion:pg-secret@db:5432/scion\n")
    (tmp_path / "broker").write_text("redis://:redis-secret@redis:6379/0")
    (tmp_path / "token").write_text("scion_from-a-file\n")
    monkeypatch.setenv("SCION_DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("SCION_BROKER_URL_FILE", str(tmp_path / "broker"))
    monkeypatch.setenv("SCION_TOKEN_FILE", str(tmp_path / "token"))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.db_url == "postgresql+psycopg://scion:pg-secret@db:5432/scion"
        assert settings.broker == "redis://:redis-secret@redis:6379/0"
        assert settings.token == "scion_from-a-file"
        assert not {"pg-secret", "redis-secret", "from-a-file"} & set(re.findall(r"[\w-]+", repr(settings)))
        assert mask_url(settings.db_url) == "postgresql+psycopg://scion:***@db:5432/scion"
        assert mask_url(settings.broker) == "redis://:***@redis:6379/0"
        with ScionClient("http://127.0.0.1:9") as client:  # the SDK (and so the CLI) sends the token
            assert client._http.headers["authorization"] == "Bearer scion_from-a-file"
        with ScionClient("http://127.0.0.1:9", token="explicit") as client:
            assert client._http.headers["authorization"] == "Bearer explicit"

        # A value and a file for the same setting, or a file that cannot be read: refused, naming
        # the setting and the path, never showing a secret.
        monkeypatch.setenv("SCION_DATABASE_URL", "postgresql://u:also-secret@h/db")
        with pytest.raises(ValueError, match="database_url or database_url_file") as info:
            Settings()
        assert "also-secret" not in str(info.value) and "pg-secret" not in str(info.value)
        monkeypatch.delenv("SCION_DATABASE_URL")
        monkeypatch.setenv("SCION_TOKEN_FILE", str(tmp_path / "missing"))
        with pytest.raises(ValueError, match="token_file: cannot read .*missing") as info:
            Settings()
        assert "pg-secret" not in str(info.value) and "redis-secret" not in str(info.value)
    finally:
        get_settings.cache_clear()
