"""Polled reads answered from memory (api/poll_cache.py), as a user watching a job meets them:
answers at most ``api_cache_seconds`` old, a cancel visible at once to its caller, one owner's
answer never served to another, and a burst of identical polls costing the database one answer.

The real app in a TestClient (and an httpx client on the ASGI app for the burst) against a fresh
SQLite file and a fresh PostgreSQL database; trials are written straight into the database, as
workers would, so the answers can be seen lagging them.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.main import create_app
from scion.settings import get_settings
from storage import tokens
from storage.db import get_engine, session_scope
from tests.api.test_api import add_trial, submit, tabular_spec
from tests.api.test_auth import bearer, make_token

pytestmark = pytest.mark.timeout(60)

KEPT_S = 1.0


@contextmanager
def statements() -> Iterator[list[str]]:
    """The statements this process sends to the test database meanwhile."""
    sent: list[str] = []

    def note(_conn, _cursor, statement, *_) -> None:
        sent.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def app_keeping(monkeypatch: pytest.MonkeyPatch, seconds: float, **env: str):
    monkeypatch.setenv("SCION_API_CACHE_SECONDS", str(seconds))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return create_app()


def complete(job_id: int, number: int, acc: float) -> None:
    with session_scope() as session:
        add_trial(session, job_id, number, "completed", objective=acc, score=acc, metrics={"val_acc_12ep": acc})


def test_a_polled_job_is_answered_from_memory_until_its_answer_expires(settings_env, monkeypatch, nb201_csv: Path):
    with TestClient(app_keeping(monkeypatch, KEPT_S)) as client:
        job = submit(client, tabular_spec(nb201_csv, name="watched"))
        complete(job["id"], 0, 70.0)
        paths = (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/trials?sort=objective",
                 f"/v1/jobs/{job['id']}/best")
        first = {path: client.get(path) for path in paths}
        assert first[paths[0]].json()["counts"] == {"completed": 1}
        complete(job["id"], 1, 90.0)  # a worker finishes a better trial
        with statements() as sent:
            again = {path: client.get(path) for path in paths}
        assert sent == [], "a repeated poll within api_cache_seconds went to the database"
        assert {p: r.json() for p, r in again.items()} == {p: r.json() for p, r in first.items()}

        time.sleep(KEPT_S + 0.05)
        status, page, best = (client.get(path).json() for path in paths)
        assert status["counts"] == {"completed": 2} and status["best"]["number"] == 1
        assert [t["number"] for t in page["items"]] == [1, 0]
        assert best["number"] == 1


def test_with_the_cache_off_every_poll_reads_the_database(settings_env, monkeypatch, nb201_csv: Path):
    with TestClient(app_keeping(monkeypatch, 0)) as client:
        job = submit(client, tabular_spec(nb201_csv, name="watched"))
        assert client.get(f"/v1/jobs/{job['id']}").json()["counts"] == {}
        complete(job["id"], 0, 70.0)
        assert client.get(f"/v1/jobs/{job['id']}").json()["counts"] == {"completed": 1}


def test_a_cancel_shows_at_once_to_whoever_reads_through_the_same_process(settings_env, monkeypatch,
                                                                          nb201_csv: Path):
    with TestClient(app_keeping(monkeypatch, 30)) as client:
        job = submit(client, tabular_spec(nb201_csv, name="cancelled"))
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "pending"
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_an_owners_kept_answer_is_never_served_to_another_owner(settings_env, monkeypatch, nb201_csv: Path):
    with TestClient(app_keeping(monkeypatch, 30, SCION_AUTH="on")) as client:
        alice, bob = make_token("alice-laptop", owner="alice"), make_token("bob-laptop", owner="bob")
        admin = make_token("ops", admin=True)
        r = client.post("/v1/jobs", json=tabular_spec(nb201_csv, name="alices"), headers=bearer(alice))
        assert r.status_code == 201, r.text
        for path in (f"/v1/jobs/{r.json()['id']}", f"/v1/jobs/{r.json()['id']}/trials"):
            assert client.get(path, headers=bearer(alice)).status_code == 200
            assert client.get(path, headers=bearer(bob)).status_code == 404
            assert client.get(path).status_code == 401
            assert client.get(path, headers=bearer(admin)).status_code == 200


@pytest.mark.parametrize("auth", ["off", "on"])
def test_a_burst_of_identical_polls_costs_the_database_one_answer(settings_env, monkeypatch, nb201_csv: Path,
                                                                   auth: str):
    """With tokens on, the burst's one token is also read once, not by each request."""
    app = app_keeping(monkeypatch, KEPT_S, SCION_AUTH=auth)
    headers = bearer(make_token("poller", owner="team")) if auth == "on" else {}
    with TestClient(app) as client:
        job = client.post("/v1/jobs", json=tabular_spec(nb201_csv, name="popular"), headers=headers).json()
        complete(job["id"], 0, 70.0)
    path = f"/v1/jobs/{job['id']}"

    async def burst(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scion",
                                     headers=headers) as c:
            return await asyncio.gather(*(c.get(path) for _ in range(n)))

    time.sleep(KEPT_S + 0.05)  # the token checked at submission has expired too
    with statements() as sent_by_burst:
        answers = asyncio.run(burst(20))
    time.sleep(KEPT_S + 0.05)
    with statements() as sent_by_one:
        asyncio.run(burst(1))
    assert [r.status_code for r in answers] == [200] * 20
    assert len({r.text for r in answers}) == 1
    assert sent_by_one and len(sent_by_burst) == len(sent_by_one)


