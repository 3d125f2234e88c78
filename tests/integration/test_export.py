"""Taking a trained network away: the artifact store, the model and architecture routes,
``scion export`` and the retrain job type, on the real scheduler and training worker (in-process
harness, SQLite); exports are made by a real ``scion worker`` process (serving only the gpu
queue, as a GPU machine's worker does) that the API asks through the filesystem broker.

One small train job (2 trials, 1 epoch of digits, a 4-channel NAS-Bench-201 network) is run once
for the module; each format of its best trial must load with its own runtime (a fresh network
for the state_dict, torch.jit.load, onnxruntime) and predict the logits of the network the
worker checkpointed, hence the test accuracy the trial recorded.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from broker import app as broker_app
from scheduler.loop import Scheduler
from scion.settings import get_settings
from spaces import make_space
from storage import artifacts
from storage.migrate import upgrade
from tests.conftest import REPO
from tests.integration.harness import TINY_NET, Broker, drive, epochs_recorded, get_trials, make_job, train_spec
from worker import export as exporter
from worker.training.datasets import load_dataset

pytestmark = pytest.mark.timeout(300)

FORMATS = ("state_dict", "torchscript", "onnx")


class Env:
    """The module's settings, database, harness and API client, and its finished jobs."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.settings = get_settings()
        self.broker = Broker()
        self.scheduler = Scheduler(self.settings, send=self.broker.send, owner="export-tests")
        self.train_job = self.failed_job = 0

    def run(self, job_id: int) -> Any:
        return drive(self.scheduler, self.broker, job_id, timeout=240, poll=0)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        return r.json()


def start_worker(root: Path) -> subprocess.Popen:
    """``scion worker --queues gpu`` with this module's settings, logging to ``root/worker.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCION_")}
    env |= {k: v for k, v in os.environ.items() if k in ("SCION_HOME", "SCION_DATABASE_URL")}
    with open(root / "worker.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "client", "worker", "--queues", "gpu", "--concurrency", "1"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)  # its pool process too


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{root / 'scion.db'}"
    upgrade(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCION_HOME", str(root / "home"))
        mp.setenv("SCION_DATABASE_URL", url)
        mp.setenv("SCION_HEARTBEAT_SECONDS", "0.5")
        mp.setenv("SCION_EXPORT_WAIT_SECONDS", "120")  # the first request also waits for the worker to start
        mp.delenv("SCION_ARTIFACTS", raising=False)
        mp.delenv("SCION_BROKER_URL", raising=False)
        get_settings.cache_clear()
        mp.setattr(broker_app, "celery_app", broker_app.make_celery())  # this home's broker folder
        worker = start_worker(root)
        try:
            with TestClient(create_app()) as client:
                e = Env(client)
                e.train_job = make_job(train_spec(epochs=1, budget={"max_trials": 2, "max_parallel": 1}),
                                       name="train")
                assert e.run(e.train_job).status == "completed"
                # a job whose only candidate breaks a cost limit: measured, failed, never trained
                e.failed_job = make_job({**train_spec(epochs=1, budget={"max_trials": 1}),
                                         "constraints": [{"metric": "params", "max": 1}]}, name="infeasible")
                assert e.run(e.failed_job).status == "failed"
                yield e
            e.broker.close()
        finally:
            stop_worker(worker)
    get_settings.cache_clear()


def best_trial(env: Env, job_id: int) -> dict[str, Any]:
    r = env.client.get(f"/v1/jobs/{job_id}/best")
    assert r.status_code == 200, r.text
    return r.json()


def digits_test_set() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("digits")
    return np.ascontiguousarray(data.x_test), data.y_test


def checkpointed_network(env: Env, job_id: int, trial: dict[str, Any]) -> torch.nn.Module:
    """The worker's own checkpoint, loaded without the export code."""
    spec = env.client.get(f"/v1/jobs/{job_id}").json()["spec"]
    space = make_space(spec["space"])
    model = space.build(trial["arch"], (1, 8, 8), 10)
    ckpt = env.settings.artifact_root / f"job-{job_id}" / f"trial-{trial['number']}" / "checkpoint.pt"
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    return model.eval()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * int((logits.argmax(1) == y).sum()) / len(y)


