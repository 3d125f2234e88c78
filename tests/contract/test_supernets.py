"""Contract every space's weight-sharing supernet must honour (one-shot NAS).

A sub-network scored with inherited weights must be exactly the network the space builds and the
retrain phase trains: ``space.build(arch)`` loaded with ``supernet.subnet_state_dict(arch)``
computes what ``supernet(x, arch)`` computes, and training the path moves the supernet's BatchNorm
statistics as it moves the network's (momentum 0.1, and momentum None as BN recalibration uses). A
space joins these tests with one line in ``SUPERNETS`` (and in ``MIXED`` when DARTS can search it);
what is particular to one space is in ``test_supernets_<space>.py`` or at the end of this file.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import pytest

from spaces import SPACES, SearchSpace
from spaces.nb201 import EDGES, OPS, NB201Space
from tests.contract.test_spaces import SMALL

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Supernet(NamedTuple):
    space: str
    config: dict[str, Any]  # small enough for two CPU cores
    shapes: list[tuple[int, ...]]  # input shapes the space takes
    id: str = ""  # when a space is here with more than one config
    edge_cases: tuple[Any, ...] = ()  # architectures the random samples and the extremes may miss

    @property
    def name(self) -> str:
        return self.id or self.space


IMAGE, SEQUENCE = (1, 8, 8), (1, 40)
# layers=4: a normal cell, two reduction cells, then a normal cell after a reduction.
DARTS = {"channels": 4, "layers": 4, "stem_multiplier": 1}
CHAIN = {"channels": [4, 8], "strides": [1, 2], "stem_channels": 4, "widths": [0.5, 1.0],
         "expansions": [1, 3], "kernels": [3, 5], "depths": [1, 2], "se": [False, True]}
# DARTS: the strided skip_connect (FactorizedReduce), next to a node whose two edges are one module
# (the same operation on the same input, strided in the reduction cell) and a node of two none edges.
DARTS_SPECIAL = {
    "normal": [["sep_conv_3x3", 1], ["sep_conv_3x3", 1], ["none", 0], ["none", 0],
               ["dil_conv_3x3", 2], ["skip_connect", 3], ["avg_pool_3x3", 0], ["sep_conv_5x5", 4]],
    "reduce": [["sep_conv_5x5", 0], ["sep_conv_5x5", 0], ["skip_connect", 1], ["none", 0],
               ["none", 0], ["none", 0], ["max_pool_3x3", 1], ["dil_conv_5x5", 4]],
}
SUPERNETS: list[Supernet] = [
    Supernet("nb201", SMALL["nb201"], [IMAGE, SEQUENCE]),
    Supernet("conv1d", SMALL["conv1d"], [IMAGE, SEQUENCE, (4, 40)]),  # 4 channels in: layer 0 may keep the width
    Supernet("darts", DARTS, [IMAGE, SEQUENCE], edge_cases=(DARTS_SPECIAL,)),
    Supernet("chain", CHAIN, [IMAGE, SEQUENCE]),
    Supernet("chain", {**CHAIN, "head_channels": 6}, [IMAGE, SEQUENCE], id="chain-head"),
]
MIXED: list[str] = ["nb201", "darts"]  # spaces DARTS can search: mixed_edges, derive and forward(mix=...)
CLASSES, BATCH, ARCHS = 5, 4, 6

CASES = [(s, shape) for s in SUPERNETS for shape in s.shapes]
CASE_IDS = [f"{s.name}-{'x'.join(map(str, shape))}" for s, shape in CASES]


def make(name: str, config: dict[str, Any]) -> SearchSpace:
    entry = SPACES[name]
    return entry.factory(entry.config(**config))


def mixed_space(name: str) -> SearchSpace:
    return make(name, next(s.config for s in SUPERNETS if s.space == name))


def random_mix(space: SearchSpace) -> dict[str, Any]:
    return {kind: torch.randn(edges, len(ops)).softmax(-1) for kind, (edges, ops) in space.mixed_edges().items()}


def trained_supernet(space: SearchSpace, shape: tuple[int, ...]) -> Any:
    """A supernet whose weights and BatchNorm statistics are nowhere at their initial values, so that
    any weight taken from the wrong place shows."""
    supernet = space.supernet(shape, CLASSES)
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(0.3 * torch.randn_like(p))
    supernet.train()
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for _ in range(4):
            supernet(torch.randn(BATCH, *shape), space.validate(space.sample(rng)))
    return supernet


def paths(space: SearchSpace, case: Supernet) -> list[Any]:
    """Random architectures, the smallest and the largest (every decision's first option, then every
    one's last), and the space's edge cases."""
    rng = np.random.default_rng(0)
    sizes = [len(options) for _, options in space.decisions()]
    extremes = [space.from_choices([0] * len(sizes)), space.from_choices([n - 1 for n in sizes])]
    return [space.validate(arch) for arch in [*(space.sample(rng) for _ in range(ARCHS)), *extremes, *case.edge_cases]]


@contextmanager
def cumulative_batchnorm(*nets: Any) -> Iterator[None]:
    """BatchNorm statistics as the cumulative average of the batches (momentum None), as BN
    recalibration keeps them; the momentum put back afterwards."""
    norms = [m for net in nets for m in net.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    before = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None
    try:
        yield
    finally:
        for m, momentum in zip(norms, before):
            m.momentum = momentum


@pytest.mark.parametrize(("case", "shape"), CASES, ids=CASE_IDS)
def test_a_subnetwork_with_inherited_weights_is_the_supernets_path(case: Supernet, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    space = make(case.space, case.config)
    supernet = trained_supernet(space, shape)
    assert space.supernet_params(shape, CLASSES) == sum(p.numel() for p in supernet.parameters())
    x = torch.randn(BATCH, *shape)
    for arch in paths(space, case):
        net = space.build(arch, shape, CLASSES)
        net.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        with torch.no_grad():
            for train in (False, True):  # eval: running statistics; train: the batch's
                net.train(train)
                supernet.train(train)
                torch.testing.assert_close(net(x), supernet(x, arch), atol=1e-5, rtol=1e-5)
            with cumulative_batchnorm(net, supernet):
                torch.testing.assert_close(net(-x), supernet(-x, arch), atol=1e-5, rtol=1e-5)
        # Training the path moved the supernet's BatchNorm statistics as it moved the network's.
        inherited = supernet.subnet_state_dict(arch)
        for key, value in net.state_dict().items():
            torch.testing.assert_close(value, inherited[key], atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.parametrize("case", SUPERNETS, ids=[s.name for s in SUPERNETS])
def test_inherited_weights_are_copies(case: Supernet) -> None:
    space = make(case.space, case.config)
    supernet = space.supernet(SEQUENCE, CLASSES)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    arch = space.validate(space.sample(np.random.default_rng(2)))
    for value in supernet.subnet_state_dict(arch).values():
        value.add_(1)
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", MIXED)
def test_the_mixture_takes_the_shape_mixed_edges_gives(name: str) -> None:
    space = mixed_space(name)
    supernet = space.supernet(IMAGE, CLASSES)
    out = supernet(torch.randn(BATCH, *IMAGE), mix=random_mix(space))
    assert out.shape == (BATCH, CLASSES)
    out.sum().backward()
    assert all(p.grad is not None for p in supernet.parameters())  # every operation is in the mixture
    wrong = {kind: w[:, 1:] for kind, w in random_mix(space).items()}
    edges, ops = next(iter(space.mixed_edges().values()))
    with pytest.raises(ValueError, match=re.escape(f"({edges}, {len(ops)})")):  # names the shape it takes
        supernet(torch.randn(BATCH, *IMAGE), mix=wrong)


@pytest.mark.parametrize("name", MIXED)
def test_the_auxiliary_skip_adds_to_the_skip_connection(name: str) -> None:
    """DARTS-: skip_beta * skip(x) on every edge is the same as beta more weight on skip_connect."""
    torch.manual_seed(0)
    space = mixed_space(name)
    supernet = space.supernet(IMAGE, CLASSES).eval()
    mix, beta = random_mix(space), 0.7
    shifted = {kind: w.clone() for kind, w in mix.items()}
    for kind, (_, ops) in space.mixed_edges().items():
        shifted[kind][:, ops.index("skip_connect")] += beta
    x = torch.randn(BATCH, *IMAGE)
    with torch.no_grad():
        torch.testing.assert_close(supernet(x, mix=mix, skip_beta=beta), supernet(x, mix=shifted))
        assert not torch.allclose(supernet(x, mix=mix, skip_beta=beta), supernet(x, mix=mix))


# -- NAS-Bench-201 specifics -------------------------------------------------------------------

def test_nb201_a_one_hot_mixture_is_its_path() -> None:
    torch.manual_seed(0)
    space = NB201Space(SPACES["nb201"].config(**SMALL["nb201"]))
    supernet = trained_supernet(space, IMAGE).eval()
    x = torch.randn(BATCH, *IMAGE)
    rng = np.random.default_rng(3)
    for _ in range(ARCHS):
        arch = space.sample(rng)
        one_hot = torch.zeros(len(EDGES), len(OPS))
        one_hot[range(len(EDGES)), [OPS.index(op) for op in arch]] = 1
        with torch.no_grad():
            torch.testing.assert_close(supernet(x, mix={"cell": one_hot}), supernet(x, arch))


def test_nb201_derive_takes_each_edges_strongest_operation() -> None:
    space = NB201Space()
    assert space.mixed_edges() == {"cell": (len(EDGES), OPS)}
    rng = np.random.default_rng(0)
    for _ in range(10):
        weights = rng.random((len(EDGES), len(OPS))).tolist()
        assert space.derive({"cell": weights}) == [OPS[int(np.argmax(row))] for row in weights]
    none_wins = [[0.5, 0.1, 0.1, 0.2, 0.1]] * len(EDGES)  # none counts, as NAS-Bench-201 derives
    assert space.derive({"cell": none_wins}) == ["none"] * len(EDGES)
    assert space.derive({"cell": [[0.3, 0.3, 0.2, 0.1, 0.1]] * len(EDGES)}) == ["none"] * len(EDGES)
    for bad in ({"cell": none_wins[:5]}, {"normal": none_wins}, {"cell": [row[:4] for row in none_wins]}):
        with pytest.raises(ValueError, match="6 rows"):
            space.derive(bad)


# -- conv1d specifics --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ({}, (3, 40)),  # the defaults
        ({"max_layers": 3, "channels": [4]}, (4, 40)),  # one width that the input has: no 1x1 shortcut
        ({"max_layers": 3, "channels": [4]}, (1, 40)),  # only the first layer changes the width
        ({"max_layers": 3, "channels": [4, 8], "skips": [False]}, (1, 8, 8)),  # no shortcut at all
    ],
)
def test_conv1d_supernet_params(config: dict[str, Any], shape: tuple[int, ...]) -> None:
    space = make("conv1d", config)
    supernet = space.supernet(shape, CLASSES)
    assert space.supernet_params(shape, CLASSES) == sum(p.numel() for p in supernet.parameters())


def test_conv1d_networks_are_slices_of_the_largest() -> None:
    """Once-for-all: a kernel is the centre of the largest, a width the first channels, and the
    dilation shares the weights."""
    space = make("conv1d", {"max_layers": 2, "kernels": [3, 9], "channels": [4, 8], "dilations": [1, 4]})
    supernet = space.supernet(SEQUENCE, CLASSES)
    layer = {"pool": "none", "skip": False}
    small = [{**layer, "kernel": 3, "channels": 4, "dilation": 1}] * 2
    dilated = [{**layer, "kernel": 3, "channels": 4, "dilation": 4}] * 2
    state, largest = supernet.subnet_state_dict(small), supernet.state_dict()
    assert torch.equal(state["features.1.conv.weight"], largest["features.1.conv.weight"][:4, :4, 3:6])
    assert torch.equal(state["classifier.weight"], largest["classifier.weight"][:, :4])
    assert all(torch.equal(v, supernet.subnet_state_dict(dilated)[k]) for k, v in state.items())
