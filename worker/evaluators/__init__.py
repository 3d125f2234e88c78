"""Evaluators: importing this package implements the core's ``EVALUATORS`` (scion.components),
whose configs say what each evaluator promises a job without this package (or torch) loaded."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from scion.components import EVALUATORS
from scion.configs.evaluators import Metric
from worker.evaluators.base import EvalContext, Evaluator
from worker.evaluators.proxy import ProxyEvaluator
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


__all__ = [
    "EVALUATORS", "EvalContext", "Evaluator", "Metric", "TrialFailed", "TrialStopped",
    "make_evaluator",
]