def download(env: Env, job_id: int, number: int, fmt: str, into: Path) -> Path:
    r = env.client.get(f"/v1/jobs/{job_id}/trials/{number}/model", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert f"scion-job{job_id}-trial{number}" in r.headers["content-disposition"]
    path = into / f"model-{fmt}{artifacts.FORMATS[fmt].suffix}"
    path.write_bytes(r.content)
    return path


def predict_all_formats(env: Env, job_id: int, trial: dict[str, Any], into: Path, x: np.ndarray
                        ) -> dict[str, np.ndarray]:
    """Logits of ``x`` from each downloaded format, loaded the way a user would."""
    import onnxruntime as ort

    arch = env.client.get(f"/v1/jobs/{job_id}/trials/{trial['number']}/architecture").json()
    fresh = make_space(arch["space"]).build(arch["arch"], arch["input_shape"], arch["num_classes"])
    fresh.load_state_dict(torch.load(download(env, job_id, trial["number"], "state_dict", into), weights_only=True))
    scripted = torch.jit.load(str(download(env, job_id, trial["number"], "torchscript", into)))
    session = ort.InferenceSession(str(download(env, job_id, trial["number"], "onnx", into)),
                                   providers=["CPUExecutionProvider"])
    xt = torch.from_numpy(x)
    with torch.no_grad():
        out = {"state_dict": fresh.eval()(xt).numpy(), "torchscript": scripted(xt).numpy()}
    out["onnx"] = session.run(["logits"], {"input": x})[0]
    # the batch axis is dynamic: one example at a time gives the same logits
    assert np.allclose(session.run(None, {"input": x[:1]})[0], out["onnx"][:1], atol=1e-4)
    with torch.no_grad():
        assert np.allclose(scripted(xt[:1]).numpy(), out["torchscript"][:1], atol=1e-4)
    return out


# ---------------------------------------------------------------- export


def test_every_format_predicts_what_the_trained_network_predicts(env: Env, tmp_path: Path) -> None:
    trial = best_trial(env, env.train_job)
    x, y = digits_test_set()
    with torch.no_grad():
        reference = checkpointed_network(env, env.train_job, trial)(torch.from_numpy(x)).numpy()
    assert accuracy(reference, y) == pytest.approx(trial["metrics"]["test_acc"])

    logits = predict_all_formats(env, env.train_job, trial, tmp_path, x)
    for fmt in FORMATS:
        np.testing.assert_allclose(logits[fmt], reference, atol=1e-4, err_msg=fmt)
        assert accuracy(logits[fmt], y) == pytest.approx(trial["metrics"]["test_acc"]), fmt


def test_exports_are_cached_next_to_the_checkpoint(env: Env) -> None:
    trial = best_trial(env, env.train_job)["number"]
    folder = env.settings.artifact_root / f"job-{env.train_job}" / f"trial-{trial}"
    url = f"/v1/jobs/{env.train_job}/trials/{trial}/model"
    first = env.client.get(url, params={"format": "onnx"})
    (cached,) = folder.glob("export-*.onnx")
    made = cached.stat().st_mtime_ns
    started = time.perf_counter()
    again = env.client.get(url, params={"format": "onnx"})
    assert again.status_code == 200 and again.content == first.content
    assert cached.stat().st_mtime_ns == made  # served, not exported again
    assert time.perf_counter() - started < 2
    assert not list(folder.glob("*.partial")) and not list(folder.glob(".*"))
    sidecar = json.loads((folder / "export.json").read_text())
    assert sidecar["input_shape"] == [1, 8, 8] and sidecar["num_classes"] == 10
    assert sidecar["space"] == {**sidecar["space"], **TINY_NET}
    # a re-run trial rewrites its checkpoint: the next download exports the new weights
    checkpoint = folder / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes())
    os.utime(checkpoint, ns=(made - 10**9, made - 10**9))  # even with a clock behind the API's
    assert env.client.get(url, params={"format": "onnx"}).status_code == 200
    (fresh,) = folder.glob("export-*.onnx")
    assert fresh != cached and not cached.exists()


