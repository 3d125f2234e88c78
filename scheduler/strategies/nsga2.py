"""NSGA-II, Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist multiobjective genetic
algorithm: NSGA-II", IEEE Transactions on Evolutionary Computation 6(2), 2002; run as an
asynchronous steady-state evolution (one offspring per ask, one survivor selection per result:
Durillo et al., "On the effect of the steady-state selection scheme in multi-objective genetic
algorithms", EMO 2009), as NAS needs with many workers finishing at different times.

When to use it: the job has several objectives (``objectives`` in the spec, e.g. ``val_acc``
max and ``params`` / ``flops`` / ``latency_ms`` min) and the answer is the trade-off curve, not
one architecture; read it with ``GET /v1/jobs/{id}/pareto`` or ``scion pareto JOB``. With a
single objective it is an elitist (mu + 1) evolution with binary tournaments, which converges
faster but explores less than regularized evolution (prefer ``evolution`` there).

How it works. It sees every objective of a trial oriented higher-is-better
(``TrialResult.scores``). The first ``population_size`` asks are random samples. Each result
that has its primary objective joins the population (failed trials are ignored); when the
population exceeds ``population_size``, NSGA-II's environmental selection drops the worst
member: the last non-dominated front, and in it the most crowded point (smallest crowding
distance; among exact equals the oldest). Each later ask picks a parent by binary tournament
on (front, crowding distance), with probability ``crossover_prob`` crosses it uniformly with a
second tournament winner over the space's categorical decisions, and mutates the child (one
edit, ``space.mutate``) unless the crossover child is new already. An architecture is never
proposed twice while unseen ones are likely to remain. Asks made while trials are running use
whatever has finished. A trial missing a secondary objective counts as worse than every
measured value of it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.dedup import propose_unseen
from scion.configs.strategies import NSGA2Config
from scion.pareto import rank_and_crowding, survivors
from spaces.base import Arch


class NSGA2(Strategy):
    Config = NSGA2Config

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.population: list[tuple[Arch, dict[str, float]]] = []  # (arch, oriented scores), oldest first
        self.objectives: list[str] = []  # every objective name seen, in first-seen order
        self.asked = 0
        self.seen: set[str] = set()
        self._ranked: tuple[np.ndarray, np.ndarray] | None = None

    # -- asking --------------------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        initial = self.asked < self.config.population_size or not self.population
        draw = (lambda: self.space.sample(self.rng)) if initial else self._offspring
        arch = propose_unseen(self.space, self.seen, draw, self.config.max_resample)
        if arch is None:
            return None
        self.asked += 1
        return Proposal(arch)

    def _offspring(self) -> Arch:
        parent = self._tournament()
        if len(self.population) > 1 and self.rng.random() < self.config.crossover_prob:
            other = self._tournament()
            a, b = self.space.to_choices(parent), self.space.to_choices(other)
            take_a = self.rng.random(len(a)) < 0.5
            child = self.space.from_choices([int(x) for x in np.where(take_a, a, b)])
            if self.space.key(child) not in self.seen:
                return child
            parent = child
        return self.space.mutate(parent, self.rng)

    def _tournament(self) -> Arch:
        """Binary tournament: lower front wins, then larger crowding distance."""
        n = len(self.population)
        if n == 1:
            return self.population[0][0]
        rank, crowding = self._rank()
        i, j = (int(x) for x in self.rng.choice(n, size=2, replace=False))
        if (rank[j], -crowding[j]) < (rank[i], -crowding[i]):
            i = j
        return self.population[i][0]

    # -- telling -------------------------------------------------------------------------------

    def tell(self, result: TrialResult) -> None:
        self.seen.add(self.space.key(result.arch))
        if result.score is None or result.status in ("failed", "cancelled"):
            return
        scores = {k: float(v) for k, v in result.scores.items() if v is not None and np.isfinite(v)}
        if not scores:  # a caller that reports the primary score only
            scores = {"score": float(result.score)}
        for name in scores:
            if name not in self.objectives:
                self.objectives.append(name)
        self.population.append((result.arch, scores))
        self._ranked = None
        if len(self.population) > self.config.population_size:
            keep = survivors(self._points(), self.config.population_size, prefer_later=True)
            self.population = [self.population[i] for i in keep]

    def _points(self) -> np.ndarray:
        """The population as an (n, m) array, higher is better; a missing value sits below the
        worst measured one."""
        points = np.array(
            [[s.get(name, np.nan) for name in self.objectives] for _, s in self.population], dtype=float
        )
        for j in range(points.shape[1]):
            column = points[:, j]
            missing = np.isnan(column)
            if missing.any():
                measured = column[~missing]
                low = measured.min() - max(1.0, float(np.ptp(measured))) if measured.size else 0.0
                column[missing] = low
        return points

    def _rank(self) -> tuple[np.ndarray, np.ndarray]:
        if self._ranked is None:
            self._ranked = rank_and_crowding(self._points())
        return self._ranked

    # -- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "population": [[arch, scores] for arch, scores in self.population],
            "objectives": list(self.objectives),
            "asked": self.asked,
            "seen": sorted(self.seen),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = [(arch, dict(scores)) for arch, scores in state["population"]]
        self.objectives = list(state["objectives"])
        self.asked = state["asked"]
        self.seen = set(state["seen"])
        self._ranked = None
