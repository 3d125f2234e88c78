"""The DARTS evaluation network (after the DARTS code's ``NetworkCIFAR``, ``Cell`` and
``operations.py``), without the auxiliary head and drop-path.

Kept apart from ``spaces.darts`` so that only workers import torch. Departures from DARTS, all
invisible on its 32x32 inputs:
- ``FactorizedReduce`` shifts its second branch by one with zero padding at the far edge instead
  of cropping, so odd sizes and height-1 maps give the same size as the strided branches;
- a ``none`` edge is left out of its node's sum rather than computed as ``x * 0``; a node whose
  two edges are ``none`` is a zero tensor of the node's shape;
- 1-D inputs ``(C, L)`` run as ``(C, 1, L)`` maps with ``1 x k`` kernels and ``1 x 2`` strides,
  so a sequence network has exactly the parameters of a 1-D DARTS network and no
  computation is spent on padding rows.
Every structural choice is fixed at construction, so ``torch.jit.trace`` records the network
exactly.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spaces.darts import NUM_NODES


class Geometry:
    """Kernel, padding and stride shapes for 2-D images or 1-D sequences run as (C, 1, L)."""

    def __init__(self, sequence: bool) -> None:
        self.sequence = sequence

    def k(self, size: int) -> tuple[int, int]:
        return (1, size) if self.sequence else (size, size)

    def pad(self, p: int) -> tuple[int, int]:
        return (0, p) if self.sequence else (p, p)

    def stride(self, s: int) -> tuple[int, int]:
        return (1, s) if self.sequence else (s, s)

    def shift(self, x: Tensor) -> Tensor:
        """``x`` moved by one step along each strided axis, zero-filled at the far edge."""
        if self.sequence:
            return F.pad(x, (0, 1))[:, :, :, 1:]
        return F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]

    def subsample(self, x: Tensor) -> Tensor:
        """Every other position along each strided axis: the shape a stride-2 op gives."""
        return x[:, :, :, ::2] if self.sequence else x[:, :, ::2, ::2]


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, geo: Geometry) -> None:
        super().__init__(
            nn.ReLU(inplace=False),  # node inputs are shared between edges: never in place
            nn.Conv2d(c_in, c_out, geo.k(kernel), padding=geo.pad(kernel // 2), bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two stacked (ReLU, depthwise k x k, pointwise 1x1, BN) blocks; the first one strided."""

    def __init__(self, c: int, kernel: int, stride: int, geo: Geometry) -> None:
        pad = geo.pad(kernel // 2)
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, geo.k(kernel), geo.stride(stride), pad, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, geo.k(kernel), 1, pad, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k with dilation 2, pointwise 1x1, BN."""

    def __init__(self, c: int, kernel: int, stride: int, geo: Geometry) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c, c, geo.k(kernel), geo.stride(stride), geo.pad(kernel - 1), dilation=geo.k(2),
                groups=c, bias=False,
            ),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two strided 1x1 convolutions on offset grids, concatenated."""

    def __init__(self, c_in: int, c_out: int, geo: Geometry) -> None:
        super().__init__()
        self.geo = geo
        self.relu = nn.ReLU(inplace=False)
        half = c_out // 2
        self.conv_1 = nn.Conv2d(c_in, half, 1, stride=geo.stride(2), bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - half, 1, stride=geo.stride(2), bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(self.geo.shift(x))], dim=1))


def make_op(name: str, c: int, stride: int, geo: Geometry) -> nn.Module | None:
    """The module for one edge; None for ``none``, which the cell leaves out."""
    if name == "none":
        return None
    if name == "max_pool_3x3":
        return nn.MaxPool2d(geo.k(3), stride=geo.stride(stride), padding=geo.pad(1))
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(
            geo.k(3), stride=geo.stride(stride), padding=geo.pad(1), count_include_pad=False
        )
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, geo)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return SepConv(c, int(name[-1]), stride, geo)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return DilConv(c, int(name[-1]), stride, geo)
    raise ValueError(f"unknown DARTS operation {name!r}")


class Cell(nn.Module):
    def __init__(
        self,
        genotype: Sequence[tuple[str, int]],
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        geo: Geometry,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.geo = geo
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, c, geo) if reduction_prev
            else ReLUConvBN(c_prev_prev, c, 1, geo)
        )
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, geo)
        self.edges = nn.ModuleDict()
        self.inputs: list[list[tuple[str, int]]] = [[] for _ in range(NUM_NODES)]
        for index, (name, src) in enumerate(genotype):
            stride = 2 if reduction and src < 2 else 1
            op = make_op(name, c, stride, geo)
            if op is not None:
                self.edges[str(index)] = op
                self.inputs[index // 2].append((str(index), src))

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(NUM_NODES):
            terms = [self.edges[name](states[src]) for name, src in self.inputs[node]]
            if terms:
                states.append(sum(terms[1:], terms[0]))
            else:
                base = self.geo.subsample(states[1]) if self.reduction else states[1]
                states.append(torch.zeros_like(base))
        return torch.cat(states[2:], dim=1)


class DARTSNetwork(nn.Module):
    def __init__(
        self,
        normal: Sequence[tuple[str, int]],
        reduce: Sequence[tuple[str, int]],
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        if len(input_shape) not in (2, 3) or any(d < 1 for d in input_shape):
            raise ValueError(
                f"input_shape must be (channels, H, W) or (channels, L), got {input_shape}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.input_shape = tuple(input_shape)
        self.sequence = len(input_shape) == 2
        geo = Geometry(self.sequence)

        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], c_curr, geo.k(3), padding=geo.pad(1), bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        reductions = {layers // 3, 2 * layers // 3}
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            genotype = reduce if reduction else normal
            self.cells.append(
                Cell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev, geo)
            )
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, NUM_NODES * c_curr
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.sequence:
            x = x.unsqueeze(2)  # (B, C, L) -> (B, C, 1, L)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))
