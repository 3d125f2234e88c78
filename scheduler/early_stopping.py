"""Learning-curve early stopping, a job option any strategy can run under.

A running trial whose learning curve, extrapolated to its last epoch, cannot reach the k-th
best final result so far is stopped: its worker ends it within one epoch. The extrapolation
fits score = a + b·log(epoch) by least squares (Domhan et al., IJCAI 2015 use richer curve
families; the log model is deliberately optimistic for saturating accuracy curves, so only
clearly hopeless trials are stopped).
"""
from __future__ import annotations

import math

import numpy as np

from scion.configs.early_stopping import CurveStoppingConfig


def extrapolate(curve: list[tuple[int, float]], final_epoch: int) -> float:
    """The fitted a + b·log(epoch) at ``final_epoch``, never below the best value seen."""
    epochs = np.log(np.array([e for e, _ in curve], dtype=float))
    values = np.array([v for _, v in curve], dtype=float)
    slope, intercept = np.polyfit(epochs, values, 1) if len(set(epochs)) > 1 else (0.0, values.mean())
    return max(float(intercept + slope * math.log(final_epoch)), float(values.max()))


def should_stop(config: CurveStoppingConfig, curve: list[tuple[int, float]], final_epoch: int,
                kth_best: float | None) -> float | None:
    """The extrapolated final score when the trial is hopeless, else None."""
    if kth_best is None or len(curve) < config.min_epochs or curve[-1][0] >= final_epoch:
        return None
    predicted = extrapolate(curve, final_epoch)
    return predicted if predicted + config.margin < kth_best else None
