"""The conv1d weight-sharing supernet, in the once-for-all manner (Cai et al., "Once-for-All: Train
One Network and Specialize it for Efficient Deployment", ICLR 2020): one layer per possible depth,
each with the largest kernel and width, and every network's weights are slices of them.

- depth d: the first d layers;
- kernel k: the centre k taps of the largest kernel;
- channels c: the first c output channels, reading the first channels the previous layer chose;
- dilation: the same weights, dilated;
- a shortcut that changes the width: the first channels of the layer's largest 1x1 convolution and
  BatchNorm (an identity when the width stays);
- the classifier reads the first channels of the last layer's.

BatchNorm uses the first c entries of the largest one's statistics and affine weights (running
statistics updated in place when training), as ``nn.BatchNorm1d(c)`` would. Parameters are named
like ``Conv1DNetwork``'s, so a network's weights are the same keys sliced. Kept apart from
``spaces.conv1d`` so that only workers import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor, nn

from spaces.conv1d_net import check_io, make_pool
from spaces.sliced_net import bn_state, sliced_batch_norm

if TYPE_CHECKING:
    from spaces.conv1d import Conv1DSpace

def prefixed_bn_state(prefix: str, bn: nn.BatchNorm1d, c: int) -> dict[str, Tensor]:
    """The state of ``nn.BatchNorm1d(c)`` cut from ``bn``, its keys under ``prefix``."""
    return {f"{prefix}.{name}": value for name, value in bn_state(bn, c).items()}


class ElasticLayer(nn.Module):
    """The largest layer at one depth; ``forward(x, layer)`` computes what the layer settings
    ``layer`` make of ``conv1d_net.ConvLayer`` up to its pooling, on inputs of any width up to
    ``c_in``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, shortcut: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, bias=False)
        self.bn = nn.BatchNorm1d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)) if shortcut else None
        )

    def conv_weight(self, c_in: int, layer: dict[str, Any]) -> Tensor:
        kernel, largest = layer["kernel"], self.conv.kernel_size[0]
        start = (largest - kernel) // 2
        return self.conv.weight[: layer["channels"], :c_in, start : start + kernel]

    def shortcut_weight(self, c_in: int, layer: dict[str, Any]) -> Tensor:
        assert self.shortcut is not None  # the space's options made one wherever a width changes
        return self.shortcut[0].weight[: layer["channels"], :c_in]

    def projects(self, c_in: int, layer: dict[str, Any]) -> bool:
        """Whether ``layer``'s shortcut is the 1x1 convolution (the width changes)."""
        return layer["skip"] and c_in != layer["channels"]

    def forward(self, x: Tensor, layer: dict[str, Any]) -> Tensor:
        c_in, dilation = x.shape[1], layer["dilation"]
        weight = self.conv_weight(c_in, layer)
        padding = dilation * (layer["kernel"] // 2)
        out = sliced_batch_norm(self.bn, F.conv1d(x, weight, dilation=dilation, padding=padding))
        if self.projects(c_in, layer):
            out = out + sliced_batch_norm(self.shortcut[1], F.conv1d(x, self.shortcut_weight(c_in, layer)))
        elif layer["skip"]:
            out = out + x
        return F.relu(out)

    def state(self, prefix: str, c_in: int, layer: dict[str, Any]) -> dict[str, Tensor]:
        """``ConvLayer``'s state for ``layer`` (views), its keys under ``prefix``."""
        c = layer["channels"]
        state = {f"{prefix}.conv.weight": self.conv_weight(c_in, layer),
                 **prefixed_bn_state(f"{prefix}.bn", self.bn, c)}
        if self.projects(c_in, layer):
            state[f"{prefix}.shortcut.0.weight"] = self.shortcut_weight(c_in, layer)
            state.update(prefixed_bn_state(f"{prefix}.shortcut.1", self.shortcut[1], c))
        return state


class Conv1DSupernet(nn.Module):
    def __init__(self, space: Conv1DSpace, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        check_io(input_shape, num_classes)
        self.space = space
        self.image = len(input_shape) == 3
        self.input_channels = input_shape[0]
        self.pools = nn.ModuleDict({name: make_pool(name) for name in space.options["pool"]})
        kernel = max(space.options["kernel"])
        layers = space.supernet_layers(self.input_channels)
        self.features = nn.ModuleList(
            ElasticLayer(c_in, c_out, kernel, shortcut) for c_in, c_out, shortcut in layers
        )
        self.classifier = nn.Linear(layers[-1][1], num_classes)

    def forward(self, x: Tensor, arch: Any) -> Tensor:
        """The network of ``arch``: what ``space.build(arch)`` computes with ``subnet_state_dict(arch)``."""
        if self.image:
            x = x.flatten(2)  # (B, C, H, W) -> (B, C, H * W)
        for block, layer in zip(self.features, self.space.validate(arch)):
            x = self.pools[layer["pool"]](block(x, layer))
        x = F.adaptive_avg_pool1d(x, 1).flatten(1)
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        """The weights ``space.build(arch, ...)`` loads (strict), cut from the largest layers;
        copies, so training the network leaves the supernet be."""
        state: dict[str, Tensor] = {}
        c_in = self.input_channels
        for index, (block, layer) in enumerate(zip(self.features, self.space.validate(arch))):
            state.update(block.state(f"features.{index}", c_in, layer))
            c_in = layer["channels"]
        state["classifier.weight"] = self.classifier.weight[:, :c_in]
        state["classifier.bias"] = self.classifier.bias
        return {key: value.detach().clone() for key, value in state.items()}


__all__ = ["Conv1DSupernet", "ElasticLayer"]
