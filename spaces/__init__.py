"""Search spaces, collected in ``SPACES`` (name → config model and constructor)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scion.registry import Registry
from spaces.base import Arch, InvalidArchitecture, SearchSpace
from spaces.chain import ChainConfig, ChainSpace
from spaces.conv1d import Conv1DConfig, Conv1DSpace
from spaces.darts import DARTSConfig, DARTSSpace
from spaces.declared import DeclaredSpace
from spaces.declared_config import DeclaredConfig
from spaces.nb201 import NB201Config, NB201Space

SPACES: Registry[Callable[[Any], SearchSpace]] = Registry("space")
SPACES.register("nb201", NB201Config, NB201Space, "NAS-Bench-201 cell: 6 edges, 5 operations, 15,625 cells.")
SPACES.register(
    "darts", DARTSConfig, DARTSSpace,
    "DARTS normal + reduction cells: 4 nodes x 2 inputs, 8 operations, ~7.7e19 networks.",
)
SPACES.register(
    "chain", ChainConfig, ChainSpace,
    "MnasNet-style stages of inverted residuals: depth, kernel, expansion, width, SE per stage.",
)
SPACES.register(
    "conv1d", Conv1DConfig, Conv1DSpace,
    "1-D CNN for sequences: depth, then kernel, channels, dilation, pooling, skip per layer.",
)
SPACES.register(
    "declared", DeclaredConfig, DeclaredSpace,
    "Declared in the job spec: ordered layer choices from an operation vocabulary (linear, conv1d/conv2d, pooling, "
    "batchnorm, dropout, activations, identity), optional conditions, and hyperparameters searched jointly.",
)


def make_space(config: Any) -> SearchSpace:
    return SPACES[config.type].factory(config)


__all__ = ["Arch", "InvalidArchitecture", "SearchSpace", "SPACES", "make_space"]
