"""A job's strategy as its scheduler holds it: every call is logged, so that the strategy's state
need not be written whole at every pass.

A strategy's state grows with its job (the architectures it has seen, the results it learns
from); writing it whole at every pass would make each pass cost time proportional to the trials
so far. Instead the scheduler saves it whole now and then (``strategy_checkpoint_seconds``) and,
in between, appends the calls made since (``strategy_calls``), in the same transaction as the
trial rows they produced. A scheduler that takes the job over loads the saved state and replays
the calls: a strategy is deterministic given its seeded generator and its calls, so the search
continues exactly where the database says it stood.
"""
from __future__ import annotations

import logging
from typing import Any

from scheduler.strategies import Proposal, Strategy, TrialResult
from spaces import SearchSpace

log = logging.getLogger(__name__)


class LoggedStrategy:
    """Forwards ``ask`` / ``tell`` / ``on_report`` to the strategy and keeps each call, as JSON,
    until the scheduler saves it (``take_unsaved``) or saves the state whole (``state_dict``)."""

    def __init__(self, strategy: Strategy, space: SearchSpace) -> None:
        self.strategy, self.space = strategy, space
        self.unsaved: list[dict[str, Any]] = []

    @property
    def reads_reports(self) -> bool:
        """Whether the strategy decides on per-epoch reports (else they need not reach it)."""
        return type(self.strategy).on_report is not Strategy.on_report

    def ask(self) -> Proposal | None:
        proposal = self.strategy.ask()
        self.unsaved.append({"ask": self._key(proposal)})
        return proposal

    def tell(self, result: TrialResult) -> None:
        self.strategy.tell(result)
        self.unsaved.append({"tell": dict(vars(result))})  # no deep copy: a told result is not changed

    def on_report(self, number: int, step: int, score: float | None, scores: dict[str, float]) -> bool:
        if not self.reads_reports:  # called for early stopping only: nothing to forward or replay
            return True
        keep = self.strategy.on_report(number, step, score, scores)
        self.unsaved.append({"report": [number, step, score, scores]})
        return keep

    def take_unsaved(self) -> list[dict[str, Any]]:
        calls, self.unsaved = self.unsaved, []
        return calls

    def state_dict(self) -> dict[str, Any]:
        """The whole state, which makes the calls kept so far unnecessary."""
        self.unsaved.clear()
        return self.strategy.state_dict()

    def replay(self, calls: list[dict[str, Any]]) -> None:
        """Bring a strategy loaded from its saved state up to date with the calls logged since."""
        diverged = 0
        for call in calls:
            if "tell" in call:
                self.strategy.tell(TrialResult(**call["tell"]))
            elif "report" in call:
                self.strategy.on_report(*call["report"])
            elif self._key(self.strategy.ask()) != call["ask"]:
                diverged += 1
        if diverged:
            log.warning("strategy %s proposed %d different architecture(s) when its calls were replayed: it is not "
                        "deterministic, so this search does not continue exactly as it would have",
                        type(self.strategy).__name__, diverged)

    def _key(self, proposal: Proposal | None) -> str | None:
        if proposal is None:
            return None
        try:
            return self.space.key(proposal.arch)
        except Exception:  # an invalid architecture: the scheduler reports it when it validates the proposal
            return "invalid"
