"""The DARTS space's supernet honours the supernet contract: a sub-network built by the space and
loaded with the inherited weights computes exactly the supernet's single path (train and eval
mode, images and sequences), the parameter count the API checks memory with is the real one, the
DARTS mixture reduces to the single path under one-hot weights, and ``derive`` follows DARTS'
genotype rule."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from spaces.darts import NONE, NUM_NODES, OPS, DARTSConfig, DARTSSpace, inputs_of, mixed_edge

torch = pytest.importorskip("torch")

# layers=4: a normal cell, two reduction cells, then a normal cell after a reduction.
SPACE = DARTSSpace(DARTSConfig(channels=4, layers=4, stem_multiplier=1))
SHAPES = [(1, 8, 8), (1, 40)]
CLASSES = 3
BATCH = 4

# Edge cases the random samples may miss: a node whose two edges are one supernet module (the
# same operation on the same input, strided in the reduction cell), a node of two none edges,
# and the strided skip_connect (FactorizedReduce).
SPECIAL = {
    "normal": [["sep_conv_3x3", 1], ["sep_conv_3x3", 1], [NONE, 0], [NONE, 0],
               ["dil_conv_3x3", 2], ["skip_connect", 3], ["avg_pool_3x3", 0], ["sep_conv_5x5", 4]],
    "reduce": [["sep_conv_5x5", 0], ["sep_conv_5x5", 0], ["skip_connect", 1], [NONE, 0],
               [NONE, 0], [NONE, 0], ["max_pool_3x3", 1], ["dil_conv_5x5", 4]],
}


def archs(seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [SPACE.sample(rng) for _ in range(6)] + [SPACE.validate(SPECIAL)]


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


@pytest.fixture(scope="module", params=SHAPES, ids=["image", "sequence"])
def supernet(request: pytest.FixtureRequest) -> Any:
    """A supernet whose weights and BatchNorm statistics are not their initial values: a
    mismatched key or a skipped module would show."""
    torch.manual_seed(0)
    net = SPACE.supernet(request.param, CLASSES)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
        net.train()
        for arch in archs(seed=1):
            net(torch.randn(BATCH, *request.param), arch)
    return net


def test_a_built_sub_network_with_inherited_weights_computes_the_single_path(supernet: Any) -> None:
    shape = supernet.input_shape
    for arch in archs():
        sub = SPACE.build(arch, shape, CLASSES)
        sub.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        x = torch.randn(BATCH, *shape)
        with torch.no_grad():
            supernet.eval()
            sub.eval()
            torch.testing.assert_close(sub(x), supernet(x, arch), atol=1e-5, rtol=0)
            supernet.train()
            sub.train()  # batch statistics: the same batch gives the same output
            torch.testing.assert_close(sub(x), supernet(x, arch), atol=1e-5, rtol=0)


def test_training_the_sub_network_leaves_the_supernet_as_it_was(supernet: Any) -> None:
    arch = SPACE.validate(SPECIAL)
    before = supernet.subnet_state_dict(arch)
    sub = SPACE.build(arch, supernet.input_shape, CLASSES)
    sub.load_state_dict(supernet.subnet_state_dict(arch))
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
    after = supernet.subnet_state_dict(arch)
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=0, rtol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=["image", "sequence"])
@pytest.mark.parametrize(
    "config",
    [dict(channels=4, layers=4, stem_multiplier=1), dict(channels=3, layers=5, stem_multiplier=2)],
    ids=["tiny", "odd-channels"],
)
def test_supernet_params_is_the_real_parameter_count(shape: tuple[int, ...], config: dict[str, int]) -> None:
    space = DARTSSpace(DARTSConfig(**config))
    real = sum(p.numel() for p in space.supernet(shape, CLASSES).parameters())
    assert space.supernet_params(shape, CLASSES) == real


def test_mixed_edges_are_node_major_and_input_minor() -> None:
    assert SPACE.mixed_edges() == {"normal": (14, OPS), "reduce": (14, OPS)}
    order = [mixed_edge(node, src) for node in range(NUM_NODES) for src in range(inputs_of(node))]
    assert order == list(range(14))


def test_one_hot_mixture_computes_the_single_path(supernet: Any) -> None:
    shape = supernet.input_shape
    for arch in distinct_input_archs(4, seed=2):
        x = torch.randn(BATCH, *shape)
        with torch.no_grad():
            for train in (False, True):
                supernet.train(train)
                torch.testing.assert_close(
                    supernet(x, mix=one_hot(arch)), supernet(x, SPACE.validate(arch)), atol=1e-5, rtol=0
                )


def test_skip_beta_adds_that_much_of_each_edges_skip_connect(supernet: Any) -> None:
    rng = torch.Generator().manual_seed(3)
    mix = {cell: torch.softmax(torch.randn(14, len(OPS), generator=rng), dim=1) for cell in ("normal", "reduce")}
    shifted = {cell: w.clone() for cell, w in mix.items()}
    for w in shifted.values():
        w[:, OPS.index("skip_connect")] += 0.7
    x = torch.randn(BATCH, *supernet.input_shape)
    supernet.eval()
    with torch.no_grad():
        with_beta = supernet(x, mix=mix, skip_beta=0.7)
        torch.testing.assert_close(with_beta, supernet(x, mix=shifted), atol=1e-5, rtol=0)
        assert not torch.allclose(with_beta, supernet(x, mix=mix), atol=1e-3)


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
