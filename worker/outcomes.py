"""How a trial ends other than with metrics, as the evaluators, the trainer and the data loaders
raise it and the runner records it (``worker/runner.py``)."""
from __future__ import annotations

from typing import Any


class TrialStopped(Exception):
    """Raised from ``EvalContext.report`` when the trial was asked to stop (cancelled,
    early-stopped or out of time); the evaluator lets it propagate."""


class TrialFailed(Exception):
    """A candidate that cannot be evaluated (NaN loss, out of memory, over a cost limit, …);
    fails that trial only, keeping whatever ``metrics`` were measured."""

    def __init__(self, message: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metrics = metrics


__all__ = ["TrialFailed", "TrialStopped"]
