"""Evaluators, collected in ``EVALUATORS`` (name → config model and class).

Importing this package does not import torch: evaluators import it inside ``evaluate``.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from scion.registry import Registry
from worker.evaluators.base import EvalContext, Evaluator, Metric, TrialFailed, TrialStopped
from worker.evaluators.proxy import ProxyConfig, ProxyEvaluator
from worker.evaluators.tabular import TabularConfig, TabularEvaluator
from worker.evaluators.train import TrainConfig, TrainEvaluator

EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator")
EVALUATORS.register(
    "train", TrainConfig, TrainEvaluator,
    "Train each candidate briefly on a built-in dataset; accuracy, size, FLOPs and latency.",
)
EVALUATORS.register(
    "proxy", ProxyConfig, ProxyEvaluator,
    "Score untrained candidates with zero-cost proxies (NASWOT, synflow, grad_norm, jacob_cov): "
    "a fraction of a second each.",
)
EVALUATORS.register(
    "tabular", TabularConfig, TabularEvaluator,
    "Look NAS-Bench-201 cells up in a results table: seconds per search, on a CPU.",
)


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
