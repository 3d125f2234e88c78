"""Search strategies, collected in ``STRATEGIES`` (name → config model and class)."""
from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.strategies.asha import ASHA
from scheduler.strategies.bananas import Bananas
from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.evolution import RegularizedEvolution
from scheduler.strategies.grid import GridSearch
from scheduler.strategies.local_search import LocalSearch
from scheduler.strategies.nsga2 import NSGA2
from scheduler.strategies.pnas import PNAS
from scheduler.strategies.random_search import RandomSearch
from scheduler.strategies.reinforce import Reinforce
from scheduler.strategies.tpe import TPE
from scion.registry import Registry
from spaces.base import SearchSpace

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
STRATEGIES.register("random", RandomSearch.Config, RandomSearch, "Uniform random sampling without repeats.")
STRATEGIES.register(
    "evolution", RegularizedEvolution.Config, RegularizedEvolution,
    "Regularized (aging) evolution, Real et al. 2019.",
)
STRATEGIES.register(
    "nsga2", NSGA2.Config, NSGA2, "Multi-objective NSGA-II evolution (Pareto fronts), Deb et al. 2002.",
)

STRATEGIES.register(
    "grid", GridSearch.Config, GridSearch, "Exhaustive enumeration of a finite space, seeded shuffled order.",
)
STRATEGIES.register(
    "local_search", LocalSearch.Config, LocalSearch,
    "Hill climbing over neighbours with random restarts, White et al. 2021.",
)
STRATEGIES.register(
    "reinforce", Reinforce.Config, Reinforce,
    "REINFORCE policy gradient over per-decision categoricals, Zoph & Le 2017 / ENAS.",
)
STRATEGIES.register(
    "asha", ASHA.Config, ASHA,
    "Asynchronous successive halving / Hyperband over epochs (promotion from checkpoints or stopping), Li et al. 2020.",
)
STRATEGIES.register("tpe", TPE.Config, TPE, "Tree-structured Parzen Estimator via Optuna's TPESampler.")
STRATEGIES.register(
    "bananas", Bananas.Config, Bananas,
    "BANANAS: Bayesian optimisation with a neural-predictor ensemble, White et al. 2021.",
)
STRATEGIES.register(
    "pnas", PNAS.Config, PNAS,
    "Progressive predictor-ranked sampling (top K of a scored pool per round), Liu et al. 2018.",
)


def make_strategy(config: Any, space: SearchSpace, seed: int) -> Strategy:
    cls = STRATEGIES[config.type].factory
    return cls(space, config, np.random.default_rng(seed))


__all__ = ["Proposal", "Strategy", "TrialResult", "STRATEGIES", "make_strategy"]
