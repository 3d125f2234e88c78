"""The component registries: every space, strategy, evaluator and dataset a job may name, with
its config and a one-line summary. The job spec's tagged unions and the API's catalogue come from
here; the packages that implement the components fill in ``factory`` (``Registry.implement``) when
imported, so the core never imports them."""
from __future__ import annotations

from typing import Any

from scion.configs.datasets import DATASETS
from scion.configs.declared import DeclaredConfig
from scion.configs.evaluators import ProxyConfig, TabularConfig, TrainConfig
from scion.configs.spaces import ChainConfig, Conv1DConfig, DARTSConfig, NB201Config
from scion.configs.strategies import (
    ASHAConfig,
    BananasConfig,
    EvolutionConfig,
    GridConfig,
    LocalSearchConfig,
    NSGA2Config,
    PNASConfig,
    RandomSearchConfig,
    ReinforceConfig,
    TPEConfig,
)
from scion.registry import Registry

SPACES: Registry[Any] = Registry("space")
STRATEGIES: Registry[Any] = Registry("strategy")
EVALUATORS: Registry[Any] = Registry("evaluator")
SPACES.register(
    "nb201", NB201Config,
    "NAS-Bench-201 cell: 6 edges, 5 operations, 15,625 cells.",
)
SPACES.register(
    "darts", DARTSConfig,
    "DARTS normal + reduction cells: 4 nodes x 2 inputs, 8 operations, ~7.7e19 networks.",
)
SPACES.register(
    "chain", ChainConfig,
    "MnasNet-style stages of inverted residuals: depth, kernel, expansion, width, SE per stage.",
)
SPACES.register(
    "conv1d", Conv1DConfig,
    "1-D CNN for sequences: depth, then kernel, channels, dilation, pooling, skip per layer.",
)
SPACES.register(
    "declared", DeclaredConfig,
    "Declared in the job spec: ordered layer choices from an operation vocabulary (linear, conv1d/conv2d, pooling, "
    "batchnorm, dropout, activations, identity), optional conditions, and hyperparameters searched jointly.",
)

STRATEGIES.register(
    "random", RandomSearchConfig,
    "Uniform random sampling without repeats.",
)
STRATEGIES.register(
    "evolution", EvolutionConfig,
    "Regularized (aging) evolution, Real et al. 2019.",
)
STRATEGIES.register(
    "nsga2", NSGA2Config,
    "Multi-objective NSGA-II evolution (Pareto fronts), Deb et al. 2002.",
)
STRATEGIES.register(
    "grid", GridConfig,
    "Exhaustive enumeration of a finite space, seeded shuffled order.",
)
STRATEGIES.register(
    "local_search", LocalSearchConfig,
    "Hill climbing over neighbours with random restarts, White et al. 2021.",
)
STRATEGIES.register(
    "reinforce", ReinforceConfig,
    "REINFORCE policy gradient over per-decision categoricals, Zoph & Le 2017 / ENAS.",
)
STRATEGIES.register(
    "asha", ASHAConfig,
    "Asynchronous successive halving / Hyperband over epochs (promotion from checkpoints or stopping), Li et al. 2020.",
)
STRATEGIES.register(
    "tpe", TPEConfig,
    "Tree-structured Parzen Estimator via Optuna's TPESampler.",
)
STRATEGIES.register(
    "bananas", BananasConfig,
    "BANANAS: Bayesian optimisation with a neural-predictor ensemble, White et al. 2021.",
)
STRATEGIES.register(
    "pnas", PNASConfig,
    "Progressive predictor-ranked sampling (top K of a scored pool per round), Liu et al. 2018.",
)

EVALUATORS.register(
    "train", TrainConfig,
    "Train each candidate briefly on a built-in dataset; accuracy, size, FLOPs and latency.",
)
EVALUATORS.register(
    "proxy", ProxyConfig,
    "Score untrained candidates with zero-cost proxies (NASWOT, synflow, grad_norm, jacob_cov): "
    "a fraction of a second each.",
)
EVALUATORS.register(
    "tabular", TabularConfig,
    "Look NAS-Bench-201 cells up in a results table: seconds per search, on a CPU.",
)

__all__ = ["DATASETS", "EVALUATORS", "SPACES", "STRATEGIES"]
