"""Contract of the spaces' cost counts, which the API checks against the server's limits without
torch (``scion.budgets``): for random networks and for the largest one, ``space.costs(arch)`` is
what the built network costs, and ``space.largest_costs`` is the most any network of the space
costs.

- parameters: exactly torch's count;
- FLOPs: exactly what the worker measures (torch's FlopCounterMode, a multiply-add 2 FLOPs);
- activations: the elements of every layer's output, per example; the test compares them with
  what training really keeps for the backward pass (the tensors autograd saves, parameters left
  out), which must lie within ``ACTIVATION_FACTOR`` of the count either way.

The largest costs are each the maximum over the space's networks: equal to a brute-force maximum
over every network of a small space, or, where there are too many, at least every sampled
network's and equal to the largest network's (every choice at its biggest option).
"""
from __future__ import annotations

import math
from itertools import product
from typing import Any, NamedTuple

import numpy as np
import pytest

from scion.space import Costs, largest_costs, network_costs
from spaces import SPACES, SearchSpace
from tests.contract.test_spaces import SMALL

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ACTIVATION_FACTOR = 3.0
IMAGE, SEQUENCE, FLAT = (3, 9, 7), (2, 11), (5,)
CLASSES = 4


def make(name: str, config: dict[str, Any]) -> SearchSpace:
    entry = SPACES[name]
    return entry.factory(entry.config(**config))


def measured(space: SearchSpace, arch: Any, shape: tuple[int, ...]) -> tuple[Costs, int]:
    """(parameters and FLOPs as torch counts them, with the activations autograd saves per
    example, in elements of 4 bytes; the estimated activations are not measured here)."""
    from worker.training.cost import count_flops, count_params

    model = space.build(arch, shape, CLASSES)
    params = count_params(model)
    flops = count_flops(model, shape)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: Any) -> Any:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    batch = 2
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(batch, *shape))
    return Costs(params, flops), sum(saved.values()) // 4 // batch


def assert_counts(space: SearchSpace, arch: Any, shape: tuple[int, ...]) -> Costs:
    counted = network_costs(space, arch, shape, CLASSES)
    truth, kept = measured(space, arch, shape)
    assert (counted.params, counted.flops) == (truth.params, truth.flops), space.key(arch)
    assert kept / ACTIVATION_FACTOR <= counted.activations <= kept * ACTIVATION_FACTOR, (counted, kept)
    return counted


CONV_IMAGE = {"hyperparameters": {}, "layers": [
    {"name": "conv", "ops": [{"op": "conv2d", "channels": [4, 8], "kernel": [1, 3], "stride": [1, 2]}]},
    {"name": "norm", "ops": ["identity", "batchnorm"]},
    {"name": "act", "ops": ["relu", "gelu", "tanh"]},
    {"name": "pool", "ops": ["identity", {"op": "max_pool", "kernel": 2}, {"op": "avg_pool", "kernel": 2}]},
    {"name": "head", "ops": ["flatten", "global_avg_pool"]},
    {"name": "hidden", "ops": [{"op": "dense", "units": [6, 12]}, "skip"]},
    {"name": "act2", "ops": ["relu", "silu"], "when": {"hidden": ["linear"]}},
    {"name": "drop", "ops": ["identity", {"op": "dropout", "p": 0.1}]},
]}
CONV_SEQUENCE = {"hyperparameters": {}, "layers": [
    {"name": "conv", "ops": [{"op": "conv1d", "channels": [4, 8], "kernel": [1, 5], "dilation": [1, 2]}]},
    {"name": "act", "ops": ["relu", "elu"]},
    {"name": "conv2", "ops": [{"op": "conv1d", "channels": 6, "stride": [1, 2]}, "identity"]},
    {"name": "head", "ops": ["flatten", "global_avg_pool"]},
]}
DENSE = {"hyperparameters": {}, "layers": [
    {"name": "h1", "ops": [{"op": "linear", "units": [8, 16]}]},
    {"name": "act", "ops": ["relu", "sigmoid", "leaky_relu"]},
    {"name": "h2", "ops": [{"op": "linear", "units": [3, 9]}, "identity"]},
]}
# The widest layer is not the costliest: 6 -> 5 -> 6 pays two 1x1 shortcuts, 6 -> 6 -> 6 none.
CONV1D_SHORTCUTS = {"min_layers": 1, "max_layers": 3, "channels": [6, 5], "kernels": [1], "dilations": [1],
                    "pools": ["none", "avg"], "skips": [True, False]}
CHAIN = {**SMALL["chain"], "head_channels": 6, "widths": [0.5, 1.0]}


class Case(NamedTuple):
    name: str
    config: dict[str, Any]
    shapes: list[tuple[int, ...]]
    largest: Any = None  # the network that costs most of all three, where the space is too big to try every one
    id: str = ""


CASES = [
    Case("nb201", SMALL["nb201"], [IMAGE, SEQUENCE], ["nor_conv_3x3"] * 6),
    Case("darts", {"channels": 4, "layers": 4, "stem_multiplier": 1}, [IMAGE, SEQUENCE],
         {cell: [["sep_conv_5x5", 0]] * 8 for cell in ("normal", "reduce")}),
    Case("chain", CHAIN, [IMAGE, SEQUENCE], [{"depth": 2, "kernel": 7, "expand": 6, "width": 1.0, "se": True}] * 3),
    Case("conv1d", SMALL["conv1d"], [IMAGE, (4, 40)]),  # no one network costs most of all three: samples only
    Case("conv1d", CONV1D_SHORTCUTS, [(6, 10)], id="conv1d-shortcuts"),
    Case("declared", CONV_IMAGE, [IMAGE], id="declared-image"),
    Case("declared", CONV_SEQUENCE, [SEQUENCE], id="declared-sequence"),
    Case("declared", DENSE, [FLAT], id="declared-flat"),
]
IDS = [case.id or case.name for case in CASES]


def every_network(space: SearchSpace) -> list[Any]:
    """Every network of a small space, through its decisions (repeats included)."""
    options = [range(len(values)) for _, values in space.decisions()]
    return [space.from_choices(list(choices)) for choices in product(*options)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_counts_match_the_built_network(case: Case) -> None:
    space = make(case.name, case.config)
    rng = np.random.default_rng(0)
    for shape in case.shapes:
        for _ in range(4):
            assert_counts(space, space.sample(rng), shape)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_largest_costs_are_the_most_any_network_costs(case: Case) -> None:
    space = make(case.name, case.config)
    for shape in case.shapes:
        largest = largest_costs(space, shape, CLASSES)
        assert set(largest.shrink) == {"params", "flops", "activations"}
        rng = np.random.default_rng(1)
        for _ in range(30):
            counted = network_costs(space, space.sample(rng), shape, CLASSES)
            assert counted.most(largest.costs) == largest.costs, counted
        if case.largest is not None:
            assert assert_counts(space, case.largest, shape) == largest.costs
        elif math.prod(len(values) for _, values in space.decisions()) <= 5000:  # try every network
            most = Costs()
            for arch in every_network(space):
                most = most.most(network_costs(space, arch, shape, CLASSES))
            assert largest.costs == most
