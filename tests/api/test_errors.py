"""One error vocabulary (scion/errors.py), mapped to HTTP in one place (api/errors.py), as a
client meets it: storage and the routes raise NotFound / Conflict / Invalid / Unavailable; each
becomes one status with the usual body (``{"detail"}``, plus ``"errors"`` for a 422, and a
Retry-After header for a 503), whether a route raised it or AuthGate met it before any route ran;
the SDK shows the same message.

The real app in a TestClient against a fresh SQLite file and a fresh PostgreSQL database
(``settings_env``), the same app served by uvicorn for the SDK.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import errors
from api.main import create_app
from client.sdk import ScionClient, ScionError
from scion.errors import Conflict, Invalid, NotFound, Unavailable
from scion.settings import get_settings
from storage import repository as repo
from storage import tokens
from storage.db import forget_engines, session_scope
from tests.api.test_api import UNREACHABLE, add_trial, no_traceback, submit, tabular_spec

pytestmark = pytest.mark.timeout(60)

CANCELLED_AGAIN = "job {} is already cancelled; only pending or running jobs can be cancelled"


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def answered(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = asyncio.run(errors.answer(None, exc))
    return response.status_code, json.loads(response.body), dict(response.headers)


# ---------------------------------------------------------------- the mapping


def test_each_domain_error_has_one_status_and_body() -> None:
    assert answered(NotFound("job 7 not found"))[:2] == (404, {"detail": "job 7 not found"})
    assert answered(Conflict("job 7 is already completed"))[:2] == (409, {"detail": "job 7 is already completed"})

    status, body, _ = answered(Invalid("evaluator.dataset", "unknown dataset 'mnist'", allowed=["cifar10", "digits"]))
    message = "unknown dataset 'mnist'; allowed: cifar10, digits"
    assert status == 422
    assert body == {"detail": f"evaluator.dataset: {message}",
                    "errors": [{"field": "evaluator.dataset", "message": message, "type": "value_error"}]}

    status, body, headers = answered(Unavailable("the broker is busy", retry_after_s=2.5))
    assert (status, body) == (503, {"detail": "the broker is busy"})
    assert headers["retry-after"] == "3"  # whole seconds, rounded up


def test_storage_raises_the_domain_errors(settings_env) -> None:
    with session_scope() as session:
        job = repo.create_job(session, name="j", spec={})
        with pytest.raises(NotFound, match="^job 123456 not found$"):
            repo.cancel_job(session, job_id=123456)
        with pytest.raises(Conflict, match="no longer held by elsewhere"):
            repo.update_held_job(session, job_id=job.id, owner="elsewhere", status="running")
        repo.cancel_job(session, job_id=job.id)
        with pytest.raises(Conflict, match=f"^{CANCELLED_AGAIN.format(job.id)}$"):
            repo.cancel_job(session, job_id=job.id)

        tokens.create_token(session, name="alice")
        with pytest.raises(Conflict, match="a token named 'alice' already exists"):
            tokens.create_token(session, name="alice")
        with pytest.raises(Invalid, match="^owner: must be 1 to 100 printable characters") as invalid:
            tokens.create_token(session, name="bob", owner="x" * 101)
        assert invalid.value.field == "owner"
        with pytest.raises(NotFound, match="no token named 'carol'"):
            tokens.revoke_token(session, name="carol")


# ---------------------------------------------------------------- through the app


def test_missing_things_are_404_and_a_second_cancel_409(client: TestClient, nb201_csv: Path) -> None:
    job = submit(client, tabular_spec(nb201_csv))["id"]
    for path, detail in [
        ("/v1/jobs/999999", "job 999999 not found"),
        (f"/v1/jobs/{job}/trials/5", f"job {job} has no trial 5"),
        (f"/v1/jobs/{job}/trials/5/architecture", f"job {job} has no trial 5"),
        (f"/v1/jobs/{job}/best", f"job {job} has no completed trial yet"),
    ]:
        r = client.get(path)
        assert (r.status_code, r.json()) == (404, {"detail": detail}), (path, r.text)

    assert client.post(f"/v1/jobs/{job}/cancel").status_code == 200
    r = client.post(f"/v1/jobs/{job}/cancel")
    assert (r.status_code, r.json()) == (409, {"detail": CANCELLED_AGAIN.format(job)}), r.text
    no_traceback(r)


def test_an_unusable_retrain_source_is_422_naming_the_field(client: TestClient, nb201_csv: Path) -> None:
    source = submit(client, tabular_spec(nb201_csv))["id"]
    with session_scope() as session:
        add_trial(session, source, 0, "running")
    retrain = {"kind": "retrain", "evaluator": {"type": "train", "epochs": 2}}

    r = client.post("/v1/jobs", json={**retrain, "retrain": {"from_job": source}})
    message = f"job {source} has no completed trial yet; wait for one or name a trial with retrain.trial"
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": f"retrain.from_job: {message}",
                        "errors": [{"field": "retrain.from_job", "message": message, "type": "value_error"}]}

    r = client.post("/v1/jobs", json={**retrain, "retrain": {"from_job": source, "trial": 0}})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["retrain.trial"], r.text
    assert "is running; only a completed trial can be retrained" in r.json()["detail"]

    r = client.post("/v1/jobs", json={**retrain, "retrain": {"from_job": 999999}})
    assert (r.status_code, r.json()) == (404, {"detail": "retrain.from_job: job 999999 not found"}), r.text


def test_the_sdk_shows_the_apis_messages(live_server: str, nb201_csv: Path) -> None:
    with ScionClient(live_server, token="") as sdk:
        job = sdk.submit(tabular_spec(nb201_csv))["id"]
        sdk.cancel(job)
        with pytest.raises(ScionError) as refused:
            sdk.cancel(job)
        assert (refused.value.status_code, refused.value.detail) == (409, CANCELLED_AGAIN.format(job))
        assert str(refused.value) == f"HTTP 409: {CANCELLED_AGAIN.format(job)}"
        with pytest.raises(ScionError) as missing:
            sdk.job(999999)
        assert str(missing.value) == "HTTP 404: job 999999 not found"


# ---------------------------------------------------------------- AuthGate, before any route


@pytest.mark.parametrize("dialect", sorted(UNREACHABLE))
def test_auth_gate_answers_as_the_routes_do(dialect: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With auth on, AuthGate checks the token before the app runs: a database it cannot reach is
    the same 503 (message, Retry-After) a route gives, and a missing token the usual 401."""
    url = UNREACHABLE[dialect]
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", url)
    monkeypatch.setenv("SCION_AUTH", "on")
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as client:
            r = client.get("/v1/jobs", headers={"Authorization": "Bearer scion_" + "x" * 43})
            assert r.status_code == 503, r.text
            assert r.json() == {"detail": "the database is unavailable right now; retry in a few seconds"}
            assert r.headers["retry-after"] == "5"
            no_traceback(r)

            r = client.post("/v1/jobs", json={"not": "read"})
            assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="scion"', r.text
            assert set(r.json()) == {"detail"} and "needs a token" in r.json()["detail"]
    finally:
        get_settings.cache_clear()
        forget_engines(url)
