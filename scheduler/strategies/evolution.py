"""Regularized (aging) evolution, Real et al., "Regularized Evolution for Image Classifier
Architecture Search", AAAI 2019.

Asynchronous by construction: the first ``population_size`` asks are random samples; after
that each ask runs a tournament of ``sample_size`` members drawn from the living population
(the most recent ``population_size`` results) and mutates the winner. Results join the
population as they arrive and the oldest member dies, so asks made while trials are still
running use whatever has finished.
"""
from __future__ import annotations

from typing import Any

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.dedup import propose_unseen
from scion.configs.strategies import EvolutionConfig


class RegularizedEvolution(Strategy):
    Config = EvolutionConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.population: list[tuple[Any, float]] = []  # (arch, score), oldest first
        self.asked = 0
        self.seen: set[str] = set()

    def ask(self) -> Proposal | None:
        cfg = self.config
        if self.asked < cfg.population_size or not self.population:
            draw = lambda: self.space.sample(self.rng)  # noqa: E731
        else:
            parent = self._tournament_winner()
            draw = lambda: self.space.mutate(parent, self.rng)  # noqa: E731
        arch = propose_unseen(self.space, self.seen, draw, cfg.max_resample)
        if arch is None:
            return None
        self.asked += 1
        return Proposal(arch)

    def _tournament_winner(self) -> Any:
        k = min(self.config.sample_size, len(self.population))
        picks = self.rng.choice(len(self.population), size=k, replace=False)
        return max((self.population[i] for i in picks), key=lambda member: member[1])[0]

    def tell(self, result: TrialResult) -> None:
        self.seen.add(self.space.key(result.arch))
        if result.score is None:
            return
        self.population.append((result.arch, result.score))
        if len(self.population) > self.config.population_size:
            self.population.pop(0)

    def _state(self) -> dict[str, Any]:
        return {
            "population": [[arch, score] for arch, score in self.population],
            "asked": self.asked,
            "seen": sorted(self.seen),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = [(arch, score) for arch, score in state["population"]]
        self.asked = state["asked"]
        self.seen = set(state["seen"])
