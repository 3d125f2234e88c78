"""One-shot jobs on the real scheduler and worker code path (in-process harness, SQLite): the
three phases of each method, a supernet searched again under other constraints, a scheduler
replaced half-way, a cancel, and what the API shows of it all.

Everything is tiny (a 4-channel NAS-Bench-201 cell, digits, one or two epochs): these tests are
about the phases and what a user sees of them, not about accuracy (``scion bench one-shot``).
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from scheduler.loop import Scheduler
from scion.settings import get_settings
from storage.db import forget_engines
from tests.integration.harness import (
    RECIPE,
    Broker,
    drive,
    expire_lease,
    get_events,
    get_job,
    get_trials,
    make_job,
    one_shot_spec,
)

pytestmark = pytest.mark.timeout(300)

@pytest.fixture
def env(tmp_path, monkeypatch, sqlite_url):
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    broker = Broker()
    scheduler = Scheduler(get_settings(), send=broker.send, owner="one-shot-tests")
    with TestClient(create_app()) as client:
        yield scheduler, broker, client
    broker.close()
    get_settings.cache_clear()
    forget_engines(sqlite_url)


def phases(job_id: int) -> list[tuple[int, str, str]]:
    return [(t.number, t.phase, t.status) for t in get_trials(job_id)]


def test_spos_job_trains_a_supernet_searches_it_and_retrains_the_best(env):
    scheduler, broker, client = env
    job_id = make_job(one_shot_spec({"type": "spos"}, max_trials=4, strategy={"type": "random"}))
    job = drive(scheduler, broker, job_id, timeout=240)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [(t.number, t.phase) for t in trials] == [
        (0, "supernet"), (1, "search"), (2, "search"), (3, "search"), (4, "search"), (5, "retrain"), (6, "retrain")]
    assert all(t.status == "completed" for t in trials), [(t.number, t.error) for t in trials]
    supernet, searched, retrained = trials[0], trials[1:5], trials[5:]
    assert supernet.arch is None and supernet.score is None  # weights, not a candidate
    assert all(0 <= t.metrics["val_acc"] <= 100 and t.metrics["params"] > 0 for t in searched)
    # the two best inherited scores, retrained from scratch with the recipe's schedule
    top = sorted(searched, key=lambda t: (-t.score, t.number))[:2]
    assert [t.arch_key for t in retrained] == [t.arch_key for t in top]
    assert all(t.fidelity == {"epochs": RECIPE["epochs"]} and "test_acc" in t.metrics for t in retrained)
    assert job.best_trial_number in (5, 6)
    assert job.phase == "retrain"
    assert [e.message.split(";")[0] for e in get_events(job_id, "phase")] == [
        "supernet phase done", "search phase done"]

    shown = client.get(f"/v1/jobs/{job_id}").json()
    assert shown["phase"] == "retrain" and shown["trials_planned"] == 7
    assert shown["best"]["phase"] == "retrain" and "test_acc" in shown["best"]["metrics"]
    listed = client.get(f"/v1/jobs/{job_id}/trials", params={"limit": 10}).json()["items"]
    assert [t["phase"] for t in listed] == ["supernet"] + ["search"] * 4 + ["retrain"] * 2
    page = client.get(f"/v1/jobs/{job_id}/trials", params={"phase": "retrain", "sort": "objective"}).json()
    assert page["total"] == 2 and [t["number"] for t in page["items"]] == sorted(
        (5, 6), key=lambda n: -next(t["objective"] for t in listed if t["number"] == n))
    refused = client.get(f"/v1/jobs/{job_id}/trials", params={"phase": "training"})
    assert refused.status_code == 422 and "supernet" in refused.text
    history = client.get(f"/v1/jobs/{job_id}/trials/0").json()["history"]
    assert [h["step"] for h in history] == [1, 2]
    for number, why in ((0, "is the job's supernet"), (1, "scored with weights inherited from the supernet")):
        refused = client.get(f"/v1/jobs/{job_id}/trials/{number}/model", params={"format": "onnx"})
        assert refused.status_code == 409 and why in refused.json()["detail"], refused.text
        assert "export one of its retrained trials (phase retrain)" in refused.json()["detail"]


def test_darts_job_stores_its_architecture_weights_every_epoch_and_retrains_the_derived_cell(env):
    scheduler, broker, client = env
    job_id = make_job(one_shot_spec({"type": "darts", "order": 2}))
    job = drive(scheduler, broker, job_id, timeout=240)

    assert job.status == "completed", job.error
    assert phases(job_id) == [(0, "supernet", "completed"), (1, "search", "completed"),
                              (2, "retrain", "completed")]  # one derived cell: one candidate to retrain
    trials = get_trials(job_id)
    assert trials[1].arch == trials[0].metrics["candidates"][0] == trials[2].arch
    history = client.get(f"/v1/jobs/{job_id}/trials/0").json()["history"]
    assert [h["step"] for h in history] == [1, 2]
    for epoch in history:
        weights = epoch["metrics"]["arch_weights"]["cell"]
        assert len(weights) == 6 and all(len(edge) == 5 and abs(sum(edge) - 1) < 1e-4 for edge in weights)
    assert history[0]["metrics"]["arch_weights"] != history[1]["metrics"]["arch_weights"]


def test_enas_job_searches_the_controllers_samples(env):
    scheduler, broker, _ = env
    job_id = make_job(one_shot_spec({"type": "enas", "controller_steps": 2, "controller_aggregate": 2,
                                     "samples": 3}, retrain_top_k=1))
    job = drive(scheduler, broker, job_id, timeout=240)

    assert job.status == "completed", job.error
    found = phases(job_id)
    assert found[0] == (0, "supernet", "completed") and found[-1][1:] == ("retrain", "completed")
    searched = [t for t in get_trials(job_id) if t.phase == "search"]
    assert 1 <= len(searched) <= 3 and len({t.arch_key for t in searched}) == len(searched)


def test_a_trained_supernet_is_searched_again_under_other_constraints_without_training(env):
    scheduler, broker, client = env
    source = make_job(one_shot_spec({"type": "spos"}, max_trials=3, retrain_top_k=0, strategy={"type": "random"}))
    assert drive(scheduler, broker, source, timeout=240).status == "completed"
    smallest = min((t for t in get_trials(source) if t.phase == "search"), key=lambda t: t.metrics["params"])
    bound = smallest.metrics["params"]
    answers = {}
    for constraints in ([], [{"metric": "params", "max": bound}]):
        body = one_shot_spec({"type": "spos"}, max_trials=6, retrain_top_k=0, strategy={"type": "random"},
                             constraints=constraints, warm_start=[smallest.arch])
        body["one_shot"]["supernet_from"] = source
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        job = drive(scheduler, broker, job_id, timeout=240)
        trials = get_trials(job_id)
        assert job.status == "completed", job.error
        assert {t.phase for t in trials} == {"search"}, "a specialisation trains no supernet"
        infeasible = [t for t in trials if t.status == "failed"]
        assert all("infeasible, not trained: params" in t.error for t in infeasible)
        answers[bool(constraints)] = (client.get(f"/v1/jobs/{job_id}/best").json(), len(infeasible))
    assert answers[False][1] == 0 and answers[True][1] >= 1
    assert answers[True][0]["metrics"]["params"] <= bound


def test_a_replaced_scheduler_continues_the_phase_where_the_last_one_stopped(env):
    scheduler, broker, _ = env
    job_id = make_job(one_shot_spec({"type": "spos"}, max_trials=4, strategy={"type": "evolution",
                                                                             "population_size": 2,
                                                                             "sample_size": 1}))
    drive(scheduler, broker, job_id, timeout=240,
          until=lambda job: job.phase == "search" and job.trials_created >= 3)
    expire_lease(job_id)
    successor = Scheduler(get_settings(), send=broker.send, owner="successor")
    job = drive(successor, broker, job_id, timeout=240)

    assert job.status == "completed", job.error
    assert [(n, p) for n, p, _ in phases(job_id)] == [
        (0, "supernet"), (1, "search"), (2, "search"), (3, "search"), (4, "search"), (5, "retrain"), (6, "retrain")]
    assert broker.sends_per_trial()[get_trials(job_id)[0].id] == 1, "the supernet was trained once"


def test_cancelling_a_one_shot_job_mid_training_cancels_the_supernet_trial(env):
    scheduler, broker, client = env
    job_id = make_job(one_shot_spec({"type": "spos"}, max_trials=4))
    broker.hold = True
    drive(scheduler, broker, job_id, timeout=60, until=lambda job: job.trials_created == 1)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    scheduler.step()
    assert get_job(job_id).status == "cancelled"
    assert phases(job_id) == [(0, "supernet", "cancelled")]


def test_a_supernet_that_does_not_finish_training_fails_the_job_with_its_reason(env):
    scheduler, broker, _ = env
    body = one_shot_spec({"type": "spos", "epochs": 500}, max_trials=2)
    body["budget"]["trial_time_limit_s"] = 1.0  # the shortest a limit may be; 500 epochs take far longer
    job = drive(scheduler, broker, make_job(body), timeout=120)
    assert job.status == "failed"
    assert "supernet's training ended stopped" in job.error and "time limit" in job.error
    assert phases(job.id) == [(0, "supernet", "stopped")]
