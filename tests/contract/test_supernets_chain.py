"""What is particular to the chain space's once-for-all supernet, beyond the contract every
supernet honours (``test_supernets.py``): smaller choices share the centre and leading weights of
the largest, and the torch-free parameter count holds for the space's default and extreme configs."""
from __future__ import annotations

import pytest

from spaces.chain import ChainConfig, ChainSpace
from tests.contract.test_supernets import CHAIN, IMAGE, SEQUENCE, trained_supernet

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape", [IMAGE, SEQUENCE], ids=["image", "sequence"])
def test_smaller_choices_share_the_centre_and_leading_weights(shape: tuple[int, ...]) -> None:
    """Once-for-all sharing: a smaller kernel is the centre of the largest (only along the
    sequence for 1-D inputs), a narrower stage the leading channels of the widest."""
    torch.manual_seed(0)
    space = ChainSpace(ChainConfig(**CHAIN))
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


@pytest.mark.parametrize("shape", [IMAGE, SEQUENCE], ids=["image", "sequence"])
@pytest.mark.parametrize(
    "config", [ChainConfig(), ChainConfig(expansions=[1], se=[False], head_channels=1280)],
    ids=["mnasnet-defaults", "no-expansion-no-se"],
)
def test_supernet_params_counts_without_torch(config: ChainConfig, shape: tuple[int, ...]) -> None:
    space = ChainSpace(config)
    with torch.device("meta"):  # sizes only: the default space's supernet is millions of weights
        supernet = space.supernet(shape, 10)
    assert space.supernet_params(shape, 10) == sum(p.numel() for p in supernet.parameters())
