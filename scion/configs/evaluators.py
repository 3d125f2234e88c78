"""The job-spec side of the evaluators: each one's settings and what it promises a job.

An evaluator's config class says, without importing the evaluator (which lives on the worker and
may import torch): which Celery queue its trials go to, which metrics a job may optimise and
which it records besides, which costs it measures before training (usable as constraints), which
settings a space may search per trial, whether its trials keep trained weights, and which spaces
it can score. The job spec checks a job against these; the worker registers the implementation.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from scion.configs.bounds import MAX_BATCH_SIZE, MAX_EPOCHS
from scion.configs.datasets import DATASETS, dataset_by_name, trusted
from scion.data_paths import resolve_data_path


@dataclass(frozen=True)
class Metric:
    name: str
    mode: Literal["max", "min"]
    description: str


AnyDataset = DATASETS.config_union()

# What building a candidate costs, measured before it is trained or scored (usable as constraints).
COSTS = (
    Metric("params", "min", "Number of parameters."),
    Metric("flops", "min", "Forward FLOPs for one example."),
    Metric("latency_ms", "min", "Median eval-mode forward time (ms) for one example."),
)
COST_METRICS = (*(m.name for m in COSTS), "latency_ms_batch")


class EvaluatorConfig(BaseModel):
    queue: ClassVar[str] = "gpu"  # Celery queue by resource class: "gpu" or "cpu"
    objectives: ClassVar[tuple[Metric, ...]] = ()  # metrics a job may optimise; the first is the default
    recorded: ClassVar[tuple[str, ...]] = ()  # further metrics stored with the trial, never shown to a strategy
    constraint_metrics: ClassVar[tuple[str, ...]] = ()  # costs measured before training, usable as constraints
    tunable: ClassVar[tuple[str, ...]] = ()  # settings a space may search per trial (training_settings)
    keeps_weights: ClassVar[bool] = False  # whether a completed trial leaves a checkpoint to export

    def reported_objectives(self) -> tuple[Metric, ...]:
        """The objectives a job configured so can optimise: those it will compute."""
        return self.objectives

    def check_space(self, space_type: str) -> None:
        """Raise ValueError when this evaluator cannot score architectures of ``space_type``."""


class BuildsNetworks(EvaluatorConfig):
    """An evaluator that builds each candidate for a dataset's inputs and classes; its ``dataset``
    (``dataset_field``) may be written as just the dataset's name."""

    @field_validator("dataset", mode="before", check_fields=False)
    @classmethod
    def _dataset_by_name(cls, value: Any) -> Any:
        return dataset_by_name(value)


def dataset_field(what: str) -> Any:
    """The ``dataset`` field of an evaluator that builds networks, described as ``what``."""
    return Field(
        default_factory=lambda: DATASETS["digits"].config(),
        description=f"{what}, as an object with its 'type' and settings, or just its name "
                    f"({', '.join(DATASETS.names())}).",
    )


