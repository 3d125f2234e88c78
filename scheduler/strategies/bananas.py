"""BANANAS: Bayesian optimisation with an ensemble of neural predictors.

White, Neiswanger & Savani, "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search", AAAI 2021; restarts with local models after TuRBO (Eriksson, Pearce,
Gardner, Turner & Poloczek, "Scalable Global Optimization via Local Bayesian Optimization",
NeurIPS 2019).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.strategies.base import Proposal
from scheduler.strategies.surrogate import PredictorStrategy
from scion.configs.strategies import BananasConfig


class Bananas(PredictorStrategy):
    """BANANAS (White, Neiswanger & Savani, AAAI 2021): Bayesian optimisation whose surrogate is
    an ensemble of small neural networks over the architecture encoding, with TuRBO-style
    restarts (Eriksson et al., NeurIPS 2019).

    After ``initial_samples`` random architectures, each ask

    1. brings the ensemble (``ensemble_size`` MLPs from different initialisations, see
       ``surrogate.py``) up to date with the results, scores copula-warped so that any metric or
       dataset looks alike;
    2. folds the trials still in flight in at the value the ensemble predicts for them (the
       kriging believer), so asks made while workers are busy spread out instead of proposing
       near-twins of each other;
    3. builds a candidate pool from the current region's best results: every neighbour of the
       best ``neighbours_of``, mutations of the best ``parents`` (the paper's mutation-based
       acquisition optimiser), the end points of hill climbs on the predicted mean from each
       parent, and ``random_candidates`` samples, minus everything already asked;
    4. proposes the candidate with the best acquisition: independent Thompson sampling (one draw
       from N(mean, std) of the members' predictions per candidate, the paper's choice) or UCB.

    Restarts. A surrogate trained around one good region extrapolates from it and keeps the
    search there even when that region is only a local optimum: on NAS-Bench-201 a quarter of
    plain BANANAS runs settle for good on a cell other than the best. So, as TuRBO does with its
    trust regions, when ``restart_patience`` results of the current region asked after its best
    was known have not improved on it (or every neighbour of that best has been evaluated), the
    search restarts as it began: ``initial_samples`` random architectures seed a new region, and
    with ``restart_model = "local"`` the surrogate learns from the new region's results only, so
    the old region's data does not pull it back. Every region's results count for the job: the
    incumbent is the best of all. (Counting only results asked after the best was known keeps
    parallel workers, whose trials were chosen before it arrived, from restarting too early.)

    Use it when evaluations are expensive and the space has a meaningful encoding: it spends
    milliseconds per ask to make each evaluation count. Failed trials are left out of the fit and
    never proposed again.
    """

    Config = BananasConfig
    config: BananasConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.seeds_left = 0  # random asks still to seed the current region (after a restart)

    def ask(self) -> Proposal | None:
        cfg = self.config
        if self.asked < cfg.initial_samples or len(self.results) < max(2, cfg.initial_samples // 2):
            return self.propose_random()
        self._maybe_restart()
        ranked = self.ranked(self.tag)
        model = self.model() if ranked else None
        if self.seeds_left > 0 or model is None:
            self.seeds_left = max(0, self.seeds_left - 1)
            return self.propose_random()
        pool, keys = self.candidate_pool(
            ranked, parents=cfg.parents, mutations=cfg.mutations_per_parent,
            neighbours_of=cfg.neighbours_of, random=cfg.random_candidates, max_edits=cfg.max_edits,
        )
        model = self.fantasised(model, cfg.fantasy_epochs)
        if cfg.climb_steps and (cfg.parents or cfg.climb_starts):
            starts = ranked[: cfg.parents] + [self.space.sample(self.rng) for _ in range(cfg.climb_starts)]
            taken = set(keys)
            for arch, key in zip(*self.climb(lambda x: model.predict(x)[0], starts, cfg.climb_steps)):
                if key not in taken:
                    pool.append(arch)
                    keys.append(key)
        if not pool:
            return self.propose_random()
        mean, std = model.predict(self.encode(pool, keys))
        if cfg.acquisition == "its":
            value = mean + std * self.rng.standard_normal(len(pool))
        else:
            value = mean + cfg.ucb_kappa * std
        best = int(np.argmax(value))
        return self.propose(pool[best], keys[best])

    def _maybe_restart(self) -> None:
        """Start a new region when the current one has stopped improving."""
        cfg = self.config
        if not cfg.restart_patience:
            return
        region = [i for i, tag in enumerate(self.tags) if tag == self.tag]
        if not region:
            return
        best = max(region, key=lambda i: (self.results[i][1], -i))  # the first of equals
        # Failures: results asked once the best was known (with workers in parallel, results
        # asked before it arrived could not have improved on it knowingly).
        failures = sum(1 for i in region if self.known[i] > best)
        stuck = failures >= cfg.restart_patience
        if not stuck and cfg.restart_at_local_optimum:
            arch = self.results[best][0]
            stuck = all(self.key(o) in self.seen and self.key(o) not in self.pending
                        for o in self.neighbours(arch, self.key(arch)))
        if stuck:
            self.tag += 1
            self.seeds_left = cfg.initial_samples
            if cfg.restart_model == "local":
                self.data_tag = self.tag

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "seeds_left": self.seeds_left}

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self.seeds_left = int(state["seeds_left"])
