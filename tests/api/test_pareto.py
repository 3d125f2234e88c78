"""GET /v1/jobs/{id}/pareto on SQLite and PostgreSQL: the non-dominated completed trials over
the job's objectives, best primary objective first. Trials are written straight into the
database, the way workers would."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from scion.spec import JobRequest
from storage.db import session_scope, utcnow
from storage.models import Trial

pytestmark = pytest.mark.timeout(60)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def submit(client: TestClient, objectives: list[dict[str, Any]]) -> dict[str, Any]:
    spec = JobRequest.model_validate({
        "name": "pareto",
        "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1},
        "strategy": {"type": "nsga2"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 2},
        "objectives": objectives,
    })
    r = client.post("/v1/jobs", json=spec.model_dump(mode="json"))
    assert r.status_code == 201, r.text
    return r.json()


def add_trials(job_id: int, trials: dict[int, tuple[str, dict[str, Any] | None]]) -> None:
    now = utcnow()
    with session_scope() as session:
        for number, (status, metrics) in trials.items():
            acc = (metrics or {}).get("val_acc")
            session.add(Trial(
                job_id=job_id, number=number, status=status,
                arch=[OPS[(number + i) % len(OPS)] for i in range(6)], arch_key=f"key-{number}",
                attempts=1, metrics=metrics, objective=acc, score=acc, told=True,
                created_at=now, started_at=now, finished_at=None if status == "running" else now,
            ))


TRIALS = {
    0: ("completed", {"val_acc": 90.0, "params": 1000, "test_acc": 89.0}),  # front: cheapest
    1: ("completed", {"val_acc": 95.0, "params": 5000, "test_acc": 94.0}),  # front: most accurate
    2: ("completed", {"val_acc": 93.0, "params": 2000, "test_acc": 92.5}),  # front: a trade-off
    3: ("completed", {"val_acc": 93.0, "params": 2000, "test_acc": 92.0}),  # front: ties with 2
    4: ("completed", {"val_acc": 93.0, "params": 2500, "test_acc": 93.0}),  # dominated by 2 and 3
    5: ("completed", {"val_acc": 89.0, "params": 1000, "test_acc": 88.0}),  # dominated by 0
    6: ("completed", {"val_acc": 80.0, "params": 9000}),  # dominated by everything
    7: ("completed", {"val_acc": 99.0}),  # no params recorded: cannot be placed, left out
    8: ("failed", None),
    9: ("running", None),
    10: ("stopped", {"val_acc": 99.5, "params": 10}),  # early-stopped: not a finished result
    11: ("completed", {"val_acc": 95.0, "params": 5000, "test_acc": 93.0}),  # front: ties with 1
}


def test_pareto_returns_the_non_dominated_trials_best_primary_first(client: TestClient) -> None:
    job = submit(client, [{"metric": "val_acc"}, {"metric": "params"}])
    assert job["spec"]["objectives"] == [{"metric": "val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}]
    assert client.get(f"/v1/jobs/{job['id']}/pareto").json() == []

    add_trials(job["id"], TRIALS)
    r = client.get(f"/v1/jobs/{job['id']}/pareto")
    assert r.status_code == 200, r.text
    front = r.json()
    assert [t["number"] for t in front] == [1, 11, 2, 3, 0]
    assert all(t["status"] == "completed" for t in front)
    assert front[0]["metrics"] == TRIALS[1][1] and front[0]["objective"] == 95.0
    assert front[-1]["arch_key"] == "key-0" and len(front[-1]["arch"]) == 6

    # Another job's trials never mix in; directions come from that job's own spec: minimising
    # both, the smallest net (0) and the least accurate one (2) are the front, 1 is dominated.
    other = submit(client, [{"metric": "params"}, {"metric": "val_acc", "mode": "min"}])
    add_trials(other["id"], {0: TRIALS[0], 1: TRIALS[1], 2: TRIALS[6]})
    assert [t["number"] for t in client.get(f"/v1/jobs/{other['id']}/pareto").json()] == [0, 2]


def test_single_objective_pareto_is_the_best_with_ties(client: TestClient) -> None:
    job = submit(client, [{"metric": "val_acc"}])
    add_trials(job["id"], {n: t for n, t in TRIALS.items() if n not in (7,)})
    assert [t["number"] for t in client.get(f"/v1/jobs/{job['id']}/pareto").json()] == [1, 11]

    by_params = submit(client, [{"metric": "params"}])
    add_trials(by_params["id"], TRIALS)
    assert [t["number"] for t in client.get(f"/v1/jobs/{by_params['id']}/pareto").json()] == [0, 5]


def test_pareto_of_an_unknown_job_is_404(client: TestClient) -> None:
    r = client.get("/v1/jobs/999999/pareto")
    assert r.status_code == 404
    assert r.json()["detail"] == "job 999999 not found"
