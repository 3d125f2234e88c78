"""The chain space's once-for-all supernet: every sub-network it runs is exactly the network the
space builds, once loaded with the weights the supernet hands out (images and sequences, eval and
train mode, BatchNorm statistics included), and the API's torch-free parameter count is the real one."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from spaces.chain import ChainConfig, ChainSpace

TINY = {"channels": [4, 8], "strides": [1, 2], "stem_channels": 4, "widths": [0.5, 1.0],
        "expansions": [1, 3], "kernels": [3, 5], "depths": [1, 2], "se": [False, True]}
CONFIGS = {"tiny": ChainConfig(**TINY), "head": ChainConfig(**TINY, head_channels=6)}
SHAPES = {"image": (1, 8, 8), "sequence": (1, 40)}
CLASSES = 3


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trained_supernet(space: ChainSpace, shape: tuple[int, ...]) -> Any:
    """A supernet whose weights and BatchNorm statistics are all non-trivial: perturbed weights,
    then a few train-mode forwards of random paths."""
    torch.manual_seed(0)
    supernet = space.supernet(shape, CLASSES)
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(0.2 * torch.randn_like(p))
    rng = np.random.default_rng(1)
    supernet.train()
    with torch.no_grad():
        for _ in range(4):
            supernet(torch.randn(4, *shape), space.sample(rng))
    return supernet


def paths(space: ChainSpace) -> list[Any]:
    """Six random architectures, and the smallest and largest (every first and every last option)."""
    rng = np.random.default_rng(2)
    sizes = [len(options) for _, options in space.decisions()]
    return [space.sample(rng) for _ in range(6)] + [
        space.from_choices([0] * len(sizes)), space.from_choices([n - 1 for n in sizes])
    ]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_sub_networks_are_the_built_networks(config: ChainConfig, shape: tuple[int, ...]) -> None:
    space = ChainSpace(config)
    supernet = trained_supernet(space, shape)
    for arch in paths(space):
        arch = space.validate(arch)
        net = space.build(arch, shape, CLASSES)
        net.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        x = torch.randn(5, *shape)
        with torch.no_grad():
            supernet.eval(), net.eval()
            torch.testing.assert_close(supernet(x, arch), net(x), atol=1e-5, rtol=0)
            supernet.train(), net.train()
            torch.testing.assert_close(supernet(x, arch), net(x), atol=1e-5, rtol=0)
        # The batch moved the supernet's statistics exactly as it moved the network's own.
        after = supernet.subnet_state_dict(arch)
        for key, value in net.state_dict().items():
            torch.testing.assert_close(after[key], value, atol=1e-6, rtol=0, msg=key)


def test_cumulative_batchnorm_statistics_match_too() -> None:
    """Momentum None (a cumulative average, as BN recalibration uses) counts batches alike."""
    space = ChainSpace(CONFIGS["head"])
    supernet = trained_supernet(space, SHAPES["image"])
    arch = paths(space)[-1]
    net = space.build(arch, SHAPES["image"], CLASSES)
    net.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
    for module in [*supernet.modules(), *net.modules()]:
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        for _ in range(2):
            x = torch.randn(4, *SHAPES["image"])
            torch.testing.assert_close(supernet(x, arch), net(x), atol=1e-5, rtol=0)
    after = supernet.subnet_state_dict(arch)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(after[key], value, atol=1e-6, rtol=0, msg=key)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_smaller_choices_share_the_centre_and_leading_weights(shape: tuple[int, ...]) -> None:
    """Once-for-all sharing: a smaller kernel is the centre of the largest (only along the
    sequence for 1-D inputs), a narrower stage the leading channels of the widest."""
    space = ChainSpace(CONFIGS["tiny"])
    supernet = trained_supernet(space, shape)
    large = space.validate([{"depth": 2, "kernel": 5, "expand": 3, "width": 1.0, "se": True}] * 2)
    small = [{**stage, "kernel": 3, "width": 0.5} for stage in large]
    big, little = supernet.subnet_state_dict(large), supernet.subnet_state_dict(small)
    # Stage 0's second block: 4 channels (2 at width 0.5) expanded 3 times; body = expansion conv,
    # BN, ReLU, depthwise, BN, ReLU, squeeze-excite, projection, BN.
    block = "features.4.body"
    assert torch.equal(little[f"{block}.0.weight"], big[f"{block}.0.weight"][:6, :2])
    depthwise = big[f"{block}.3.weight"][:6]
    centre = depthwise[:, :, 1:4, 1:4] if len(shape) == 3 else depthwise[:, :, :, 1:4]
    assert torch.equal(little[f"{block}.3.weight"], centre)
    assert torch.equal(little[f"{block}.6.reduce.weight"], big[f"{block}.6.reduce.weight"][:1, :6])
    assert torch.equal(little[f"{block}.7.weight"], big[f"{block}.7.weight"][:2, :6])
    assert torch.equal(little[f"{block}.8.running_var"], big[f"{block}.8.running_var"][:2])


def test_training_a_sub_network_leaves_the_supernet_alone() -> None:
    space = ChainSpace(CONFIGS["tiny"])
    supernet = trained_supernet(space, SHAPES["image"])
    arch = paths(space)[-1]
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    net = space.build(arch, SHAPES["image"], CLASSES)
    net.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(torch.randn(4, *SHAPES["image"])).sum().backward()
    optimizer.step()
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize(
    "config", [*CONFIGS.values(), ChainConfig(), ChainConfig(expansions=[1], se=[False], head_channels=1280)],
    ids=["tiny", "head", "mnasnet-defaults", "no-expansion-no-se"],
)
def test_supernet_params_counts_without_torch(config: ChainConfig, shape: tuple[int, ...]) -> None:
    space = ChainSpace(config)
    with torch.device("meta"):  # sizes only: the default space's supernet is millions of weights
        supernet = space.supernet(shape, 10)
    assert space.supernet_params(shape, 10) == sum(p.numel() for p in supernet.parameters())