def test_architecture_is_json_for_any_trial(env: Env, nb201_csv: Path) -> None:
    trials = env.client.get(f"/v1/jobs/{env.train_job}/trials").json()["items"]
    for t in trials:
        r = env.client.get(f"/v1/jobs/{env.train_job}/trials/{t['number']}/architecture")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["arch"] == t["arch"] and body["arch_key"] == t["arch_key"]
        assert body["space"]["type"] == "nb201" and body["space"]["channels"] == 4
        assert body["dataset"] == {"type": "digits"} and body["input_shape"] == [1, 8, 8]
        assert body["num_classes"] == 10 and body["weights"] is True
    failed = env.client.get(f"/v1/jobs/{env.failed_job}/trials/0/architecture").json()
    assert failed["status"] == "failed" and failed["weights"] is False

    tabular = make_job({"space": {"type": "nb201"}, "strategy": {"type": "random"},
                        "evaluator": {"type": "tabular", "table": str(nb201_csv)}, "budget": {"max_trials": 2}})
    assert env.run(tabular).status == "completed"
    body = env.client.get(f"/v1/jobs/{tabular}/trials/1/architecture").json()
    assert body["evaluator"] == "tabular" and body["weights"] is False and len(body["arch"]) == 6
    r = env.client.get(f"/v1/jobs/{tabular}/trials/1/model", params={"format": "onnx"})
    assert r.status_code == 409
    assert "'tabular' evaluator, which trains no weights" in r.json()["detail"]
    assert "architecture" in r.json()["detail"] and "retrain" in r.json()["detail"]


def test_export_errors_say_what_is_wrong(env: Env) -> None:
    r = env.client.get(f"/v1/jobs/{env.failed_job}/trials/0/model", params={"format": "torchscript"})
    assert r.status_code == 409
    assert "is failed; only a completed trial has trained weights" in r.json()["detail"]

    for url in (f"/v1/jobs/{env.train_job}/trials/99/model", f"/v1/jobs/{env.train_job}/trials/99/architecture"):
        r = env.client.get(url)
        assert r.status_code == 404 and r.json()["detail"] == f"job {env.train_job} has no trial 99"
    for url in ("/v1/jobs/9999/trials/0/model", "/v1/jobs/9999/trials/0/architecture"):
        r = env.client.get(url)
        assert r.status_code == 404 and r.json()["detail"] == "job 9999 not found"

    r = env.client.get(f"/v1/jobs/{env.train_job}/trials/0/model", params={"format": "keras"})
    assert r.status_code == 422
    assert all(word in r.json()["detail"] for word in ("format", "onnx", "torchscript", "state_dict"))

    # weights that are not where the workers should have left them
    spec = env.client.get(f"/v1/jobs/{env.train_job}").json()["spec"]
    with pytest.raises(artifacts.NotStored, match="not in the artifact store"):
        exporter.export(spec, env.train_job, 0, None, "onnx", root=env.settings.home / "elsewhere")


