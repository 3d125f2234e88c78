"""The evaluator interface: how a worker turns an architecture into metrics. Evaluators run on
workers only, which have torch; the API and the scheduler read what they need from the configs."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

from scion.configs.evaluators import EvaluatorConfig
from spaces.base import Arch, SearchSpace


class EvalContext(Protocol):
    """What the worker hands an evaluator."""

    device: str  # torch device string chosen for this worker process
    attempt: int  # this attempt's number: above 1, an earlier attempt's worker was lost, maybe part way
    fidelity: dict[str, Any] | None  # the budget the strategy asked for (e.g. epochs), if any

    def artifact_path(self, number: int) -> Path:
        """Where trial ``number`` of this job keeps its weights (on storage every worker shares)."""

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        """Record one epoch's metrics and heartbeat; raises TrialStopped if asked to stop."""

    def check_costs(self, costs: dict[str, float]) -> None:
        """Raise TrialFailed (with the costs) when the job's constraints rule the candidate out."""


class Evaluator(ABC):
    """Turns one architecture into metrics on a worker. What the evaluator promises a job (its
    queue, objectives, costs, tunable settings, whether it keeps weights) is declared by its config
    class in the core (``scion.configs.evaluators``), so the API and the scheduler know it without
    importing this."""

    Config: ClassVar[type[EvaluatorConfig]]

    def __init__(self, config: EvaluatorConfig) -> None:
        self.config = config

    @abstractmethod
    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        """Final metrics: every objective metric plus ``recorded`` ones."""
