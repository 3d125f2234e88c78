"""What a trial's outcome tells its strategy, and whether a per-epoch report stops the trial.

The scheduler (``scheduler.job_run``) turns the trials it reads into these calls, and the strategy
benchmark (``bench.strategies``) turns simulated trials into the same calls, so that the benchmark
measures the logic the service runs. Nothing here reads the database or imports torch: the caller
hands in a trial's fields, or one report, and what the job's spec says of its objectives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from scheduler.early_stopping import CurveStoppingConfig, should_stop
from scheduler.strategies import TrialResult
from spaces import SearchSpace
from spaces.base import training_settings


class Objectives(Protocol):
    """What a job's spec says of its objectives (``scion.spec.JobSpec`` is one)."""

    @property
    def primary(self) -> Any:  # the first objective: its ``metric`` and ``mode`` ("max" or "min")
        ...

    def score(self, metrics: dict[str, Any]) -> tuple[float | None, float | None]:
        ...

    def strategy_view(self, metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
        ...


class ReportReader(Protocol):
    """A strategy as far as per-epoch reports go (``Strategy`` and ``LoggedStrategy`` are)."""

    def on_report(self, number: int, step: int, score: float | None, scores: dict[str, float]) -> bool:
        ...


def finished(objectives: Objectives, *, number: int, arch: Any, status: str, score: float | None,
             metrics: dict[str, Any] | None, fidelity: dict[str, Any] | None) -> TrialResult:
    """What the strategy is told of a finished trial (completed, failed, stopped or cancelled):
    the score its worker stored, and of its metrics only the objectives, as measured and oriented
    higher-is-better, so held-out figures never reach it."""
    values, scores = objectives.strategy_view(metrics or {})
    return TrialResult(number=number, arch=arch, status=status, score=score, objectives=values, scores=scores,
                       fidelity=fidelity)


def final_epoch(space: SearchSpace, arch: Any, fidelity: dict[str, Any] | None, evaluator: Any, step: int) -> int:
    """The epoch a trial's run ends at: its fidelity's, else the one its architecture trains for,
    else its evaluator's (``step``, the epoch just reported, for an evaluator without epochs)."""
    return ((fidelity or {}).get("epochs") or training_settings(space, arch).get("epochs")
            or getattr(evaluator, "epochs", step))


@dataclass(frozen=True)
class Verdict:
    """A report judged: the trial's result as of that epoch, and why to stop it (None: it goes on)."""

    metrics: dict[str, Any]
    objective: float | None
    score: float | None
    stop: str | None


def judge_report(objectives: Objectives, strategy: ReportReader, stopping: CurveStoppingConfig | None,
                 curve: list[tuple[int, float]], *, number: int, step: int, metrics: dict[str, Any],
                 final_epoch: int, kth_best: float | None, newest_step: int) -> Verdict:
    """Hand one per-epoch report of a running trial to its strategy and to learning-curve early
    stopping. ``curve``: the trial's (epoch, score) so far, extended here; ``kth_best``: the
    ``stopping.top_k``-th best score of the job's completed trials; ``newest_step``: the latest
    epoch the trial has reported, which may be past this one. A trial that reported its final
    epoch is finishing anyway and is never stopped."""
    objective, score = objectives.score(metrics)
    _, scores = objectives.strategy_view(metrics)
    if score is not None:
        curve.append((step, score))
    reason = None
    if not strategy.on_report(number, step, score, scores):
        reason = "by the strategy"
    elif stopping and (predicted := should_stop(stopping, curve, final_epoch, kth_best)) is not None:
        primary = objectives.primary
        shown = predicted if primary.mode == "max" else -predicted
        reason = (f"by learning-curve early stopping: extrapolated {primary.metric} {shown:.4g} "
                  f"at epoch {final_epoch} cannot reach the {stopping.top_k}-th best")
    return Verdict(metrics={**metrics, "epochs": step}, objective=objective, score=score,
                   stop=reason if newest_step < final_epoch else None)
