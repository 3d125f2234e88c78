"""What is particular to the DARTS space's supernet, beyond the contract every supernet honours
(``test_supernets.py``): the order of the mixed edges, a one-hot mixture being the single path,
``derive`` following DARTS' genotype rule, and the parameter count of an odd configuration."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from spaces.darts import NONE, NUM_NODES, OPS, DARTSConfig, DARTSSpace, inputs_of, mixed_edge
from tests.contract.test_supernets import BATCH, CLASSES, DARTS, IMAGE, SEQUENCE, trained_supernet

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = DARTSSpace(DARTSConfig(**DARTS))


def distinct_input_archs(n: int, seed: int, with_none: bool = True) -> list[dict[str, list[list[Any]]]]:
    """Architectures whose nodes read two different inputs (what one mixed edge per input can
    express)."""
    rng = np.random.default_rng(seed)
    ops = OPS if with_none else tuple(op for op in OPS if op != NONE)
    out = []
    for _ in range(n):
        arch = {}
        for cell in ("normal", "reduce"):
            pairs = []
            for node in range(NUM_NODES):
                for src in rng.choice(inputs_of(node), size=2, replace=False):
                    pairs.append([ops[int(rng.integers(len(ops)))], int(src)])
            arch[cell] = pairs
        out.append(arch)
    return out


def one_hot(arch: dict[str, list[list[Any]]]) -> dict[str, Any]:
    """Per cell, weight 1 on each chosen (input, operation) edge and on ``none`` elsewhere."""
    out = {}
    for cell, pairs in arch.items():
        weights = torch.zeros(14, len(OPS))
        weights[:, OPS.index(NONE)] = 1.0
        for index, (op, src) in enumerate(pairs):
            edge = mixed_edge(index // 2, src)
            weights[edge] = 0.0
            weights[edge, OPS.index(op)] = 1.0
        out[cell] = weights
    return out


@pytest.mark.parametrize("shape", [IMAGE, SEQUENCE], ids=["image", "sequence"])
def test_one_hot_mixture_computes_the_single_path(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    supernet = trained_supernet(SPACE, shape)
    for arch in distinct_input_archs(4, seed=2):
        x = torch.randn(BATCH, *shape)
        with torch.no_grad():
            for train in (False, True):
                supernet.train(train)
                torch.testing.assert_close(
                    supernet(x, mix=one_hot(arch)), supernet(x, SPACE.validate(arch)), atol=1e-5, rtol=0
                )


@pytest.mark.parametrize("shape", [IMAGE, SEQUENCE], ids=["image", "sequence"])
def test_supernet_params_of_odd_channels_and_stem(shape: tuple[int, ...]) -> None:
    space = DARTSSpace(DARTSConfig(channels=3, layers=5, stem_multiplier=2))
    real = sum(p.numel() for p in space.supernet(shape, CLASSES).parameters())
    assert space.supernet_params(shape, CLASSES) == real


def test_mixed_edges_are_node_major_and_input_minor() -> None:
    assert SPACE.mixed_edges() == {"normal": (14, OPS), "reduce": (14, OPS)}
    order = [mixed_edge(node, src) for node in range(NUM_NODES) for src in range(inputs_of(node))]
    assert order == list(range(14))


def test_derive_takes_each_nodes_two_strongest_inputs_by_their_strongest_live_operation() -> None:
    weights = {cell: [[0.0] * len(OPS) for _ in range(14)] for cell in ("normal", "reduce")}
    for cell in weights:
        for node in range(NUM_NODES):  # a plain default: inputs 0 and 1 with sep_conv_3x3
            for src, weight in ((0, 0.2), (1, 0.1)):
                weights[cell][mixed_edge(node, src)][OPS.index("sep_conv_3x3")] = weight
    node5 = weights["normal"]
    for src in range(5):  # none outweighs everything, and is ignored
        node5[mixed_edge(3, src)][OPS.index(NONE)] = 0.9
    node5[mixed_edge(3, 3)][OPS.index("dil_conv_5x5")] = 0.5
    node5[mixed_edge(3, 3)][OPS.index("max_pool_3x3")] = 0.45  # second best on input 3: not taken
    node5[mixed_edge(3, 4)][OPS.index("skip_connect")] = 0.45  # beats input 0 (0.2)
    node5[mixed_edge(3, 2)][OPS.index("avg_pool_3x3")] = 0.3
    node5[mixed_edge(3, 2)][OPS.index("sep_conv_5x5")] = 0.3  # equal weights: the earlier op
    derived = SPACE.derive(weights)
    plain = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * NUM_NODES
    assert derived == SPACE.validate({
        "normal": plain[:6] + [["dil_conv_5x5", 3], ["skip_connect", 4]],
        "reduce": plain,
    })
    node5[mixed_edge(3, 4)][OPS.index("skip_connect")] = 0.25  # now input 2 (0.3) is second
    assert SPACE.derive(weights)["normal"][6:] == [["avg_pool_3x3", 2], ["dil_conv_5x5", 3]]


def test_derive_gives_back_the_architecture_of_one_hot_weights() -> None:
    for arch in distinct_input_archs(5, seed=4, with_none=False):
        weights = {cell: w.tolist() for cell, w in one_hot(arch).items()}
        assert SPACE.derive(weights) == SPACE.validate(arch)


def test_derive_never_picks_none_or_one_input_twice() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        weights = {cell: rng.dirichlet(np.ones(len(OPS)), size=14).tolist() for cell in ("normal", "reduce")}
        derived = SPACE.derive(weights)
        assert derived == SPACE.validate(derived)
        for pairs in derived.values():
            assert all(op != NONE for op, _ in pairs)
            assert all(pairs[2 * node][1] != pairs[2 * node + 1][1] for node in range(NUM_NODES))


def test_derive_refuses_weights_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="14 rows of 8"):
        SPACE.derive({"normal": [[0.1] * 8] * 14, "reduce": [[0.1] * 8] * 13})
