"""Datasets, cost measures, the training loop and the train/tabular evaluators (CPU, seconds)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from scion.configs.datasets import describe_datasets
from spaces.nb201 import NB201Config, NB201Space
from worker.evaluators import EVALUATORS, TrialFailed, TrialStopped, make_evaluator
from worker.evaluators.tabular import TabularConfig, TabularEvaluator
from worker.evaluators.train import TrainConfig, TrainEvaluator, arch_seed
from worker.training import datasets as ds
from worker.training.cost import count_flops, count_params, measure_latency_ms
from worker.training.trainer import pick_device, train

TINY = NB201Space(NB201Config(channels=4, cells_per_stage=1))
ARCH = [
    "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"
]
_ROOT = Path(__file__).resolve().parents[2]
REAL_TABLE = next(
    (p / "shared" / "data" / "nb201_cifar10.csv" for p in (_ROOT, _ROOT.parent)
     if (p / "shared" / "data" / "nb201_cifar10.csv").is_file()),
    _ROOT / "shared" / "data" / "nb201_cifar10.csv",
)
KNOWN_KEY = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)


class Ctx:
    """A stand-in for the worker's EvalContext that records reports and can stop a trial."""

    def __init__(self, stop_after: int | None = None, fidelity: dict | None = None, number: int = 0,
                 artifacts: Path | None = None, attempt: int = 1) -> None:
        self.device, self.attempt = "cpu", attempt
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.stop_after = stop_after
        self.fidelity, self.number = fidelity, number
        self.artifacts = artifacts or Path(tempfile.mkdtemp())

    def artifact_path(self, number: int) -> Path:
        return self.artifacts / f"trial-{number}" / "checkpoint.pt"

    def check_costs(self, costs: dict[str, float]) -> None:
        self.costs = costs

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.reports.append((epoch, dict(metrics)))
        if self.stop_after is not None and epoch >= self.stop_after:
            raise TrialStopped("stopped by test")


class Flat(nn.Module):
    """A tiny linear classifier: fast enough for loop-mechanics tests."""

    def __init__(self, inputs: int = 64, classes: int = 10, nan: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(inputs, classes)
        self.nan = nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        return out * float("nan") if self.nan else out


def rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a}


# -- datasets ----------------------------------------------------------------------------------


def test_digits_shapes_split_sizes_and_standardisation() -> None:
    d = ds.load_dataset("digits")
    info = {e["name"]: e for e in describe_datasets()}["digits"]
    assert d.input_shape == (1, 8, 8) == tuple(info["details"]["input_shape"]) and d.num_classes == 10
    sizes = (len(d.y_train), len(d.y_val), len(d.y_test))
    assert sizes == (1257, 270, 270) == tuple(info["details"]["splits"].values())
    assert d.x_train.shape == (1257, 1, 8, 8) and d.x_train.dtype == np.float32
    assert d.y_train.dtype == np.int64 and set(np.unique(d.y_val)) == set(range(10))
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-3


def test_splits_are_disjoint_cached_and_fixed() -> None:
    d = ds.load_dataset(ds.DigitsConfig())
    assert ds.load_dataset("digits") is d  # one load per process
    train_, val, test = rows(d.x_train), rows(d.x_val), rows(d.x_test)
    assert len(train_) + len(val) + len(test) == 1797
    assert not (train_ & val) and not (train_ & test) and not (val & test)
    ds.clear_cache()
    again = ds.load_dataset("digits")
    assert again is not d
    assert np.array_equal(again.x_val, d.x_val) and np.array_equal(again.y_test, d.y_test)
    with pytest.raises(ValueError):
        d.x_train[0, 0, 0, 0] = 1.0  # the shared cached copy is read-only


def test_mnist1d_generated_offline_with_fixed_seed() -> None:
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    d = ds.load_dataset(ds.MNIST1DConfig(num_samples=1000))
    assert np.random.rand() == expected_next  # the generator's global reseeding is undone
    assert d.input_shape == (1, 40) and d.x_train.shape == (700, 1, 40)
    assert (len(d.y_val), len(d.y_test)) == (150, 150)
    assert not (rows(d.x_train) & rows(d.x_test)) and not (rows(d.x_val) & rows(d.x_test))
    ds.clear_cache()
    assert np.array_equal(ds.load_dataset(ds.MNIST1DConfig(num_samples=1000)).x_train, d.x_train)
    with pytest.raises(ValidationError):
        ds.MNIST1DConfig(num_samples=10)


def test_describe_is_cheap_and_json() -> None:
    ds.clear_cache()
    info = {e["name"]: e for e in describe_datasets()}
    assert not ds._cache  # nothing was loaded to describe
    assert {"digits", "mnist1d"} <= set(info)  # file datasets (npz, cifar10, ...) describe themselves too
    assert info["mnist1d"]["details"]["splits"] == {"train": 2800, "val": 600, "test": 600}
    assert info["mnist1d"]["json_schema"]["properties"]["num_samples"]["default"] == 4000
    json.dumps(info)


