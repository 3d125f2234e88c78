"""The chain space's weight-sharing supernet in the once-for-all manner (Cai et al., ICLR 2020):
every stage holds its largest depth of inverted-residual blocks at their largest sizes, and a
sub-network uses the first ``depth`` blocks of each stage, the centre of each depthwise kernel
and the leading channels of every layer.

The forward pass runs ``torch.nn.functional`` on sliced weights, so one supernet serves every
architecture of the space without building modules per step; ``subnet_state_dict`` hands out the
same slices under ``spaces.chain_net.ChainNetwork``'s keys. Kept apart from ``spaces.chain`` so
that only workers import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scion.configs.spaces import scaled_channels
from spaces.sliced_net import bn_state, sliced_batch_norm

if TYPE_CHECKING:
    from spaces.chain import ChainSpace

State = dict[str, Tensor]


class ElasticConv(nn.Module):
    """A convolution stored at its largest size; a call uses the leading ``c_out`` filters, the
    input's channels and the centre of the kernel (only the last axis of a ``1 x k`` kernel).
    Initialised as torchvision's MobileNets are (He normal over the fan-out, zero biases)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], *, depthwise: bool = False,
                 bias: bool = False) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.weight = nn.Parameter(torch.empty(c_out, 1 if depthwise else c_in, *kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def sliced(self, c_out: int, c_in: int, kernel: int | None = None) -> State:
        weight = self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in]
        if kernel is not None:
            kh, kw = self.weight.shape[2:]
            left = (kw - kernel) // 2
            rows = slice(None) if kh == 1 else slice(left, left + kernel)
            weight = weight[:, :, rows, left : left + kernel]
        state = {"weight": weight}
        if self.bias is not None:
            state["bias"] = self.bias[:c_out]
        return state

    def forward(self, x: Tensor, c_out: int, kernel: int | None = None, stride: tuple[int, int] = (1, 1)
                ) -> Tensor:
        state = self.sliced(c_out, x.shape[1], kernel)
        weight = state["weight"]
        padding = (0, 0) if kernel is None else (weight.shape[2] // 2, weight.shape[3] // 2)
        groups = x.shape[1] if self.depthwise else 1
        return F.conv2d(x, weight, state.get("bias"), stride, padding, groups=groups)


class ElasticBatchNorm(nn.BatchNorm2d):
    """A BatchNorm over the leading channels of its largest size; in train mode it updates those
    channels' running statistics (and its batch count) in place, exactly as a standalone
    ``BatchNorm2d`` of that size updates its own."""

    def sliced(self, channels: int) -> State:
        return bn_state(self, channels)

    def forward(self, x: Tensor) -> Tensor:
        return sliced_batch_norm(self, x)


class ElasticSqueezeExcite(nn.Module):
    """``chain_net.SqueezeExcite`` at its largest size: ``channels`` and ``squeezed`` sliced."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = ElasticConv(channels, squeezed, (1, 1), bias=True)
        self.expand = ElasticConv(squeezed, channels, (1, 1), bias=True)

    def sliced(self, channels: int, squeezed: int) -> State:
        return {
            **{f"reduce.{k}": v for k, v in self.reduce.sliced(squeezed, channels).items()},
            **{f"expand.{k}": v for k, v in self.expand.sliced(channels, squeezed).items()},
        }

    def forward(self, x: Tensor, squeezed: int) -> Tensor:
        gate = self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1), squeezed)), x.shape[1])
        return x * torch.sigmoid(gate)


class ElasticInvertedResidual(nn.Module):
    """``chain_net.InvertedResidual`` at its largest input width, expansion and kernel, with an
    expansion layer when some option expands and a squeeze-excite when some option has one."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, se: bool, sequence: bool
                 ) -> None:
        super().__init__()
        hidden = c_in * expand
        self.sequence = sequence
        self.expand_conv = ElasticConv(c_in, hidden, (1, 1)) if expand != 1 else None
        self.expand_bn = ElasticBatchNorm(hidden) if expand != 1 else None
        self.depthwise = ElasticConv(hidden, hidden, (1, kernel) if sequence else (kernel, kernel),
                                     depthwise=True)
        self.depthwise_bn = ElasticBatchNorm(hidden)
        self.se = ElasticSqueezeExcite(hidden, max(1, c_in // 4)) if se else None
        self.project = ElasticConv(hidden, c_out, (1, 1))
        self.project_bn = ElasticBatchNorm(c_out)

    def sliced(self, c_in: int, c_out: int, stage: dict[str, Any]) -> State:
        """The block's weights under ``InvertedResidual``'s keys (``body.<index>.<name>``)."""
        hidden = c_in * stage["expand"]
        layers: list[State] = []
        if stage["expand"] != 1:
            assert self.expand_conv is not None and self.expand_bn is not None
            layers += [self.expand_conv.sliced(hidden, c_in), self.expand_bn.sliced(hidden), {}]
        layers += [self.depthwise.sliced(hidden, hidden, stage["kernel"]),
                   self.depthwise_bn.sliced(hidden), {}]
        if stage["se"]:
            assert self.se is not None
            layers.append(self.se.sliced(hidden, max(1, c_in // 4)))
        layers += [self.project.sliced(c_out, hidden), self.project_bn.sliced(c_out)]
        return {f"body.{i}.{k}": v for i, layer in enumerate(layers) for k, v in layer.items()}

    def forward(self, x: Tensor, c_out: int, stride: int, stage: dict[str, Any]) -> Tensor:
        c_in = x.shape[1]
        hidden = c_in * stage["expand"]
        out = x
        if stage["expand"] != 1:
            assert self.expand_conv is not None and self.expand_bn is not None
            out = F.relu(self.expand_bn(self.expand_conv(out, hidden)))
        out = self.depthwise(out, hidden, stage["kernel"], (1, stride) if self.sequence else (stride, stride))
        out = F.relu(self.depthwise_bn(out))
        if stage["se"]:
            assert self.se is not None
            out = self.se(out, max(1, c_in // 4))
        out = self.project_bn(self.project(out, c_out))
        return out + x if stride == 1 and c_in == c_out else out


class ChainSupernet(nn.Module):
    """Stem, per stage the largest depth of elastic blocks, optional head and classifier; a
    sub-network is an architecture of ``space`` (see ``spaces.chain``)."""

    def __init__(self, space: ChainSpace, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.sequence = seq = len(input_shape) == 2
        c = space.config
        opts = space.options
        stem_kernel = (1, 3) if seq else (3, 3)
        self.stem = ElasticConv(input_shape[0], c.stem_channels, stem_kernel)
        self.stem_bn = ElasticBatchNorm(c.stem_channels)
        widest_in = c.stem_channels
        self.stages = nn.ModuleList()
        for widest_out in space.widest_channels():
            blocks = nn.ModuleList()
            for block in range(max(opts["depth"])):
                blocks.append(ElasticInvertedResidual(
                    widest_in if block == 0 else widest_out, widest_out, max(opts["kernel"]),
                    max(opts["expand"]), True in opts["se"], seq,
                ))
            self.stages.append(blocks)
            widest_in = widest_out
        self.head = ElasticConv(widest_in, c.head_channels, (1, 1)) if c.head_channels else None
        self.head_bn = ElasticBatchNorm(c.head_channels) if c.head_channels else None
        self.classifier = nn.Linear(c.head_channels or widest_in, num_classes)

    def _widths(self, arch: list[dict[str, Any]]) -> list[int]:
        return [scaled_channels(base, stage["width"]) for base, stage in zip(self.space.config.channels, arch)]

    def forward(self, x: Tensor, arch: Any) -> Tensor:
        cfg = self.space.config
        if self.sequence:
            x = x.unsqueeze(2)  # (B, C, L) -> (B, C, 1, L), as ChainNetwork runs sequences
        x = F.relu(self.stem_bn(self.stem(x, cfg.stem_channels, 3)))
        for blocks, stage, c_out, stride in zip(self.stages, arch, self._widths(arch), cfg.strides):
            for block in range(stage["depth"]):
                x = blocks[block](x, c_out, stride if block == 0 else 1, stage)
        if self.head is not None and self.head_bn is not None:
            x = F.relu(self.head_bn(self.head(x, cfg.head_channels)))
        features = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.linear(features, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        cfg = self.space.config
        state: State = {}

        def add(index: int, layer: State) -> None:
            state.update({f"features.{index}.{k}": v for k, v in layer.items()})

        add(0, self.stem.sliced(cfg.stem_channels, self.stem.weight.shape[1], 3))
        add(1, self.stem_bn.sliced(cfg.stem_channels))
        index, c_in = 3, cfg.stem_channels
        for blocks, stage, c_out in zip(self.stages, arch, self._widths(arch)):
            for block in range(stage["depth"]):
                add(index, blocks[block].sliced(c_in, c_out, stage))
                index, c_in = index + 1, c_out
        if self.head is not None and self.head_bn is not None:
            add(index, self.head.sliced(cfg.head_channels, c_in))
            add(index + 1, self.head_bn.sliced(cfg.head_channels))
            c_in = cfg.head_channels
        state["classifier.weight"] = self.classifier.weight[:, :c_in]
        state["classifier.bias"] = self.classifier.bias
        return {k: v.detach().clone() for k, v in state.items()}
