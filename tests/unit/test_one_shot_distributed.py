"""One supernet trained by two processes together (DistributedDataParallel), as on a worker with
several GPUs (SCION_SUPERNET_DEVICES), here with the gloo backend on the CPU."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scion.settings import get_settings
from tests.unit.test_one_shot_methods import SPACE, Ctx, one_shot, train_supernet
from worker.one_shot import distributed
from worker.one_shot.epochs import load_checkpoint
from worker.outcomes import TrialStopped

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen]]:
    """SCION_SUPERNET_DEVICES=cpu,cpu; yields the helper processes the trial starts."""
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def spy(*args: Any, **kwargs: Any) -> subprocess.Popen:
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(distributed.subprocess, "Popen", spy)
    monkeypatch.setenv("SCION_SUPERNET_DEVICES", "cpu,cpu")
    get_settings.cache_clear()
    yield started
    get_settings.cache_clear()


@pytest.mark.parametrize(("method", "settings"), [
    ("spos", {"fair": True}), ("darts", {}), ("darts", {"remedy": "early-stop"}), ("enas", {}),
])
def test_two_processes_train_one_supernet(
    method: str, settings: dict[str, Any], tmp_path: Path, two_cpus: list[subprocess.Popen]
) -> None:
    ctx = Ctx(tmp_path)
    result = train_supernet(one_shot(method, epochs=2, **settings), ctx)
    assert len(two_cpus) == 1 and two_cpus[0].returncode == 0  # the second rank ran, and agreed at the end
    assert [epoch for epoch, _ in ctx.reports] == [1, 2]  # reported once, by the trial's own process
    assert load_checkpoint(ctx.artifact_path(0))["epoch"] == 2
    assert all(SPACE.validate(arch) for arch in result["candidates"])
    if settings.get("remedy") == "early-stop":  # the eigenvalue of the two shards' averaged products
        assert all(isinstance(metrics["hessian_eigenvalue"], float) for _, metrics in ctx.reports)


def test_a_stopped_parallel_trial_ends_its_other_process_and_resumes(
    tmp_path: Path, two_cpus: list[subprocess.Popen]
) -> None:
    config = one_shot("spos", epochs=2)
    with pytest.raises(TrialStopped):
        train_supernet(config, Ctx(tmp_path, stop_after=1))
    assert two_cpus[0].returncode is not None  # not left running
    resumed = Ctx(tmp_path)
    train_supernet(config, resumed)
    assert [epoch for epoch, _ in resumed.reports] == [2]
    assert two_cpus[1].returncode == 0
