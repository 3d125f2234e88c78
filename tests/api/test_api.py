"""The HTTP API as a user meets it: the real app (``api.main.create_app``) in a TestClient,
against a fresh SQLite file and a fresh PostgreSQL database (``settings_env`` points the
process settings at each in turn).

Trials are written straight into the database through the repository, the way the scheduler
and workers would, so the read side can be checked without running a search.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from broker.app import celery_app
from scion.settings import get_settings
from storage import repository as repo
from storage.db import forget_engines, session_scope, utcnow
from storage.models import Trial

pytestmark = pytest.mark.timeout(60)

ARCH = ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none"]
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


# ---------------------------------------------------------------- helpers and fixtures


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    # raise_server_exceptions (the default) turns any unhandled error into a test failure.
    with TestClient(create_app()) as c:
        yield c


def tabular_spec(csv: Path, **extra: Any) -> dict[str, Any]:
    return {
        "space": {"type": "nb201"},
        "strategy": {"type": "evolution"},
        "evaluator": {"type": "tabular", "table": str(csv)},
        **extra,
    }


def train_spec(**extra: Any) -> dict[str, Any]:
    return {
        "name": "digits-random",
        "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1},
        "strategy": {"type": "random"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 2},
        **extra,
    }


def no_traceback(response) -> None:
    assert "Traceback" not in response.text, response.text
    assert 'File "' not in response.text, response.text


def submit(client: TestClient, spec: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def add_trial(
    session,
    job_id: int,
    number: int,
    status: str,
    *,
    objective: float | None = None,
    score: float | None = None,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
    attempts: int = 1,
    arch: list[str] | None = None,
) -> Trial:
    now = utcnow()
    arch = arch or [OPS[(number + i) % len(OPS)] for i in range(6)]
    finished = status in ("completed", "failed", "stopped", "cancelled")
    trial = Trial(
        job_id=job_id, number=number, status=status, arch=arch, arch_key=f"key-{number}",
        attempts=attempts, worker="worker-1@test" if attempts else None, metrics=metrics,
        objective=objective, score=score, error=error, told=False,
        created_at=now - timedelta(seconds=60), queued_at=now - timedelta(seconds=55),
        started_at=now - timedelta(seconds=50) if attempts else None,
        heartbeat_at=now if status == "running" else None,
        finished_at=now - timedelta(seconds=10) if finished else None,
    )
    session.add(trial)
    session.flush()
    return trial


# val_acc_12ep by trial number for the populated job (higher is better).
COMPLETED = {0: 71.5, 1: 88.25, 2: 64.0, 3: 90.5, 4: 80.0}


@pytest.fixture
def populated(client: TestClient, nb201_csv: Path) -> dict[str, Any]:
    """A tabular job with 5 completed trials, one failed (twice attempted) and one running;
    trial 3 is the best and has a two-epoch learning curve plus a stale curve from attempt 1."""
    job = submit(client, tabular_spec(nb201_csv, name="populated"))
    with session_scope() as session:
        for number, acc in COMPLETED.items():
            trial = add_trial(
                session, job["id"], number, "completed", objective=acc, score=acc,
                metrics={"val_acc_12ep": acc, "test_acc_200ep": acc + 3.0},
                attempts=2 if number == 3 else 1,
            )
            if number == 3:
                # The first attempt's curve (its worker was lost) must not show.
                repo.record_step(session, trial_id=trial.id, attempt=1, step=1, metrics={"val_acc_12ep": 1.0})
                repo.record_step(session, trial_id=trial.id, attempt=2, step=2, metrics={"val_acc_12ep": 90.5})
                repo.record_step(session, trial_id=trial.id, attempt=2, step=1, metrics={"val_acc_12ep": 50.0})
        add_trial(session, job["id"], 5, "failed", error="architecture |x~0| is not in table", attempts=3)
        add_trial(session, job["id"], 6, "running")
    return job


# ---------------------------------------------------------------- submitting and reading jobs


def test_submit_tabular_job_fills_defaults_and_can_be_read_back(client: TestClient, nb201_csv: Path) -> None:
    r = client.post("/v1/jobs", json=tabular_spec(nb201_csv))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "pending"
    assert job["objective"] == {"metric": "val_acc_12ep", "mode": "max"}
    assert job["counts"] == {} and job["trials_total"] == 0 and job["best"] is None
    assert job["started_at"] is None and job["finished_at"] is None and job["error"] is None
    spec = job["spec"]
    assert spec["name"] == "search" == job["name"]
    assert spec["space"] == {"type": "nb201", "channels": 16, "cells_per_stage": 5}
    assert spec["strategy"]["population_size"] == 20 and spec["strategy"]["sample_size"] == 5
    assert spec["evaluator"] == {"type": "tabular", "table": str(nb201_csv)}
    assert spec["objectives"] == [{"metric": "val_acc_12ep", "mode": "max"}]
    assert spec["budget"]["max_trials"] == 20 == job["max_trials"]
    assert spec["budget"]["max_parallel"] == 2 and spec["budget"]["max_attempts"] == 3
    assert spec["seed"] == 0 and spec["warm_start"] == []

    r = client.get(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["id"] == job["id"] and again["status"] == "pending" and again["spec"] == spec
    events = client.get(f"/v1/jobs/{job['id']}/events").json()
    assert [e["kind"] for e in events] == ["submitted"]


def test_submit_train_job_with_warm_start_and_explicit_objective(client: TestClient) -> None:
    job = submit(client, train_spec())
    assert job["name"] == "digits-random" and job["status"] == "pending"
    assert job["objective"] == {"metric": "val_acc", "mode": "max"}
    evaluator = job["spec"]["evaluator"]
    assert evaluator["dataset"] == {"type": "digits"} and evaluator["epochs"] == 2
    assert evaluator["batch_size"] == 64 and evaluator["lr"] == 0.05

    # A metric's natural direction is filled in; a NAS-Bench-201 string is canonicalised to
    # the edge list; max_parallel never exceeds max_trials.
    key = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|none~2|"
    job = submit(client, train_spec(
        objectives=[{"metric": "params"}, {"metric": "val_acc"}],
        warm_start=[ARCH, key], budget={"max_trials": 3, "max_parallel": 8},
        evaluator={"type": "train", "dataset": {"type": "mnist1d", "num_samples": 2000}},
    ))
    assert job["objective"] == {"metric": "params", "mode": "min"}
    assert job["spec"]["objectives"][1] == {"metric": "val_acc", "mode": "max"}
    assert job["spec"]["warm_start"] == [ARCH, ARCH]
    assert job["spec"]["budget"]["max_parallel"] == 3 and job["max_trials"] == 3
    assert job["spec"]["evaluator"]["dataset"] == {"type": "mnist1d", "num_samples": 2000}
    assert client.get(f"/v1/jobs/{job['id']}").json()["spec"] == job["spec"]


def test_list_jobs_newest_first_filtered_and_paged(client: TestClient, nb201_csv: Path) -> None:
    empty = client.get("/v1/jobs").json()
    assert empty == {"items": [], "total": 0, "limit": 50, "offset": 0}

    ids = [submit(client, tabular_spec(nb201_csv, name=f"job-{i}"))["id"] for i in range(4)]
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200

    page = client.get("/v1/jobs").json()
    assert [j["id"] for j in page["items"]] == ids[::-1]
    assert [j["name"] for j in page["items"]] == ["job-3", "job-2", "job-1", "job-0"]
    assert page["total"] == 4

    page = client.get("/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert [j["id"] for j in page["items"]] == [ids[2], ids[1]]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    page = client.get("/v1/jobs", params={"limit": 2, "offset": 4}).json()
    assert page["items"] == [] and page["total"] == 4

    pending = client.get("/v1/jobs", params={"status": "pending"}).json()
    assert [j["id"] for j in pending["items"]] == [ids[3], ids[2], ids[0]] and pending["total"] == 3
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[1]] and cancelled["total"] == 1
    assert client.get("/v1/jobs", params={"status": "completed"}).json()["total"] == 0

    for params, field in [
        ({"limit": 0}, "limit"), ({"limit": 10000}, "limit"), ({"offset": -1}, "offset"),
        ({"status": "finished"}, "status"),
    ]:
        r = client.get("/v1/jobs", params=params)
        assert r.status_code == 422, (params, r.text)
        assert field in r.json()["detail"], r.text
        no_traceback(r)
    assert "pending" in client.get("/v1/jobs", params={"status": "finished"}).json()["detail"]


# ---------------------------------------------------------------- bad input


def invalid_cases(csv: Path) -> list[tuple[str, dict[str, Any] | str, list[str]]]:
    """(what, body, fragments the detail must contain)."""
    base = tabular_spec(csv)
    no_space = {k: v for k, v in base.items() if k != "space"}
    bad_arch = list(ARCH)
    bad_arch[3] = "conv_5x5"
    missing = str(csv.parent / "no-such-table.csv")
    return [
        ("unknown strategy", {**base, "strategy": {"type": "hill_climb"}}, ["strategy", "evolution", "random"]),
        ("strategy without type", {**base, "strategy": {"population_size": 4}}, ["strategy", "type"]),
        ("unknown space", {**base, "space": {"type": "hexagon"}}, ["space", "hexagon", "nb201", "darts"]),
        ("unknown evaluator", {**base, "evaluator": {"type": "oracle"}}, ["evaluator", "tabular", "train"]),
        ("unknown dataset", train_spec(evaluator={"type": "train", "dataset": "svhn"}),
         ["dataset", "svhn", "digits", "mnist1d"]),
        ("unknown dataset object", train_spec(evaluator={"type": "train", "dataset": {"type": "imagenet"}}),
         ["dataset", "digits", "mnist1d"]),
        ("missing space", no_space, ["space", "required"]),
        ("negative max_trials", {**base, "budget": {"max_trials": -5}}, ["budget.max_trials", "1"]),
        ("absurd max_trials", {**base, "budget": {"max_trials": 1e9}}, ["budget.max_trials", "100000"]),
        ("zero max_parallel", {**base, "budget": {"max_parallel": 0}}, ["budget.max_parallel"]),
        ("sample_size > population_size",
         {**base, "strategy": {"type": "evolution", "population_size": 4, "sample_size": 10}},
         ["strategy", "sample_size", "population_size"]),
        ("metric the evaluator does not report", {**base, "objectives": [{"metric": "val_acc"}]},
         ["objectives[0].metric", "val_acc", "allowed", "val_acc_12ep"]),
        ("metric of another evaluator", train_spec(objectives=[{"metric": "val_acc_12ep"}]),
         ["objectives[0].metric", "val_acc_12ep", "val_acc", "params", "flops", "latency_ms"]),
        ("proxy left out of the evaluator's proxies",
         train_spec(evaluator={"type": "proxy", "proxies": ["synflow"]}, objectives=[{"metric": "naswot"}]),
         ["objectives[0].metric", "naswot", "allowed", "synflow"]),
        ("bad objective mode", {**base, "objectives": [{"metric": "val_acc_12ep", "mode": "up"}]},
         ["objectives[0].mode", "max", "min"]),
        ("wrong op name in warm_start", {**base, "warm_start": [ARCH, bad_arch]},
         ["warm_start[1]", "edge 3", "conv_5x5", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
          "avg_pool_3x3"]),
        ("short warm_start architecture", {**base, "warm_start": [ARCH[:4]]}, ["warm_start[0]", "6"]),
        ("warm_start of the wrong type", {**base, "warm_start": [42]}, ["warm_start[0]"]),
        ("table that does not exist", {**base, "evaluator": {"type": "tabular", "table": missing}},
         ["table", missing, "does not exist"]),
        ("extra top-level field", {**base, "max_trials": 10}, ["max_trials", "not permitted"]),
        ("extra nested field", {**base, "space": {"type": "nb201", "cells": 3}}, ["space", "cells"]),
        ("negative seed", {**base, "seed": -1}, ["seed"]),
        ("empty name", {**base, "name": ""}, ["name"]),
        ("not an object", [base], ["body"]),
        ("malformed JSON", '{"space": {"type": "nb201"}', ["body", "JSON"]),
    ]


def test_invalid_specs_get_422_naming_the_field_and_allowed_values(client: TestClient, nb201_csv: Path) -> None:
    problems = []
    for what, body, fragments in invalid_cases(nb201_csv):
        if isinstance(body, str):
            r = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
        else:
            r = client.post("/v1/jobs", json=body)
        no_traceback(r)
        if r.status_code != 422:
            problems.append(f"{what}: status {r.status_code}: {r.text}")
            continue
        detail = r.json().get("detail")
        if not isinstance(detail, str):
            problems.append(f"{what}: detail is not a string: {r.text}")
            continue
        absent = [f for f in fragments if f not in detail]
        if absent:
            problems.append(f"{what}: {absent} not in {detail!r}")
        assert all({"field", "message"} <= set(e) for e in r.json()["errors"]), r.text
    assert not problems, "\n".join(problems)
    # Nothing was stored.
    assert client.get("/v1/jobs").json()["total"] == 0


# ---------------------------------------------------------------- unknown objects, cancelling


def test_unknown_job_or_trial_is_404(client: TestClient, nb201_csv: Path) -> None:
    for method, path in [
        ("get", "/v1/jobs/9999"), ("get", "/v1/jobs/9999/trials"), ("get", "/v1/jobs/9999/best"),
        ("post", "/v1/jobs/9999/cancel"), ("get", "/v1/jobs/9999/trials/0"), ("get", "/v1/jobs/9999/events"),
    ]:
        r = getattr(client, method)(path)
        assert r.status_code == 404, (path, r.text)
        assert "9999" in r.json()["detail"], r.text
        no_traceback(r)

    job = submit(client, tabular_spec(nb201_csv))
    r = client.get(f"/v1/jobs/{job['id']}/trials/0")
    assert r.status_code == 404 and "no trial 0" in r.json()["detail"], r.text
    r = client.get("/v1/jobs/not-a-number")
    assert r.status_code == 422 and "job_id" in r.json()["detail"], r.text


def test_cancel_pending_job_then_again_is_409(client: TestClient, nb201_csv: Path) -> None:
    job = submit(client, tabular_spec(nb201_csv))
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"

    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409, r.text
    assert "already cancelled" in r.json()["detail"], r.text
    no_traceback(r)
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job['id']}/events").json()]
    assert kinds == ["submitted", "cancelled"]


def test_cancel_withdraws_in_flight_trials_only(client: TestClient, populated: dict[str, Any]) -> None:
    job_id = populated["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["counts"] == {"completed": 5, "failed": 1, "cancelled": 1}
    running = client.get(f"/v1/jobs/{job_id}/trials/6").json()
    assert running["status"] == "cancelled" and running["error"] == "job cancelled"
    assert client.get(f"/v1/jobs/{job_id}/trials/3").json()["status"] == "completed"
    assert client.get(f"/v1/jobs/{job_id}/best").json()["number"] == 3


# ---------------------------------------------------------------- trials


def numbers(page: dict[str, Any]) -> list[int]:
    return [t["number"] for t in page["items"]]


def test_trials_listing_sorts_filters_and_pages(client: TestClient, populated: dict[str, Any]) -> None:
    url = f"/v1/jobs/{populated['id']}/trials"

    page = client.get(url).json()
    assert numbers(page) == [0, 1, 2, 3, 4, 5, 6]
    assert (page["total"], page["limit"], page["offset"]) == (7, 50, 0)
    first = page["items"][0]
    assert first["status"] == "completed" and first["objective"] == 71.5 and first["attempts"] == 1
    assert first["metrics"] == {"val_acc_12ep": 71.5, "test_acc_200ep": 74.5}
    assert first["duration_s"] == pytest.approx(40.0, abs=0.01)
    assert isinstance(first["arch"], list) and len(first["arch"]) == 6 and first["arch_key"] == "key-0"

    # Best first, trials without an objective (failed, running) last.
    assert numbers(client.get(url, params={"sort": "objective"}).json()) == [3, 1, 4, 0, 2, 5, 6]
    # Worst first still puts trials without an objective last.
    assert numbers(client.get(url, params={"sort": "objective", "order": "asc"}).json()) == [2, 0, 4, 1, 3, 5, 6]
    assert numbers(client.get(url, params={"order": "desc"}).json()) == [6, 5, 4, 3, 2, 1, 0]
    assert numbers(client.get(url, params={"order": "asc"}).json()) == [0, 1, 2, 3, 4, 5, 6]

    best_two = client.get(url, params={"sort": "objective", "limit": 2}).json()
    assert numbers(best_two) == [3, 1] and best_two["total"] == 7
    next_two = client.get(url, params={"sort": "objective", "limit": 2, "offset": 2}).json()
    assert numbers(next_two) == [4, 0] and (next_two["limit"], next_two["offset"]) == (2, 2)
    assert numbers(client.get(url, params={"limit": 3, "offset": 6}).json()) == [6]

    failed = client.get(url, params={"status": "failed"}).json()
    assert numbers(failed) == [5] and failed["total"] == 1
    assert failed["items"][0]["error"] == "architecture |x~0| is not in table"
    assert failed["items"][0]["objective"] is None and failed["items"][0]["attempts"] == 3
    completed = client.get(url, params={"status": "completed", "sort": "objective"}).json()
    assert numbers(completed) == [3, 1, 4, 0, 2] and completed["total"] == 5
    assert client.get(url, params={"status": "queued"}).json() == {"items": [], "total": 0, "limit": 50, "offset": 0}

    for params, fragments in [
        ({"sort": "score"}, ["sort", "number", "objective"]),
        ({"order": "up"}, ["order", "asc", "desc"]),
        ({"status": "done"}, ["status", "completed", "running"]),
        ({"limit": 0}, ["limit"]),
        ({"limit": 10000}, ["limit"]),
    ]:
        r = client.get(url, params=params)
        assert r.status_code == 422, (params, r.text)
        assert all(f in r.json()["detail"] for f in fragments), r.text


def test_trials_and_jobs_show_how_long_trials_waited_for_a_worker(client: TestClient, nb201_csv: Path) -> None:
    job = submit(client, tabular_spec(nb201_csv, name="waits"))
    now = utcnow()
    with session_scope() as session:
        for number, (status, waited) in enumerate([("completed", 2.0), ("running", 4.0), ("completed", 6.0),
                                                   ("queued", None), ("pending", None)]):
            trial = add_trial(session, job["id"], number, status, attempts=0 if status in ("queued", "pending") else 1)
            trial.queued_at = now - timedelta(seconds=100)
            trial.started_at = trial.queued_at + timedelta(seconds=waited) if waited is not None else None
            if status == "pending":  # written by the scheduler, never sent
                trial.queued_at = None
    page = client.get(f"/v1/jobs/{job['id']}/trials").json()["items"]
    waits = [t["queue_wait_s"] for t in page]
    assert waits[:3] == [pytest.approx(2.0), pytest.approx(4.0), pytest.approx(6.0)]
    assert waits[3] == pytest.approx(100.0, abs=5)  # still queued: until now
    assert waits[4] is None
    assert client.get(f"/v1/jobs/{job['id']}/trials/3").json()["queue_wait_s"] == pytest.approx(100.0, abs=5)
    wait = client.get(f"/v1/jobs/{job['id']}").json()["queue_wait"]
    assert wait["median_s"] == pytest.approx(5.0) and wait["max_s"] == pytest.approx(100.0, abs=5)
    assert wait["waiting"] == 1
    fresh = submit(client, tabular_spec(nb201_csv, name="nothing sent"))
    assert fresh["queue_wait"] == {"median_s": None, "max_s": None, "waiting": 0}


def test_trial_detail_has_arch_metrics_error_and_current_learning_curve(
    client: TestClient, populated: dict[str, Any]
) -> None:
    url = f"/v1/jobs/{populated['id']}/trials"

    best = client.get(f"{url}/3").json()
    assert best["number"] == 3 and best["status"] == "completed"
    assert best["arch"] == [OPS[(3 + i) % 5] for i in range(6)]
    assert best["attempts"] == 2 and best["worker"] == "worker-1@test" and best["error"] is None
    assert best["metrics"] == {"val_acc_12ep": 90.5, "test_acc_200ep": 93.5} and best["objective"] == 90.5
    # Only the current attempt's epochs, in step order.
    assert [(h["step"], h["metrics"]) for h in best["history"]] == [
        (1, {"val_acc_12ep": 50.0}), (2, {"val_acc_12ep": 90.5}),
    ]
    assert all(h["at"] for h in best["history"])

    failed = client.get(f"{url}/5").json()
    assert failed["status"] == "failed" and failed["error"] == "architecture |x~0| is not in table"
    assert failed["metrics"] is None and failed["objective"] is None and failed["history"] == []
    assert failed["attempts"] == 3

    running = client.get(f"{url}/6").json()
    assert running["status"] == "running" and running["finished_at"] is None and running["duration_s"] is None
    assert running["history"] == []

    r = client.get(f"{url}/7")
    assert r.status_code == 404 and "no trial 7" in r.json()["detail"], r.text


def test_best_trial_and_counts(client: TestClient, populated: dict[str, Any], nb201_csv: Path) -> None:
    job_id = populated["id"]
    r = client.get(f"/v1/jobs/{job_id}/best")
    assert r.status_code == 200, r.text
    assert r.json()["number"] == 3 and r.json()["objective"] == 90.5

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["counts"] == {"completed": 5, "failed": 1, "running": 1}
    assert job["trials_total"] == 7
    assert job["best"]["number"] == 3 and job["best"]["objective"] == 90.5
    listed = client.get("/v1/jobs").json()["items"]
    assert [j["best"]["number"] for j in listed if j["id"] == job_id] == [3]

    # A job whose trials all failed or are still running has no best yet.
    other = submit(client, tabular_spec(nb201_csv))
    with session_scope() as session:
        add_trial(session, other["id"], 0, "failed", error="boom")
        add_trial(session, other["id"], 1, "running")
        add_trial(session, other["id"], 2, "queued", attempts=0)
    r = client.get(f"/v1/jobs/{other['id']}/best")
    assert r.status_code == 404 and "no completed trial" in r.json()["detail"], r.text
    job = client.get(f"/v1/jobs/{other['id']}").json()
    assert job["best"] is None and job["counts"] == {"failed": 1, "running": 1, "queued": 1}
    assert client.get(f"/v1/jobs/{other['id']}/trials/2").json()["worker"] is None


def test_best_of_a_minimised_objective_is_the_lowest_value(client: TestClient) -> None:
    job = submit(client, train_spec(objectives=[{"metric": "params"}]))
    assert job["objective"] == {"metric": "params", "mode": "min"}
    with session_scope() as session:
        for number, params in enumerate([5000.0, 1200.0, 9000.0]):
            add_trial(session, job["id"], number, "completed", objective=params, score=-params,
                      metrics={"params": params, "val_acc": 50.0})
    best = client.get(f"/v1/jobs/{job['id']}/best").json()
    assert best["number"] == 1 and best["objective"] == 1200.0
    ranked = client.get(f"/v1/jobs/{job['id']}/trials", params={"sort": "objective"}).json()
    assert numbers(ranked) == [1, 0, 2]


# ---------------------------------------------------------------- catalogue


def catalogue(client: TestClient, kind: str) -> dict[str, dict[str, Any]]:
    r = client.get(f"/v1/{kind}")
    assert r.status_code == 200, r.text
    entries = r.json()
    assert entries, f"/v1/{kind} is empty"
    for e in entries:
        assert e["name"] and e["summary"], e
        assert isinstance(e["json_schema"], dict) and isinstance(e["json_schema"].get("properties"), dict), e
    return {e["name"]: e for e in entries}


def test_catalogue_lists_what_a_spec_may_name(client: TestClient, nb201_csv: Path) -> None:
    spaces = catalogue(client, "spaces")
    assert "nb201" in spaces
    nb201 = spaces["nb201"]
    assert nb201["details"]["size"] == 15625
    assert {"channels", "cells_per_stage"} <= set(nb201["json_schema"]["properties"])
    example = nb201["details"]["example"]
    assert isinstance(example, list) and len(example) == 6 and set(example) <= set(OPS)
    # The example is an architecture the API accepts.
    assert submit(client, tabular_spec(nb201_csv, warm_start=[example]))["spec"]["warm_start"] == [example]

    strategies = catalogue(client, "strategies")
    assert {"evolution", "random"} <= set(strategies)
    assert {"population_size", "sample_size"} <= set(strategies["evolution"]["json_schema"]["properties"])

    evaluators = catalogue(client, "evaluators")
    assert {"tabular", "train"} <= set(evaluators)
    tabular = evaluators["tabular"]["details"]
    assert tabular["objectives"][0] == {
        "metric": "val_acc_12ep", "mode": "max", "description": tabular["objectives"][0]["description"],
    }
    assert "test_acc_200ep" in tabular["recorded"]
    train = {o["metric"]: o["mode"] for o in evaluators["train"]["details"]["objectives"]}
    assert train["val_acc"] == "max" and train["params"] == "min" and train["latency_ms"] == "min"
    assert next(iter(train)) == "val_acc"
    assert {evaluators[n]["details"]["queue"] for n in ("tabular", "train")} <= {"cpu", "gpu"}

    datasets = catalogue(client, "datasets")
    assert {"digits", "mnist1d"} <= set(datasets)
    digits = datasets["digits"]["details"]
    assert digits["num_classes"] == 10 and digits["input_shape"] == [1, 8, 8]
    assert sum(digits["splits"].values()) == 1797


# ---------------------------------------------------------------- health, docs, outages


def test_health_readiness_and_docs(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}

    r = client.get("/readyz")
    assert r.json()["database"] == "ok", r.text
    if str(celery_app.conf.broker_url).startswith("filesystem"):
        # The embedded default: a folder, no server, so it is always reachable.
        assert r.json()["broker"] == "ok", r.text
    if r.json()["broker"] == "ok":
        assert r.status_code == 200 and r.json()["ready"] is True, r.text
    else:  # a broker server named by SCION_BROKER_URL that is down: not ready, and says why
        assert r.status_code == 503 and r.json()["broker"].startswith("unreachable"), r.text

    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/trials",
                 "/v1/jobs/{job_id}/trials/{number}", "/v1/jobs/{job_id}/best", "/v1/spaces", "/healthz"):
        assert path in paths, path
    assert "post" in paths["/v1/jobs"] and "get" in paths["/v1/jobs"]


UNREACHABLE = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=3",
    "sqlite": "sqlite:////nonexistent-scion-dir/deeper/scion.db",
}


@pytest.mark.parametrize("dialect", sorted(UNREACHABLE))
def test_database_outage_is_503_with_a_message(
    dialect: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = UNREACHABLE[dialect]
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as client:
            for method, path, body in [
                ("get", "/v1/jobs", None), ("get", "/v1/jobs/1", None), ("get", "/v1/jobs/1/trials", None),
                ("post", "/v1/jobs/1/cancel", None),
                ("post", "/v1/jobs", train_spec()),
            ]:
                r = client.request(method.upper(), path, json=body)
                assert r.status_code == 503, (path, r.text)
                assert "database is unavailable" in r.json()["detail"], r.text
                assert r.headers.get("retry-after"), r.headers
                no_traceback(r)

            r = client.get("/readyz")
            assert r.status_code == 503, r.text
            assert r.json()["ready"] is False and r.json()["database"].startswith("unreachable")
            no_traceback(r)
            # What needs no database keeps answering.
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/spaces").status_code == 200
            # Bad input is still reported as bad input.
            assert client.post("/v1/jobs", json={"space": {"type": "nb201"}}).status_code == 422
    finally:
        get_settings.cache_clear()
        forget_engines(url)
