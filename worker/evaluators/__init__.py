"""Evaluators: importing this package implements the core's ``EVALUATORS`` (scion.components),
whose configs say what each evaluator promises a job without this package (or torch) loaded."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from scion.components import EVALUATORS
from scion.configs.evaluators import Metric
from scion.configs.one_shot import RETRAIN, SEARCH, SUPERNET
from scion.spec import JobSpec
from storage import artifacts
from worker.evaluators.base import EvalContext, Evaluator
from worker.evaluators.inherited import InheritedEvaluator
from worker.evaluators.proxy import ProxyEvaluator
from worker.evaluators.supernet import SupernetEvaluator
from worker.evaluators.tabular import TabularEvaluator
from worker.evaluators.train import TrainEvaluator
from worker.outcomes import TrialFailed, TrialStopped

EVALUATORS.implement("train", TrainEvaluator)
EVALUATORS.implement("proxy", ProxyEvaluator)
EVALUATORS.implement("tabular", TabularEvaluator)


def make_evaluator(config: BaseModel | dict[str, Any]) -> Evaluator:
    """The evaluator for a validated config (or a raw dict with its ``type``)."""
    if isinstance(config, dict):
        entry = EVALUATORS[str(config.get("type"))]
        config = entry.config.model_validate(config)
    else:
        entry = EVALUATORS[config.type]  # type: ignore[attr-defined]
    return entry.factory(config)


def job_evaluators(job_id: int, spec: JobSpec) -> dict[str | None, Evaluator]:
    """A job's evaluator for each phase of its trials: the job's own for an ordinary job's (phase
    None); for a one-shot job's, the supernet's training, the scoring of sub-networks with the
    weights they inherit from the supernet (this job's, or the one ``supernet_from`` names) and
    the job's own evaluator for the retrained networks."""
    evaluator = make_evaluator(spec.evaluator)
    if spec.one_shot is None:
        return {None: evaluator}
    source = spec.one_shot.supernet_from if spec.one_shot.supernet_from is not None else job_id
    return {
        SUPERNET: SupernetEvaluator(spec.one_shot, spec.evaluator, spec.seed),
        SEARCH: InheritedEvaluator(spec.one_shot, spec.evaluator, artifacts.checkpoint_path(source, 0)),
        RETRAIN: evaluator,
    }


__all__ = [
    "EVALUATORS", "EvalContext", "Evaluator", "Metric", "TrialFailed", "TrialStopped",
    "job_evaluators", "make_evaluator",
]