@pytest.fixture
def http_api(env: Env) -> Iterator[str]:
    """This module's API behind a real HTTP server (uvicorn on a free port, in a thread)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(env.client.app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (server.started and server.servers):
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_download_that_waits_too_long_is_answered_202_and_followed_by_the_client(
    env: Env, http_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API never exports itself: with no time to wait, it answers 202 at once and the worker
    goes on; the SDK asks again after Retry-After until the file is there."""
    from client.sdk import ScionClient

    trial = 1 - best_trial(env, env.train_job)["number"]
    folder = env.settings.artifact_root / f"job-{env.train_job}" / f"trial-{trial}"
    assert not list(folder.glob("export-*.torchscript.pt"))
    monkeypatch.setenv("SCION_EXPORT_WAIT_SECONDS", "0")
    get_settings.cache_clear()
    try:
        url = f"/v1/jobs/{env.train_job}/trials/{trial}/model"
        r = env.client.get(url, params={"format": "torchscript"})
        assert r.status_code == 202 and int(r.headers["retry-after"]) > 0
        assert "being exported" in r.json()["detail"]
        with ScionClient(http_api) as sdk:
            path = sdk.download_model(env.train_job, trial, "torchscript", tmp_path, timeout=120)
        assert path.name == f"scion-job{env.train_job}-trial{trial}.torchscript.pt"
        assert path.read_bytes() == next(folder.glob("export-*.torchscript.pt")).read_bytes()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_the_worker_writes_where_the_store_reads() -> None:
    from worker.runner import TrialContext

    row = type("Row", (), {"id": 1, "job_id": 7, "number": 3, "fidelity": None, "attempts": 1})()
    assert TrialContext(row, "cpu").artifact_path(3) == artifacts.checkpoint_path(7, 3)


