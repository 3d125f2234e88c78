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
from scion.components import STRATEGIES
from spaces.base import SearchSpace

STRATEGIES.implement("random", RandomSearch)
STRATEGIES.implement("evolution", RegularizedEvolution)
STRATEGIES.implement("nsga2", NSGA2)

STRATEGIES.implement("grid", GridSearch)
STRATEGIES.implement("local_search", LocalSearch)
STRATEGIES.implement("reinforce", Reinforce)
STRATEGIES.implement("asha", ASHA)
STRATEGIES.implement("tpe", TPE)
STRATEGIES.implement("bananas", Bananas)
STRATEGIES.implement("pnas", PNAS)


def make_strategy(config: Any, space: SearchSpace, seed: int) -> Strategy:
    cls = STRATEGIES[config.type].factory
    return cls(space, config, np.random.default_rng(seed))


__all__ = ["Proposal", "Strategy", "TrialResult", "STRATEGIES", "make_strategy"]
