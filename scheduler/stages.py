"""What a job's scheduler creates next, as stages: an ordinary job has one, a one-shot job three.

A one-shot job (``spec.one_shot``) trains a supernet in one trial, then searches (the job's
strategy, or the method's own candidates, scored with inherited weights), then retrains the
best k from scratch (the retrain path's schedule: the evaluator's epochs). Each stage is a run of
consecutive trial numbers; a stage ends when all its trials are created and none is in flight,
and the next one is planned from what the database holds, so a scheduler that loads the job
half-way plans exactly what the one before it did.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row

from scheduler.strategies import Proposal
from scion.configs.one_shot import PHASES, RETRAIN, SEARCH, SUPERNET
from scion.spec import JobSpec
from spaces import InvalidArchitecture, SearchSpace

SUPERNET_KEY = "supernet"  # the arch_key of a supernet trial, whose arch is null


@dataclass(frozen=True)
class Stage:
    """A run of trials: numbers ``start`` to ``start + size - 1``, proposed by ``fixed`` (in
    order) or, when None, by the warm start and then the strategy."""

    phase: str | None  # None: an ordinary job's only stage
    start: int
    size: int
    fixed: tuple[Proposal, ...] | None
    final: bool

    @property
    def end(self) -> int:
        """The number of trials the job has created once this stage has created all of its own."""
        return self.start + self.size

    def proposal(self, number: int) -> Proposal | None:
        """The fixed proposal for trial ``number``, or None where the strategy proposes."""
        return self.fixed[number - self.start] if self.fixed is not None else None


class PhaseFailed(Exception):
    """A phase ended without what the next one needs (the supernet's training failed, no search
    trial completed): the job fails with this message."""


def first_stage(spec: JobSpec) -> Stage:
    if spec.one_shot is None:
        return Stage(None, 0, spec.budget.max_trials, None, final=True)
    if spec.one_shot.supernet_from is None:
        return Stage(SUPERNET, 0, 1, (Proposal(None),), final=False)
    return _search(spec, start=0, candidates=None)


def next_stage(spec: JobSpec, space: SearchSpace, stage: Stage, trials: Sequence[Row]) -> Stage:
    """The stage after ``stage``, planned from the job's trials (``repo.phase_trials``); raises
    PhaseFailed when ``stage`` left nothing to go on with."""
    start = sum(1 for t in trials if t.phase is not None and PHASES.index(t.phase) <= PHASES.index(stage.phase))
    if stage.phase == SUPERNET:
        supernet = trials[0]
        if supernet.status != "completed":
            raise PhaseFailed(f"the supernet's training ended {supernet.status}: "
                              f"{supernet.error or 'no error recorded'}")
        if spec.one_shot.method.uses_strategy:
            return _search(spec, start, None)
        candidates = _distinct(space, (supernet.metrics or {}).get("candidates") or [])
        if not candidates:
            raise PhaseFailed("the supernet's training proposed no candidate architectures")
        return _search(spec, start, tuple(Proposal(arch) for arch in candidates))
    searched = sorted((t for t in trials if t.phase == SEARCH and t.status == "completed" and t.score is not None),
                      key=lambda t: (-t.score, t.number))
    best = _distinct(space, [t.arch for t in searched])[: spec.one_shot.retrain_top_k]
    if not best:
        raise PhaseFailed("no search trial completed; see the search trials' errors")
    retrain = {"epochs": spec.evaluator.epochs}
    return Stage(RETRAIN, start, len(best), tuple(Proposal(arch, retrain) for arch in best), final=True)


def current_stage(spec: JobSpec, space: SearchSpace, trials: Sequence[Row]) -> Stage:
    """The stage the job's newest trial belongs to (the first one for a job without trials)."""
    stage = first_stage(spec)
    newest = trials[-1].phase if trials else stage.phase
    while stage.phase != newest:
        stage = next_stage(spec, space, stage, trials)
    return stage


def _search(spec: JobSpec, start: int, candidates: tuple[Proposal, ...] | None) -> Stage:
    size = len(candidates) if candidates is not None else spec.budget.max_trials
    return Stage(SEARCH, start, size, candidates, final=spec.one_shot.retrain_top_k == 0)


def _distinct(space: SearchSpace, archs: Sequence[object]) -> list[object]:
    """The architectures in their canonical form, first occurrence of each network only; one a
    worker returned that is not in the space is left out."""
    seen, out = set(), []
    for arch in archs:
        try:
            arch = space.validate(arch)
        except InvalidArchitecture:
            continue
        if space.key(arch) not in seen:
            seen.add(space.key(arch))
            out.append(arch)
    return out


__all__ = ["SUPERNET_KEY", "PhaseFailed", "Stage", "current_stage", "first_stage", "next_stage"]
