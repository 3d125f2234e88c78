"""A page of jobs stays small however large their specs are: the listing carries each job's summary
(status, counts, best trial, the types of its space, strategy and evaluator), and one job's spec is
read by its id. On a fresh SQLite file and a fresh PostgreSQL database (``settings_env``)."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app

pytestmark = pytest.mark.timeout(120)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
WARM_START = [list(arch) for arch in itertools.islice(itertools.product(OPS, repeat=6), 1000)]  # the most a spec takes


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def large_spec(n: int) -> dict:
    return {"name": f"large-{n}", "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1},
            "strategy": {"type": "random"}, "evaluator": {"type": "train", "dataset": "digits", "epochs": 1},
            "warm_start": WARM_START, "budget": {"max_trials": 1000}}


def test_sixty_jobs_with_large_specs_list_in_a_small_page_and_each_spec_is_read_by_id(client: TestClient) -> None:
    jobs = []
    for n in range(60):
        r = client.post("/v1/jobs", json=large_spec(n))
        assert r.status_code == 201, r.text
        jobs.append(r.json())
    spec_bytes = len(client.get(f"/v1/jobs/{jobs[0]['id']}").content)
    assert spec_bytes > 60_000  # one job with its spec

    page = client.get("/v1/jobs", params={"limit": 100})
    assert page.status_code == 200
    assert len(page.content) < 100_000, len(page.content)  # 60 jobs' summaries: smaller than two specs
    listed = page.json()
    assert listed["total"] == 60 and [j["id"] for j in listed["items"]] == [j["id"] for j in reversed(jobs)]
    first = listed["items"][-1]
    assert "spec" not in first
    assert (first["name"], first["space"], first["strategy"], first["evaluator"]) == ("large-0", "nb201", "random",
                                                                                      "train")
    assert first["objective"] == {"metric": "val_acc", "mode": "max"}
    assert (first["max_trials"], first["trials_planned"], first["status"]) == (1000, 1000, "pending")

    one = client.get(f"/v1/jobs/{jobs[0]['id']}").json()
    assert one["spec"]["warm_start"] == WARM_START
    assert {k: v for k, v in one.items() if k not in ("spec", "elapsed_s")} == \
        {k: v for k, v in first.items() if k != "elapsed_s"}  # the summary is the job's, less its spec