# -- cost --------------------------------------------------------------------------------------


def test_cost_of_a_linear_layer() -> None:
    model = nn.Linear(10, 5)
    assert count_params(model) == 55
    assert count_flops(model, (10,), "cpu") == 2 * 10 * 5
    assert measure_latency_ms(model, (10,), 4, "cpu", warmup=1, repeats=3) > 0
    assert model.training  # mode restored


def test_cost_of_an_nb201_network() -> None:
    model = TINY.build(ARCH, (1, 8, 8), 10)
    assert count_params(model) > 0 and count_flops(model, (1, 8, 8), "cpu") > 0
    assert measure_latency_ms(model, (1, 8, 8), 1, "cpu", repeats=2) > 0


# -- trainer -----------------------------------------------------------------------------------


def test_nb201_learns_digits_and_reports_every_epoch() -> None:
    data = ds.load_dataset("digits")
    torch.manual_seed(0)
    model = TINY.build(ARCH, data.input_shape, data.num_classes)
    seen: list[tuple[int, dict[str, float]]] = []
    result = train(
        model, data, epochs=3, batch_size=32, lr=0.1, device="cpu", seed=0,
        on_epoch=lambda e, m: seen.append((e, m)),
    )
    assert [e for e, _ in seen] == [1, 2, 3]
    assert set(seen[0][1]) == {"train_loss", "train_acc", "val_acc", "epoch_seconds"}
    assert result["val_acc"] == seen[-1][1]["val_acc"] > 50
    assert result["test_acc"] > 50 and result["train_seconds"] > 0
    assert seen[-1][1]["train_loss"] < seen[0][1]["train_loss"]


def test_training_is_deterministic_for_a_seed() -> None:
    data = ds.load_dataset("digits")

    def run(seed: int) -> dict[str, float]:
        torch.manual_seed(0)
        return train(Flat(), data, epochs=1, batch_size=64, lr=0.05, device="cpu", seed=seed)

    a, b = run(1), run(1)
    assert a["train_loss"] == b["train_loss"] and a["val_acc"] == b["val_acc"]


def test_nan_loss_fails_the_trial() -> None:
    data = ds.load_dataset("digits")
    with pytest.raises(TrialFailed, match="NaN at epoch 1"):
        train(Flat(nan=True), data, epochs=2, batch_size=64, lr=0.05, device="cpu")


def test_on_epoch_can_stop_training() -> None:
    data = ds.load_dataset("digits")
    ctx = Ctx(stop_after=2)
    with pytest.raises(TrialStopped):
        train(Flat(), data, epochs=5, batch_size=64, lr=0.05, device="cpu", on_epoch=ctx.report)
    assert [e for e, _ in ctx.reports] == [1, 2]


