"""Every answer tells a browser not to sniff it, frame it, send a referrer from it or (JSON) keep
it; each carries a Content-Security-Policy fit for what it is: nothing may run in JSON, the docs
run only this server's scripts, the page keeps its own policy. The answers given before a route
runs (401 from the token gate, 413 from the size limit) carry them as well."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from scion.settings import get_settings
from storage import tokens
from storage.db import session_scope

pytestmark = pytest.mark.timeout(60)

EVERYWHERE = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


@pytest.fixture
def auth_on(settings_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str]]]:
    monkeypatch.setenv("SCION_AUTH", "on")
    get_settings.cache_clear()
    with session_scope() as session:
        token = tokens.create_token(session, name="reader")
    with TestClient(create_app()) as client:
        yield client, {"Authorization": f"Bearer {token}"}
    get_settings.cache_clear()


def policy(response) -> dict[str, str]:
    """The response's CSP as {directive: sources}."""
    directives = (part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives if d[0]}


def test_json_answers_may_not_run_be_framed_or_kept(auth_on: tuple[TestClient, dict[str, str]]) -> None:
    client, token = auth_on
    answers = {
        "listing": client.get("/v1/jobs", headers=token),
        "no token": client.get("/v1/jobs"),
        "not found": client.get("/v1/jobs/12345", headers=token),
        "bad input": client.post("/v1/jobs", headers=token, json={"space": 3}),
        "too large": client.post("/v1/jobs", headers=token, content=b"x" * (2 << 20)),
        "probe": client.get("/healthz"),
        "schema": client.get("/openapi.json"),
    }
    assert {what: r.status_code for what, r in answers.items()} == {
        "listing": 200, "no token": 401, "not found": 404, "bad input": 422, "too large": 413, "probe": 200,
        "schema": 200}
    for what, r in answers.items():
        assert r.headers["content-type"].startswith("application/json"), what
        assert EVERYWHERE.items() <= r.headers.items(), (what, r.headers)
        assert r.headers["cache-control"] == "no-store", (what, r.headers)
        assert policy(r)["default-src"] == "'none'" and policy(r)["frame-ancestors"] == "'none'", (what, r.headers)
        assert "script-src" not in policy(r), (what, r.headers)


def test_the_docs_run_only_this_servers_scripts(auth_on: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = auth_on
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert EVERYWHERE.items() <= r.headers.items(), (path, r.headers)
        csp = policy(r)
        assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'", (path, csp)
        assert csp["script-src"].split() == ["'self'", "'unsafe-inline'"], (path, csp)
        assert csp["connect-src"] == "'self'", (path, csp)  # the schema, from here only


def test_the_page_keeps_its_own_policy(auth_on: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = auth_on
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert EVERYWHERE.items() <= r.headers.items(), r.headers
    assert r.headers["cache-control"] == "no-cache"  # the page's own: revalidated, never stale
    assert policy(r)["script-src"] == "'unsafe-inline'" and policy(r)["connect-src"] == "'self'", r.headers
    assert r.headers.get_list("content-security-policy") == [r.headers["content-security-policy"]]
