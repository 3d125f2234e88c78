"""Contract every space's weight-sharing supernet must honour (one-shot NAS).

A sub-network scored with inherited weights must be exactly the network the space builds and the
retrain phase trains: ``space.build(arch)`` loaded with ``supernet.subnet_state_dict(arch)``
computes what ``supernet(x, arch)`` computes. A space joins these tests with one line in
``SUPERNETS`` (and in ``MIXED`` when DARTS can search it).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from spaces import SPACES, SearchSpace
from spaces.nb201 import EDGES, OPS, NB201Space
from tests.contract.test_spaces import SMALL

torch = pytest.importorskip("torch")

IMAGE, SEQUENCE = (1, 8, 8), (1, 40)
# (space, small config, input shapes the space takes)
SUPERNETS: list[tuple[str, dict[str, Any], list[tuple[int, ...]]]] = [
    ("nb201", SMALL["nb201"], [IMAGE, SEQUENCE]),
]
MIXED: list[str] = ["nb201"]  # spaces DARTS can search: mixed_edges, derive and forward(mix=...)
CLASSES, BATCH, ARCHS = 5, 4, 6

CASES = [(name, config, shape) for name, config, shapes in SUPERNETS for shape in shapes]
CASE_IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, _, shape in CASES]


def make(name: str, config: dict[str, Any]) -> SearchSpace:
    entry = SPACES[name]
    return entry.factory(entry.config(**config))


def mixed_space(name: str) -> SearchSpace:
    return make(name, next(config for n, config, _ in SUPERNETS if n == name))


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


@pytest.mark.parametrize(("name", "config", "shape"), CASES, ids=CASE_IDS)
def test_a_subnetwork_with_inherited_weights_is_the_supernets_path(
    name: str, config: dict[str, Any], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    space = make(name, config)
    supernet = trained_supernet(space, shape)
    assert space.supernet_params(shape, CLASSES) == sum(p.numel() for p in supernet.parameters())
    rng = np.random.default_rng(0)
    x = torch.randn(BATCH, *shape)
    for _ in range(ARCHS):
        arch = space.validate(space.sample(rng))
        net = space.build(arch, shape, CLASSES)
        net.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        with torch.no_grad():
            for train in (False, True):  # eval: running statistics; train: the batch's
                net.train(train)
                supernet.train(train)
                torch.testing.assert_close(net(x), supernet(x, arch), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "config"), [(n, c) for n, c, _ in SUPERNETS], ids=[n for n, _, _ in SUPERNETS])
def test_inherited_weights_are_copies(name: str, config: dict[str, Any]) -> None:
    space = make(name, config)
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
    with pytest.raises(ValueError, match="shape"):
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