def test_pick_device() -> None:
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert [pick_device(s) for s in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda', 'cuda:N'"):
        pick_device("tpu")


# -- train evaluator ---------------------------------------------------------------------------


def test_train_config_dataset_by_name_or_object() -> None:
    assert TrainConfig(dataset="digits").dataset == ds.DigitsConfig()
    cfg = TrainConfig.model_validate({"dataset": {"type": "mnist1d", "num_samples": 2000}})
    assert isinstance(cfg.dataset, ds.MNIST1DConfig) and cfg.dataset.num_samples == 2000
    with pytest.raises(ValidationError, match="digits, image_folder, mnist1d"):
        TrainConfig(dataset="cifar")
    with pytest.raises(ValidationError):
        TrainConfig(dataset="digits", epoch=3)  # typo: extra fields are refused
    with pytest.raises(ValidationError):
        TrainConfig(lr=0)


def test_train_evaluator_returns_every_metric() -> None:
    evaluator = make_evaluator(
        {"type": "train", "dataset": "digits", "epochs": 1, "latency_repeats": 2}
    )
    assert isinstance(evaluator, TrainEvaluator) and evaluator.config.queue == "gpu"
    ctx = Ctx()
    result = evaluator.evaluate(TINY, ARCH, ctx)
    names = {m.name for m in TrainConfig.objectives} | set(TrainConfig.recorded)
    assert names <= set(result)
    assert result["params"] > 0 and result["flops"] > 0 and result["latency_ms"] > 0
    assert [e for e, _ in ctx.reports] == [1] and result["val_acc"] == ctx.reports[0][1]["val_acc"]
    assert arch_seed(TINY.key(ARCH)) == arch_seed(TINY.key(list(ARCH)))


# -- tabular evaluator -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _tmp_path_is_a_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Tables and dataset files must lie under the data roots: let the tests' own files in."""
    from scion.settings import Settings, get_settings

    roots = [*Settings().data_roots, tmp_path]
    monkeypatch.setenv("SCION_DATA_ROOTS", json.dumps([str(r) for r in roots]))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    path = tmp_path / "nb201.csv"
    path.write_text(
        "arch,val_acc_12ep,test_acc_12ep,test_acc_200ep\n"
        f"{KNOWN_KEY},82.834,88.22,93.66\n"
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10.0,10.0,10.0\n"
    )
    return path


def test_tabular_returns_the_tables_row(table: Path) -> None:
    evaluator = make_evaluator(TabularConfig(table=table))
    assert isinstance(evaluator, TabularEvaluator) and evaluator.config.queue == "cpu"
    ctx = Ctx()
    result = evaluator.evaluate(NB201Space(), NB201Space().from_key(KNOWN_KEY), ctx)
    assert result == {"val_acc_12ep": 82.834, "test_acc_200ep": 93.66}  # never test_acc_12ep


def test_tabular_missing_architecture_fails_the_trial(table: Path) -> None:
    evaluator = TabularEvaluator(TabularConfig(table=table))
    arch = ["skip_connect"] * 6
    with pytest.raises(TrialFailed, match="skip_connect~0"):
        evaluator.evaluate(NB201Space(), arch, Ctx())


def test_tabular_malformed_row_fails_the_trial_naming_the_line(table: Path) -> None:
    evaluator = TabularEvaluator(TabularConfig(table=table))  # the header is fine at submission
    table.write_text(table.read_text() + "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,n/a,1,1\n")
    with pytest.raises(TrialFailed, match=r"nb201\.csv:4: val_acc_12ep 'n/a' is not a number"):
        evaluator.evaluate(NB201Space(), NB201Space().from_key(KNOWN_KEY), Ctx())


def test_tabular_refuses_bad_tables_and_other_spaces(tmp_path: Path, table: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ValidationError, match="nope.csv"):
        TabularConfig(table=missing)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("arch,val_acc_12ep\nx,1\n")
    with pytest.raises(ValidationError, match="test_acc_200ep"):
        TabularConfig(table=wrong)
    cfg = TabularConfig(table=table)
    cfg.check_space("nb201")
    with pytest.raises(ValueError, match="nb201"):
        cfg.check_space("darts")


@pytest.mark.skipif(not REAL_TABLE.is_file(), reason="shared NAS-Bench-201 table not present")
def test_tabular_with_the_shared_table() -> None:
    evaluator = TabularEvaluator(TabularConfig(table=REAL_TABLE))
    result = evaluator.evaluate(NB201Space(), NB201Space().from_key(KNOWN_KEY), Ctx())
    assert result == {"val_acc_12ep": 82.834, "test_acc_200ep": 93.66}


def test_registry_names_and_schemas() -> None:
    assert EVALUATORS.names() == ["proxy", "tabular", "train"]
    catalogue: list[dict[str, Any]] = EVALUATORS.catalogue()
    assert all(e["summary"] and e["schema"]["properties"] for e in catalogue)
    assert TrainConfig.objectives[0].name == "val_acc"
    assert TabularConfig.objectives[0].name == "val_acc_12ep"


def test_cuda_out_of_memory_fails_the_trial() -> None:
    class Greedy(Flat):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB\nmore")

    with pytest.raises(TrialFailed, match="^out of memory: CUDA out of memory. Tried"):
        train(Greedy(), ds.load_dataset("digits"), epochs=1, batch_size=64, lr=0.05, device="cpu")


def test_promotion_continues_from_the_checkpoint_as_if_never_interrupted(tmp_path):
    """Multi-fidelity promotion: 2 epochs, then 2 more from the checkpoint, ends where 4 epochs
    in one go (on the same 4-epoch schedule) end, and the continuation trains only 2 epochs."""
    space = NB201Space(NB201Config(channels=4, cells_per_stage=1))
    arch = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "skip_connect"]
    evaluator = TrainEvaluator(TrainConfig(dataset="digits", epochs=4, latency_repeats=1))
    whole = evaluator.evaluate(space, arch, Ctx(fidelity={"epochs": 4}, number=0, artifacts=tmp_path))
    first = Ctx(fidelity={"epochs": 2, "schedule_epochs": 4}, number=1, artifacts=tmp_path)
    evaluator.evaluate(space, arch, first)
    second = Ctx(fidelity={"epochs": 4, "schedule_epochs": 4, "resume_from": 1}, number=2, artifacts=tmp_path)
    resumed = evaluator.evaluate(space, arch, second)
    assert [e for e, _ in first.reports] == [1, 2]
    assert [e for e, _ in second.reports] == [3, 4]
    assert resumed["val_acc"] == pytest.approx(whole["val_acc"], abs=0.5)
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=0.05)


def test_missing_checkpoint_fails_the_trial_with_its_path(tmp_path):
    space = NB201Space(NB201Config(channels=4, cells_per_stage=1))
    evaluator = TrainEvaluator(TrainConfig(dataset="digits", epochs=2, latency_repeats=1))
    with pytest.raises(TrialFailed, match="checkpoint of trial 7"):
        evaluator.evaluate(space, space.sample(np.random.default_rng(0)),
                           Ctx(fidelity={"epochs": 2, "resume_from": 7}, number=8, artifacts=tmp_path))
