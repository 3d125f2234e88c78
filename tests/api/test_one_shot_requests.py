"""A one-shot request the service cannot run is refused at submission with a 422 naming the field
and what is allowed (a 404 for a supernet job that does not exist): a method without a supernet
for the space, a supernet too large for this server, a strategy or a budget the method has no
use for, and a specialisation naming a supernet of another space or dataset, or none at all.
The real app in a TestClient against a fresh SQLite file and a fresh PostgreSQL database."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from scion.settings import get_settings
from storage.db import session_scope, utcnow
from storage.models import Trial
from tests.api.test_api import no_traceback, submit
from tests.api.test_declared_space import LAYERS

pytestmark = pytest.mark.timeout(60)

NB201 = {"type": "nb201", "channels": 4, "cells_per_stage": 1}


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def body(method: str = "spos", space: dict[str, Any] | None = None, dataset: str = "digits",
         **extra: Any) -> dict[str, Any]:
    return {"space": space or NB201, "evaluator": {"type": "train", "dataset": dataset},
            "one_shot": {"method": {"type": method}}, **extra}


def refused(client: TestClient, spec: dict[str, Any], field: str) -> str:
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    no_traceback(r)
    [error] = r.json()["errors"]
    if error["field"] == field:
        return error["message"]
    # a field checked against the rest of the job is named at the start of the body's message
    assert error["field"] == "body" and error["message"].startswith(f"{field}: "), error
    return error["message"].removeprefix(f"{field}: ")


def trained_supernet(client: TestClient, spec: dict[str, Any]) -> int:
    """A one-shot job whose supernet trial completed, as a worker would leave it."""
    job_id = submit(client, spec)["id"]
    with session_scope() as session:
        session.add(Trial(job_id=job_id, number=0, phase="supernet", status="completed", arch=None,
                          arch_key="supernet", attempts=1, created_at=utcnow(), finished_at=utcnow()))
    return job_id


def test_a_method_without_a_supernet_for_the_space_is_refused(client: TestClient) -> None:
    message = refused(client, body("darts", {"type": "chain"}), "one_shot.method")
    assert "method 'darts' has supernets for spaces nb201, darts; not 'chain'" in message
    message = refused(client, body("spos", {"type": "declared", "layers": LAYERS}), "one_shot.method")
    assert "nb201, darts, chain, conv1d; not 'declared'; declared spaces have no supernet yet" in message


def test_parts_the_method_has_no_use_for_are_refused(client: TestClient) -> None:
    assert "proposes its own candidates" in refused(client, body("darts", strategy={"type": "evolution"}),
                                                    "strategy")
    assert "scores its own 1 candidate" in refused(client, body("darts", budget={"max_trials": 5}),
                                                  "budget.max_trials")
    assert "sets each trial's epochs" in refused(client, body(strategy={"type": "asha"}), "strategy")
    spec = body()
    spec["evaluator"] = {"type": "proxy", "dataset": "digits"}
    assert "train evaluator" in refused(client, spec, "evaluator")
    spec = body(method="darts")
    spec["one_shot"]["supernet_from"] = 1
    assert "searched with method 'spos'" in refused(client, spec, "one_shot.supernet_from")


def test_a_supernet_too_large_for_this_server_is_refused(client: TestClient, monkeypatch) -> None:
    monkeypatch.setenv("SCION_SUPERNET_MEMORY_MB", "1")
    get_settings.cache_clear()
    message = refused(client, body(space={"type": "nb201", "channels": 64, "cells_per_stage": 5}), "space")
    assert "above this server's limit of 1 MiB (supernet_memory_mb)" in message
    submit(client, body())  # the tiny one fits


def test_a_specialisation_must_name_a_trained_supernet_of_its_space_and_dataset(client: TestClient) -> None:
    source = trained_supernet(client, body())
    untrained = submit(client, body())["id"]

    def naming(supernet: int, **changes: Any) -> dict[str, Any]:
        spec = body(**changes)
        spec["one_shot"]["supernet_from"] = supernet
        return spec

    job = submit(client, naming(source))
    assert job["trials_planned"] == 20 + 3, "no supernet trial: 20 search trials, 3 retrained"
    other_space = refused(client, naming(source, space={"type": "nb201", "channels": 8, "cells_per_stage": 1}),
                          "one_shot.supernet_from")
    assert f"job {source}'s supernet is of another space" in other_space and f"allowed: {source}" not in other_space
    other_data = refused(client, naming(source, dataset="mnist1d"), "one_shot.supernet_from")
    assert "trained on another dataset" in other_data and "allowed: none yet" in other_data
    not_trained = refused(client, naming(untrained), "one_shot.supernet_from")
    assert f"job {untrained} trained no supernet; allowed: {source}" in not_trained
    r = client.post("/v1/jobs", json=naming(999_999))
    assert (r.status_code, r.json()) == (404, {"detail": "one_shot.supernet_from: job 999999 not found"})
