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

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spaces.darts import NUM_NODES, CellPlan, cell_plan, check_io


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


class CellBase(nn.Module):
    """What a standalone DARTS cell and a supernet cell share: the two preprocessing layers that
    bring the cell's inputs to ``c`` channels (and c_{k-2} to the resolution of c_{k-1} after a
    reduction), the node sums and the concatenation of the four nodes. A subclass says which
    terms each node sums."""

    def __init__(self, plan: CellPlan, geo: Geometry) -> None:
        super().__init__()
        self.reduction = plan.reduction
        self.geo = geo
        self.preprocess0 = (
            FactorizedReduce(plan.c_prev_prev, plan.c, geo) if plan.reduction_prev
            else ReLUConvBN(plan.c_prev_prev, plan.c, 1, geo)
        )
        self.preprocess1 = ReLUConvBN(plan.c_prev, plan.c, 1, geo)

    def terms(self, node: int, states: list[Tensor], *how: Any) -> list[Tensor]:
        """The outputs of node ``node``'s live edges, ``states`` being the cell's inputs and the
        nodes before it."""
        raise NotImplementedError

    def forward(self, s0: Tensor, s1: Tensor, *how: Any) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(NUM_NODES):
            terms = self.terms(node, states, *how)
            if terms:
                states.append(sum(terms[1:], terms[0]))
            else:  # no live edge: zeros of the node's shape
                base = self.geo.subsample(states[1]) if self.reduction else states[1]
                states.append(torch.zeros_like(base))
        return torch.cat(states[2:], dim=1)


class Cell(CellBase):
    def __init__(self, genotype: Sequence[tuple[str, int]], plan: CellPlan, geo: Geometry) -> None:
        super().__init__(plan, geo)
        self.edges = nn.ModuleDict()
        self.inputs: list[list[tuple[str, int]]] = [[] for _ in range(NUM_NODES)]
        for index, (name, src) in enumerate(genotype):
            stride = 2 if plan.reduction and src < 2 else 1
            op = make_op(name, plan.c, stride, geo)
            if op is not None:
                self.edges[str(index)] = op
                self.inputs[index // 2].append((str(index), src))

    def terms(self, node: int, states: list[Tensor], *how: Any) -> list[Tensor]:
        return [self.edges[name](states[src]) for name, src in self.inputs[node]]


class CellNetwork(nn.Module):
    """The network around the cells, shared by the standalone network and the supernet: stem,
    the cells of ``cell_plan``, global average pooling and a linear classifier. ``make_cell``
    builds each cell from its plan."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int,
        layers: int,
        stem_multiplier: int,
        make_cell: Callable[[CellPlan, Geometry], CellBase],
    ) -> None:
        super().__init__()
        check_io(input_shape, num_classes)
        self.input_shape = tuple(input_shape)
        self.sequence = len(input_shape) == 2
        geo = Geometry(self.sequence)
        plan = cell_plan(channels, layers, stem_multiplier)
        c_stem = plan[0].c_prev
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], c_stem, geo.k(3), padding=geo.pad(1), bias=False),
            nn.BatchNorm2d(c_stem),
        )
        self.cells = nn.ModuleList(make_cell(cell, geo) for cell in plan)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(NUM_NODES * plan[-1].c, num_classes)

    def logits(self, x: Tensor, *how: Any) -> Tensor:
        """The network's output, each cell called with ``how`` after its two inputs."""
        if self.sequence:
            x = x.unsqueeze(2)  # (B, C, L) -> (B, C, 1, L)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, *how)
        return self.classifier(self.pool(s1).flatten(1))


class DARTSNetwork(CellNetwork):
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
        def make_cell(plan: CellPlan, geo: Geometry) -> Cell:
            return Cell(reduce if plan.reduction else normal, plan, geo)

        super().__init__(input_shape, num_classes, channels, layers, stem_multiplier, make_cell)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)
