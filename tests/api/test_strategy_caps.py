"""What one job's strategy may make its scheduler do is bounded at submission (issue 16, item 5): a
predictor of 64 networks of 8 layers of 512 units made another owner's 3-trial job wait 82 s and
the scheduler grow to 2.4 GB. Predictor sizes, fit lengths, candidate pools and resampling are
refused above their caps (docs/security.md) with a 422 naming the field and the cap; the largest
allowed is accepted. The real app in a TestClient against a fresh SQLite file and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.test_api import submit
from tests.api.test_one_shot_requests import refused

pytestmark = pytest.mark.timeout(120)

LARGEST_PREDICTOR = {"ensemble_size": 16, "hidden_units": 64, "hidden_layers": 8, "epochs": 1000,
                     "update_epochs": 1000}


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def job(strategy: dict[str, Any]) -> dict[str, Any]:
    return {"space": {"type": "nb201", "channels": 4, "cells_per_stage": 1}, "strategy": strategy,
            "evaluator": {"type": "train", "dataset": "digits"}}


TOO_MUCH = [
    ("pnas", "ensemble_size", 64, 16), ("pnas", "hidden_units", 512, 64), ("pnas", "hidden_layers", 9, 8),
    ("pnas", "epochs", 10_000, 1000), ("pnas", "update_epochs", 5000, 1000), ("pnas", "pool_size", 1_000_000, 10_000),
    ("pnas", "top_k", 10_000, 1000), ("bananas", "fantasy_epochs", 10_000, 1000),
    ("bananas", "random_candidates", 100_000, 10_000), ("bananas", "parents", 10_000, 100),
    ("bananas", "mutations_per_parent", 10_000, 100), ("bananas", "neighbours_of", 1000, 100),
    ("bananas", "climb_steps", 1000, 100), ("bananas", "climb_starts", 10_000, 100),
    ("bananas", "max_resample", 10_000, 1000), ("nsga2", "population_size", 5000, 1000),
    ("tpe", "n_ei_candidates", 10_000, 1000), ("random", "max_resample", 10_000, 1000),
    ("evolution", "max_resample", 10_000, 1000), ("local_search", "max_resample", 10_000, 1000),
    ("reinforce", "max_resample", 10_000, 1000), ("asha", "max_resample", 10_000, 1000),
]


@pytest.mark.parametrize(("strategy", "field", "value", "cap"), TOO_MUCH, ids=[f"{s}.{f}" for s, f, _, _ in TOO_MUCH])
def test_a_strategy_that_would_make_its_scheduler_work_without_bound_is_refused_naming_the_cap(
        client: TestClient, strategy: str, field: str, value: int, cap: int) -> None:
    message = refused(client, job({"type": strategy, field: value}), f"strategy.{strategy}.{field}")
    assert message == f"Input should be less than or equal to {cap}"
    submit(client, job({"type": strategy, field: cap}))


def test_the_red_teams_predictor_is_refused_and_the_largest_allowed_accepted(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=job({"type": "pnas", "ensemble_size": 64, "hidden_units": 512,
                                          "hidden_layers": 8}))
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"strategy.pnas.ensemble_size", "strategy.pnas.hidden_units"}
    for strategy in ("pnas", "bananas"):
        submit(client, job({"type": strategy, **LARGEST_PREDICTOR}))
    assert client.get("/v1/jobs").json()["total"] == 2
