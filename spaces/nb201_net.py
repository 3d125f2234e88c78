"""The NAS-Bench-201 network skeleton (after the benchmark's ``TinyNetwork``/``InferCell``).

Kept apart from ``spaces.nb201`` so that only workers import torch. Two deliberate departures,
both invisible on the benchmark's 32x32 inputs: the reduction shortcut pools with
``ceil_mode=True`` so odd and height-1 maps keep the same size as the strided conv branch, and
1-D inputs run as images of height 1.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from spaces.nb201 import EDGES, NUM_NODES


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),  # inputs are shared between edges: never in place
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(name: str, channels: int) -> nn.Module | None:
    """The module for one edge; None for ``none``, whose edge the cell simply leaves out."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 operation {name!r}")


def cell_output(x: Tensor, edge: Callable[[int, Tensor], Tensor | None]) -> Tensor:
    """Run a cell given ``edge(index, input)``, the output of each edge of ``EDGES``, or None for
    an edge left out. Node j is the sum of its incoming edges; the cell's output is the last node.
    ``none`` edges contribute exact zeros, so they are left out of the sum rather than computed as
    ``x * 0``; a node with no live inputs is a zero tensor of the input's shape."""
    nodes = [x]
    for to in range(1, NUM_NODES):
        terms = [
            out for index, (dst, frm) in enumerate(EDGES)
            if dst == to and (out := edge(index, nodes[frm])) is not None
        ]
        nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
    return nodes[-1]


class Cell(nn.Module):
    """One operation per edge (``edges`` holds those that are not ``none``, keyed by edge index)."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        if len(ops) != len(EDGES):
            raise ValueError(f"a cell takes {len(EDGES)} operations, got {len(ops)}")
        self.edges = nn.ModuleDict()
        for index, name in enumerate(ops):
            op = make_op(name, channels)
            if op is not None:
                self.edges[str(index)] = op

    def _edge(self, index: int, x: Tensor) -> Tensor | None:
        name = str(index)
        return self.edges[name](x) if name in self.edges else None

    def forward(self, x: Tensor) -> Tensor:
        return cell_output(x, self._edge)


class ResidualReduction(nn.Module):
    """NAS-Bench-201's ResNet basic block between stages: halves the size, changes width."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Skeleton(nn.Module):
    """NAS-Bench-201's macro skeleton around its cells (stem, three stages of cells with
    residual reductions between them, then BatchNorm, ReLU, pooling and the classifier), shared by
    the networks and the supernet so that their parameters have the same names.
    ``make_cell(channels)`` builds each cell."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int,
        cells_per_stage: int,
        make_cell: Callable[[int], nn.Module],
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

        c = channels
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        ]
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(make_cell(c) for _ in range(cells_per_stage))
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def as_image(self, x: Tensor) -> Tensor:
        """1-D inputs run as images of height 1."""
        return x.unsqueeze(2) if self.sequence else x  # (B, C, L) -> (B, C, 1, L)

    def head(self, features: Tensor) -> Tensor:
        return self.classifier(self.pool(features).flatten(1))


class NB201Network(Skeleton):
    def __init__(
        self,
        ops: Sequence[str],
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 16,
        cells_per_stage: int = 5,
    ) -> None:
        super().__init__(input_shape, num_classes, channels, cells_per_stage, lambda c: Cell(ops, c))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(self.as_image(x)))