def test_a_polling_callers_token_is_read_once_per_interval_and_refused_within_it_once_revoked(
        settings_env, monkeypatch, nb201_csv: Path):
    with TestClient(app_keeping(monkeypatch, KEPT_S, SCION_AUTH="on")) as client:
        alice = make_token("alice-laptop", owner="alice")
        r = client.post("/v1/jobs", json=tabular_spec(nb201_csv, name="alices"), headers=bearer(alice))
        assert r.status_code == 201, r.text
        path = f"/v1/jobs/{r.json()['id']}"
        assert client.get(path, headers=bearer(alice)).status_code == 200
        with statements() as sent:
            assert client.get(path, headers=bearer(alice)).status_code == 200
        assert sent == [], "the token or the answer was read from the database again within api_cache_seconds"

        with session_scope() as session:
            tokens.revoke_token(session, name="alice-laptop")
        time.sleep(KEPT_S + 0.05)
        refused = client.get(path, headers=bearer(alice))
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_with_the_cache_off_a_revoked_token_is_refused_at_once(settings_env, monkeypatch):
    with TestClient(app_keeping(monkeypatch, 0, SCION_AUTH="on")) as client:
        alice = make_token("alice-laptop", owner="alice")
        assert client.get("/v1/jobs", headers=bearer(alice)).status_code == 200
        with session_scope() as session:
            tokens.revoke_token(session, name="alice-laptop")
        assert client.get("/v1/jobs", headers=bearer(alice)).status_code == 401


def test_a_token_in_steady_use_is_still_refused_within_the_setting_once_revoked(settings_env, monkeypatch):
    """Its check is renewed in the background while it is used, never past api_cache_seconds."""
    keep_s = 0.4
    with TestClient(app_keeping(monkeypatch, keep_s, SCION_AUTH="on")) as client:
        alice = make_token("alice-laptop", owner="alice")
        for _ in range(10):  # a second of polling, past two lifetimes of a check
            assert client.get("/v1/jobs", headers=bearer(alice)).status_code == 200
            time.sleep(0.1)
        with session_scope() as session:
            tokens.revoke_token(session, name="alice-laptop")
        revoked_at = asked_at = time.monotonic()
        while client.get("/v1/jobs", headers=bearer(alice)).status_code == 200:
            assert asked_at - revoked_at <= keep_s, "a revoked token was accepted past api_cache_seconds"
            time.sleep(0.02)
            asked_at = time.monotonic()