class TrainConfig(BuildsNetworks):
    model_config = ConfigDict(extra="forbid")
    queue: ClassVar[str] = "gpu"
    objectives: ClassVar[tuple[Metric, ...]] = (
        Metric("val_acc", "max", "Validation accuracy (%) after the last epoch."),
        *COSTS,
        Metric("train_seconds", "min", "Wall time of training and evaluation (s)."),
    )
    recorded: ClassVar[tuple[str, ...]] = ("test_acc", "train_loss", "latency_ms_batch")
    constraint_metrics: ClassVar[tuple[str, ...]] = COST_METRICS
    tunable: ClassVar[tuple[str, ...]] = ("lr", "batch_size", "weight_decay", "epochs")

    keeps_weights: ClassVar[bool] = True

    type: Literal["train"] = Field("train", description="Train every candidate from scratch.")
    dataset: AnyDataset = dataset_field("Built-in dataset to train on")  # type: ignore[valid-type]
    epochs: int = Field(4, ge=1, le=MAX_EPOCHS, description="Training epochs per candidate.")
    batch_size: int = Field(64, ge=1, le=MAX_BATCH_SIZE, description="Examples per SGD step.")
    lr: float = Field(
        0.05, gt=0, le=10, description="Peak SGD learning rate, annealed to 0 by cosine."
    )
    momentum: float = Field(0.9, ge=0, le=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 weight decay.")
    nesterov: bool = Field(True, description="Nesterov momentum (ignored when momentum is 0).")
    amp: bool = Field(True, description="bf16 autocast; applies on CUDA only.")
    latency_repeats: int = Field(
        10, ge=1, le=1000, description="Timed forward passes per latency measurement (median kept)."
    )


ProxyName = Literal["naswot", "synflow", "grad_norm", "jacob_cov"]


PROXIES = ProxyName.__args__


class ProxyConfig(BuildsNetworks):
    model_config = ConfigDict(extra="forbid")
    queue: ClassVar[str] = "gpu"
    objectives: ClassVar[tuple[Metric, ...]] = (
        Metric("naswot", "max", "NASWOT: log-determinant of the ReLU activation-pattern kernel on one batch."),
        Metric("synflow", "max", "SynFlow: sum of |weight x gradient| of the all-ones output, BatchNorm removed."),
        Metric("grad_norm", "max", "Sum of per-layer gradient norms of the loss on one batch, untrained."),
        Metric("jacob_cov", "max", "Jacobian covariance score: inputs told apart by their input gradients."),
        *COSTS,
        Metric("train_seconds", "min", "Wall time of the whole evaluation (s): costs and proxies, no training."),
    )
    recorded: ClassVar[tuple[str, ...]] = ("latency_ms_batch", "proxy_seconds")


    def reported_objectives(self) -> tuple[Metric, ...]:
        """A proxy left out of ``proxies`` is never computed, so it cannot be an objective."""
        return tuple(m for m in self.objectives if m.name in self.proxies or m.name not in PROXIES)
    constraint_metrics: ClassVar[tuple[str, ...]] = COST_METRICS

    type: Literal["proxy"] = Field("proxy", description="Score untrained candidates with zero-cost proxies.")
    dataset: AnyDataset = dataset_field(  # type: ignore[valid-type]
        "Dataset whose inputs and classes the networks are built for and scored on")
    batch_size: int = Field(64, ge=2, le=1024, description="Examples in the one batch the proxies see.")
    proxies: list[ProxyName] = Field(
        default_factory=lambda: list(PROXIES),
        min_length=1,
        description="Proxies to compute; an objective must be one of them (or a cost).",
    )
    latency_repeats: int = Field(
        10, ge=1, le=1000, description="Timed forward passes per latency measurement (median kept)."
    )

    @field_validator("proxies")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


# A NAS-Bench-201-format table: what a search may see, and what it is judged by (never shown to it).
SIGNAL = "val_acc_12ep"
HELD_OUT = "test_acc_200ep"
REQUIRED_COLUMNS = ("arch", SIGNAL, HELD_OUT)
REQUIRED_TEXT = ",".join(REQUIRED_COLUMNS)


def read_header(path: Path) -> list[str]:
    """The column names of the CSV at ``path`` (empty for an empty file)."""
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


class TabularConfig(EvaluatorConfig):
    model_config = ConfigDict(extra="forbid")
    queue: ClassVar[str] = "cpu"
    objectives: ClassVar[tuple[Metric, ...]] = (
        Metric("val_acc_12ep", "max", "Benchmark validation accuracy (%) after 12 epochs."),
    )
    recorded: ClassVar[tuple[str, ...]] = ("test_acc_200ep",)

    def check_space(self, space_type: str) -> None:
        if space_type != "nb201":
            raise ValueError(
                f"the tabular evaluator only scores 'nb201' architectures, not {space_type!r}"
            )

    type: Literal["tabular"] = Field("tabular", description="Look results up in a benchmark table.")
    table: Path = Field(
        description=(
            "CSV in NAS-Bench-201 format (columns arch, val_acc_12ep, test_acc_200ep) that the "
            "API and the workers can read at this path, under one of their data roots "
            "(SCION_DATA_ROOTS); a relative path is taken from their working directory, then from "
            "each data root."
        )
    )

    @field_validator("table")
    @classmethod
    def _table_exists(cls, path: Path, info: ValidationInfo) -> Path:
        if trusted(info):
            return path
        resolved = resolve_data_path(path, what="table")
        if not resolved.is_file():
            raise ValueError(f"table {str(path)!r} is not a file")
        try:
            header = read_header(resolved)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"table {str(path)!r} cannot be read: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"table {str(path)!r} lacks column(s) {', '.join(missing)}; "
                f"a NAS-Bench-201 table needs {REQUIRED_TEXT}"
            )
        return path