def test_scion_export_downloads_over_http(env: Env, http_api: str, tmp_path: Path) -> None:
    from client.cli import app as cli

    api = http_api
    runner = CliRunner()
    best = best_trial(env, env.train_job)

    out = tmp_path / "best.onnx"
    result = runner.invoke(cli, ["export", str(env.train_job), "--format", "onnx", "-o", str(out), "--api", api])
    assert result.exit_code == 0, result.output
    assert f"wrote trial {best['number']} of job {env.train_job} as onnx" in result.output
    served = env.client.get(f"/v1/jobs/{env.train_job}/trials/{best['number']}/model", params={"format": "onnx"})
    assert out.read_bytes() == served.content

    other = 1 - best["number"]
    result = runner.invoke(cli, ["export", str(env.train_job), "--trial", str(other), "--format", "state_dict",
                                 "-o", str(tmp_path), "--api", api, "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    assert Path(written["path"]).name == f"scion-job{env.train_job}-trial{other}.state_dict.pt"
    sidecar = json.loads(Path(written["architecture"]).read_text())
    model = make_space(sidecar["space"]).build(sidecar["arch"], sidecar["input_shape"], sidecar["num_classes"])
    model.load_state_dict(torch.load(written["path"], weights_only=True))

    result = runner.invoke(cli, ["export", str(env.failed_job), "--api", api])
    assert result.exit_code == 1 and "404" in result.output and "no completed trial" in result.output
    result = runner.invoke(cli, ["export", str(env.failed_job), "--trial", "0", "--api", api])
    assert result.exit_code == 1 and "409" in result.output and "only a completed trial" in result.output
    assert not list(tmp_path.glob(".*partial"))


# ---------------------------------------------------------------- retrain


def test_retrain_trains_the_best_architecture_longer_and_exports_it(env: Env, tmp_path: Path) -> None:
    source = best_trial(env, env.train_job)
    job = env.submit({
        "kind": "retrain", "retrain": {"from_job": env.train_job},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 2, "batch_size": 128, "latency_repeats": 1},
    })
    spec = job["spec"]
    assert job["name"] == "retrain" and job["max_trials"] == 1
    assert spec["retrain"] == {"from_job": env.train_job, "trial": source["number"], "arch": source["arch"]}
    assert spec["space"] == env.client.get(f"/v1/jobs/{env.train_job}").json()["spec"]["space"]
    assert spec["warm_start"] == [source["arch"]]

    assert env.run(job["id"]).status == "completed"
    (trial,) = get_trials(job["id"])
    assert trial.status == "completed" and trial.arch_key == source["arch_key"]
    assert [m.step for m in epochs_recorded(trial.id)] == [1, 2]  # the source trained 1 epoch

    x, y = digits_test_set()
    retrained = best_trial(env, job["id"])
    with torch.no_grad():
        reference = checkpointed_network(env, job["id"], retrained)(torch.from_numpy(x)).numpy()
    logits = predict_all_formats(env, job["id"], retrained, tmp_path, x)
    np.testing.assert_allclose(logits["onnx"], reference, atol=1e-4)
    assert accuracy(logits["onnx"], y) == pytest.approx(trial.metrics["test_acc"])


def test_retrain_of_an_architecture_given_directly(env: Env) -> None:
    arch = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"]
    job = env.submit({"kind": "retrain", "retrain": {"arch": arch}, "space": TINY_NET, "name": "given",
                      "evaluator": {"type": "train", "dataset": "digits", "epochs": 1, "batch_size": 128,
                                    "latency_repeats": 1}})
    assert job["spec"]["warm_start"] == [arch] and job["spec"]["retrain"]["from_job"] is None
    assert env.run(job["id"]).status == "completed"
    (trial,) = get_trials(job["id"])
    assert trial.arch == arch and trial.status == "completed"
    assert artifacts.has_weights(job["id"], 0, trial.status)


def test_retrain_sources_are_checked_at_submission(env: Env) -> None:
    def post(retrain: dict[str, Any], **extra: Any):
        spec = {"kind": "retrain", "retrain": retrain, "evaluator": {"type": "train", "epochs": 2}, **extra}
        return env.client.post("/v1/jobs", json=spec)

    r = post({"from_job": 9999})
    assert r.status_code == 404 and r.json()["detail"] == "retrain.from_job: job 9999 not found"
    r = post({"from_job": env.train_job, "trial": 42})
    assert r.status_code == 404 and f"job {env.train_job} has no trial 42" in r.json()["detail"]
    r = post({"from_job": env.failed_job})
    assert r.status_code == 422 and "has no completed trial yet" in r.json()["detail"]
    r = post({"from_job": env.failed_job, "trial": 0})
    assert r.status_code == 422 and "trial 0 of job" in r.json()["detail"] and "is failed" in r.json()["detail"]
    r = post({"from_job": env.train_job}, space={"type": "darts"})
    assert r.status_code == 422 and "'nb201' space, not 'darts'" in r.json()["detail"]
    r = post({"from_job": env.train_job}, strategy={"type": "evolution"})
    assert r.status_code == 422 and "runs no search strategy" in r.json()["detail"]
    r = post({"from_job": env.train_job}, budget={"max_trials": 5})
    assert r.status_code == 422 and "exactly one trial" in r.json()["detail"]
    r = post({})
    assert r.status_code == 422 and "from_job" in r.json()["detail"] and "arch" in r.json()["detail"]
    r = post({"arch": ["conv_9x9"] * 6}, space=TINY_NET)
    assert r.status_code == 422 and "retrain.arch" in r.json()["detail"]
    r = post({"from_job": env.train_job}, evaluator={"type": "proxy"})
    assert r.status_code == 422 and "use the train evaluator" in r.json()["detail"]
    r = env.client.post("/v1/jobs", json={"evaluator": {"type": "train"}, "strategy": {"type": "random"}})
    assert r.status_code == 422 and "space" in r.json()["detail"] and "required" in r.json()["detail"]


def test_an_unresolved_retrain_job_is_refused_by_the_scheduler(env: Env) -> None:
    job_id = make_job({"kind": "retrain", "retrain": {"from_job": env.train_job},
                       "evaluator": {"type": "train", "epochs": 1}})
    job = env.run(job_id)
    assert job.status == "failed" and "never resolved" in job.error
    assert get_trials(job_id) == []
