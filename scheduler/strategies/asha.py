"""Asynchronous successive halving (ASHA), Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020; with several brackets it is asynchronous Hyperband
(Li et al., JMLR 2018).

Use it when full trainings are expensive and a few epochs already rank candidates: most
candidates get ``min_epochs``, and only the top 1/η of each rung earn more. Epochs are the
fidelity. Two ways to spend them:

- ``promotion``: a candidate in the top 1/η of its rung is promoted as a new trial that
  continues from its checkpoint (``resume_from``) up to the next rung, never from scratch;
  new candidates start at the bottom rung whenever nothing is promotable.
- ``stopping``: every candidate is started for ``max_epochs`` and reports each epoch; at a rung
  it goes on only while it is in the top 1/η of what that rung has seen (``on_report``), else
  the worker stops it within one epoch.

The learning-rate schedule of every run spans ``max_epochs`` (``schedule_epochs``), so a
continued run trains exactly as an uninterrupted one would.
"""
from __future__ import annotations

import math
from typing import Any

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.dedup import propose_unseen
from scion.configs.strategies import ASHAConfig


def rung_budgets(config: ASHAConfig) -> list[int]:
    """min_epochs · η^k below max_epochs, then max_epochs itself."""
    budgets, budget = [], config.min_epochs
    while budget < config.max_epochs:
        budgets.append(budget)
        budget *= config.reduction_factor
    return budgets + [config.max_epochs]


class ASHA(Strategy):
    Config = ASHAConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.rungs = rung_budgets(config)
        # per rung: trial number (as str, for JSON) -> [arch, score]
        self.results: list[dict[str, list[Any]]] = [{} for _ in self.rungs]
        self.promoted: list[list[str]] = [[] for _ in self.rungs]
        self.seen: set[str] = set()
        self.started = 0

    # -- asking ------------------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        if self.config.mode == "promotion":
            promotion = self._promotable()
            if promotion is not None:
                return promotion
        arch = propose_unseen(self.space, self.seen, lambda: self.space.sample(self.rng), self.config.max_resample)
        if arch is None:
            return None
        bracket = self.started % min(self.config.brackets, len(self.rungs))
        self.started += 1
        top = self.rungs[-1]
        epochs = top if self.config.mode == "stopping" else self.rungs[bracket]
        return Proposal(arch, {"epochs": epochs, "schedule_epochs": top})

    def _promotable(self) -> Proposal | None:
        eta = self.config.reduction_factor
        for k in range(len(self.rungs) - 2, -1, -1):
            ranked = sorted(self.results[k].items(), key=lambda item: (-item[1][1], int(item[0])))
            for number, (arch, _) in ranked[: len(ranked) // eta]:
                if number not in self.promoted[k]:
                    self.promoted[k].append(number)
                    return Proposal(arch, {"epochs": self.rungs[k + 1], "schedule_epochs": self.rungs[-1],
                                           "resume_from": int(number)})
        return None

    # -- results -----------------------------------------------------------------------------

    def tell(self, result: TrialResult) -> None:
        self.seen.add(self.space.key(result.arch))
        if result.score is None or not result.fidelity:
            return
        epochs = int(result.fidelity.get("epochs", self.rungs[-1]))
        if result.status == "stopped":  # its rung results came through on_report already
            return
        if epochs in self.rungs:
            self.results[self.rungs.index(epochs)][str(result.number)] = [result.arch, result.score]

    def on_report(self, number: int, step: int, score: float | None, scores: dict[str, float]) -> bool:
        if self.config.mode != "stopping" or score is None or step not in self.rungs[:-1]:
            return True
        rung = self.results[self.rungs.index(step)]
        rung[str(number)] = [None, score]
        better = sum(1 for _, other in rung.values() if other > score)
        return better < math.ceil(len(rung) / self.config.reduction_factor)

    # -- state -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"results": self.results, "promoted": self.promoted, "seen": sorted(self.seen),
                "started": self.started}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.results, self.promoted = state["results"], state["promoted"]
        self.seen, self.started = set(state["seen"]), state["started"]
