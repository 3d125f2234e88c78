"""What a worker checks of a network's cost once the data is loaded (issue 16, items 3 and 11): a
file dataset's labels are class indices below a cap, and a network over this server's limits for
the classes the data turned out to have fails its trial before it is built."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scion import budgets
from scion.configs.bounds import MAX_CLASSES
from scion.settings import get_settings
from scion.spec import JobSpec, make_space
from tests.unit.test_file_datasets import root  # noqa: F401 (a fixture)
from worker.evaluators import TrialFailed
from worker.evaluators.train import TrainConfig, TrainEvaluator
from worker.training import datasets as ds
from worker.training.file_datasets import NPZConfig


def write(path: Path, top_label: int) -> None:
    x = np.random.default_rng(0).normal(size=(60, 2, 6, 6)).astype(np.float32)
    y = np.arange(60) % 3
    y[-1] = top_label
    np.savez(path, x=x, y=y)


def test_labels_past_the_class_cap_are_refused(root: Path) -> None:  # noqa: F811
    write(root / "huge.npz", 2 * 10**9)
    with pytest.raises(TrialFailed, match=f"has label 2000000000; labels are class indices 0..{MAX_CLASSES - 1:,}"):
        ds.load_dataset(NPZConfig(path="huge.npz"))


def test_a_network_over_the_limits_for_the_loaded_classes_fails_before_it_is_built(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    write(root / "many.npz", 4999)  # 5,000 classes, known only once the labels are read
    monkeypatch.setenv("SCION_MAX_MODEL_PARAMS", "100000")
    get_settings.cache_clear()
    spec = JobSpec.model_validate({
        "space": {"type": "declared", "hyperparameters": {}, "layers": [{"name": "flat", "ops": ["flatten"]}]},
        "strategy": {"type": "random"},
        "evaluator": {"type": "train", "dataset": {"type": "npz", "path": "many.npz"}},
    })
    budgets.check_job(spec)  # at submission the classes are counted as 2: 72 x 2 weights fit
    space = make_space(spec.space)
    built = []
    monkeypatch.setattr(space, "build", lambda *args: built.append(args))
    ctx = SimpleNamespace(device="cpu", fidelity=None)
    with pytest.raises(TrialFailed, match="the network has 365,000 parameters, above this server's limit of "
                                          r"100,000 \(SCION_MAX_MODEL_PARAMS\); it was not built"):
        evaluator = TrainEvaluator(TrainConfig(dataset=spec.evaluator.dataset))
        evaluator.evaluate(space, space.sample(np.random.default_rng(0)), ctx)
    assert not built
