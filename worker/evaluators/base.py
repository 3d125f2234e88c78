"""The evaluator interface: how a worker turns an architecture into metrics.

Evaluator modules import torch only inside ``evaluate`` so that the API and the scheduler can
import their configs (for validation and the catalogue) without it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

from spaces.base import Arch, SearchSpace


class TrialStopped(Exception):
    """Raised from ``EvalContext.report`` when the trial was asked to stop (cancelled,
    early-stopped or out of time); the evaluator lets it propagate."""


class TrialFailed(Exception):
    """A candidate that cannot be evaluated (NaN loss, out of memory, over a cost limit, …);
    fails that trial only, keeping whatever ``metrics`` were measured."""

    def __init__(self, message: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metrics = metrics


class EvalContext(Protocol):
    """What the worker hands an evaluator."""

    device: str  # torch device string chosen for this worker process
    fidelity: dict[str, Any] | None  # the budget the strategy asked for (e.g. epochs), if any

    def artifact_path(self, number: int) -> Path:
        """Where trial ``number`` of this job keeps its weights (on storage every worker shares)."""

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        """Record one epoch's metrics and heartbeat; raises TrialStopped if asked to stop."""

    def check_costs(self, costs: dict[str, float]) -> None:
        """Raise TrialFailed (with the costs) when the job's constraints rule the candidate out."""


@dataclass(frozen=True)
class Metric:
    name: str
    mode: Literal["max", "min"]
    description: str


class Evaluator(ABC):
    Config: ClassVar[type[BaseModel]]
    queue: ClassVar[str]  # Celery queue by resource class: "gpu" or "cpu"
    objectives: ClassVar[tuple[Metric, ...]]  # metrics a job may optimise; the first is the default
    recorded: ClassVar[tuple[str, ...]] = ()  # further metrics stored with the trial, never shown to a strategy
    constraint_metrics: ClassVar[tuple[str, ...]] = ()  # costs measured before training, usable as constraints
    tunable: ClassVar[tuple[str, ...]] = ()  # config fields a space may search per trial (training_settings)
    keeps_weights: ClassVar[bool] = False  # a completed trial leaves a checkpoint at ctx.artifact_path (exportable)

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    @classmethod
    def reported_objectives(cls, config: BaseModel) -> tuple[Metric, ...]:
        """The objectives a job configured with ``config`` can optimise: those it will compute."""
        return cls.objectives

    @classmethod
    def check(cls, config: BaseModel, space_type: str) -> None:
        """Raise ValueError when this evaluator cannot score architectures of ``space_type``."""

    @abstractmethod
    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        """Final metrics: every objective metric plus ``recorded`` ones."""
