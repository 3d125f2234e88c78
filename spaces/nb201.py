"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

An architecture is the JSON list of the 6 edge operations in the benchmark's edge order, so that
it is readable in job specs and trial rows; ``key`` gives the benchmark's own string so that
results can be joined with the published tables (``shared/data/nb201_cifar10.csv``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scion.configs.spaces import NB201Config
from spaces.base import (
    Costs,
    InvalidArchitecture,
    Largest,
    conv_bn_params,
    conv_costs,
    halved,
    layer_costs,
    linear_costs,
    plane,
    uniform_shrink,
)
from spaces.categorical import CategoricalSpace

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (to, from) per edge, in the order the benchmark string lists them.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_NODES = 4

_OP_INDEX = {op: i for i, op in enumerate(OPS)}
_ALLOWED = ", ".join(OPS)


def _edge_name(index: int) -> str:
    to, frm = EDGES[index]
    return f"edge {index} ({to}<-{frm})"


def _edge_costs(op: str, channels: int, positions: int) -> Costs:
    """One edge's module as ``nb201_net.make_op`` builds it (ReLU, conv, BN; or a pooling)."""
    if op in ("nor_conv_1x1", "nor_conv_3x3"):
        kernel_area = 1 if op == "nor_conv_1x1" else 9
        return (layer_costs(channels, positions) + conv_costs(channels, channels, kernel_area, positions)
                + layer_costs(channels, positions, norm=True))
    return layer_costs(channels, positions) if op == "avg_pool_3x3" else Costs()


class NB201Space(CategoricalSpace):
    """Operations on NAS-Bench-201 cells, one decision per edge; the network widths come from the
    config."""

    def __init__(self, config: NB201Config | None = None) -> None:
        self.config = config if config is not None else NB201Config()

    # -- sampling and neighbourhoods -----------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> list[str]:
        return [OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))]

    def mutate(self, arch: Any, rng: np.random.Generator) -> list[str]:
        """An edge, then another operation for it. Every edge has the same options, so this is
        uniform over ``neighbours`` like the shared mutate, but drawn in two steps, as seeded
        NAS-Bench-201 searches (and the figures of ``scion bench strategies``) have always drawn it."""
        ops = self.validate(arch)
        edge = int(rng.integers(len(EDGES)))
        others = [op for op in OPS if op != ops[edge]]
        ops[edge] = others[int(rng.integers(len(others)))]
        return ops

    # -- categorical decisions -----------------------------------------------------------------

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(_edge_name(e), OPS) for e in range(len(EDGES))]

    def _choices_of(self, arch: Any) -> list[int | None]:
        return [_OP_INDEX[op] for op in self.validate(arch)]

    def _arch_of(self, choices: list[int]) -> list[str]:
        return [OPS[c] for c in choices]

    # -- canonical forms -----------------------------------------------------------------------

    def key(self, arch: Any) -> str:
        ops = self.validate(arch)
        nodes: list[str] = []
        for to in range(1, NUM_NODES):
            items = [f"{ops[e]}~{frm}" for e, (t, frm) in enumerate(EDGES) if t == to]
            nodes.append("|" + "|".join(items) + "|")
        return "+".join(nodes)

    def from_key(self, text: str) -> list[str]:
        """Parse the benchmark string strictly, so a key never maps to two different lists."""
        s = text.strip()
        example = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        segments = s.split("+")
        if len(segments) != NUM_NODES - 1:
            raise InvalidArchitecture(
                f"NAS-Bench-201 string needs {NUM_NODES - 1} '+'-separated nodes like {example}, "
                f"got {len(segments)} in {text!r}"
            )
        ops: list[str] = []
        for to, segment in enumerate(segments, start=1):
            if len(segment) < 2 or not (segment.startswith("|") and segment.endswith("|")):
                raise InvalidArchitecture(
                    f"node {to} must be written between '|' like {example}, got {segment!r}"
                )
            items = segment[1:-1].split("|")
            if len(items) != to:
                raise InvalidArchitecture(
                    f"node {to} must list {to} incoming edge(s) (~0..~{to - 1}), "
                    f"got {len(items)} in {segment!r}"
                )
            for frm, item in enumerate(items):
                op, sep, src = item.partition("~")
                if not sep or src != str(frm):
                    raise InvalidArchitecture(
                        f"node {to}, item {item!r}: expected 'op~{frm}' "
                        f"(inputs in order ~0..~{to - 1})"
                    )
                if op not in _OP_INDEX:
                    edge = EDGES.index((to, frm))
                    raise InvalidArchitecture(
                        f"{_edge_name(edge)}: {op!r} is not an operation; allowed: {_ALLOWED}"
                    )
                ops.append(op)
        # The string lists edges node by node, which is exactly EDGES' order.
        return ops

    def validate(self, arch: Any) -> list[str]:
        if isinstance(arch, str):
            return self.from_key(arch)
        if not isinstance(arch, (list, tuple)):
            raise InvalidArchitecture(
                f"an nb201 architecture is a list of {len(EDGES)} operation names or a "
                f"NAS-Bench-201 string, got {type(arch).__name__}"
            )
        if len(arch) != len(EDGES):
            order = ", ".join(f"({t}<-{f})" for t, f in EDGES)
            raise InvalidArchitecture(
                f"an nb201 architecture has {len(EDGES)} edges, got {len(arch)} operations; "
                f"expected {len(EDGES)} in the order {order}"
            )
        for edge, op in enumerate(arch):
            if not isinstance(op, str):
                raise InvalidArchitecture(
                    f"{_edge_name(edge)}: expected an operation name, got {op!r} "
                    f"({type(op).__name__}); allowed: {_ALLOWED}"
                )
            if op not in _OP_INDEX:
                raise InvalidArchitecture(
                    f"{_edge_name(edge)}: {op!r} is not an operation; allowed: {_ALLOWED}"
                )
        return list(arch)

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    # -- networks ------------------------------------------------------------------------------

    def build(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
        ops = self.validate(arch)
        from spaces.nb201_net import NB201Network  # torch stays out of the API's import path

        return NB201Network(
            ops,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            channels=self.config.channels,
            cells_per_stage=self.config.cells_per_stage,
        )

    def costs(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Costs:
        """What ``build(arch, ...)`` costs, counted layer by layer as ``nb201_net`` builds it."""
        ops = self.validate(arch)
        height, width = plane(input_shape)
        c, positions = self.config.channels, height * width
        total = conv_costs(input_shape[0], c, 9, positions) + layer_costs(c, positions, norm=True)
        for stage in range(3):
            if stage > 0:  # the residual reduction: ReLU, 3x3 conv (strided), BN, ReLU, 3x3 conv, BN; pool, 1x1
                height, width = halved(height), halved(width)
                before, positions = positions, height * width
                total += (layer_costs(c, before) + conv_costs(c, 2 * c, 9, positions)
                          + layer_costs(2 * c, positions, norm=True) + layer_costs(2 * c, positions)
                          + conv_costs(2 * c, 2 * c, 9, positions) + layer_costs(2 * c, positions, norm=True)
                          + layer_costs(c, positions) + conv_costs(c, 2 * c, 1, positions))
                c *= 2
            cell = sum((_edge_costs(op, c, positions) for op in ops), Costs())
            for _ in range(self.config.cells_per_stage):
                total += cell
        tail = layer_costs(c, positions, norm=True) + layer_costs(c, positions) + layer_costs(c, 1)
        return total + tail + linear_costs(c, num_classes)

    def largest_costs(self, input_shape: tuple[int, ...], num_classes: int) -> Largest:
        """Every edge a 3x3 convolution: no network of the space has more parameters, FLOPs or
        activations."""
        return uniform_shrink(self.costs(["nor_conv_3x3"] * len(EDGES), input_shape, num_classes), "channels",
                              "lower channels or cells_per_stage")

    # -- one-shot NAS --------------------------------------------------------------------------

    def supernet(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """The weight-sharing supernet (torch.nn.Module) whose sub-networks are this space's networks."""
        from spaces.nb201_supernet import NB201Supernet  # torch stays out of the API's import path

        return NB201Supernet(self, tuple(input_shape), num_classes)

    def supernet_params(self, input_shape: tuple[int, ...], num_classes: int) -> int:
        """The supernet's parameter count, computed without torch (the API checks memory with it):
        the network's skeleton, and on every edge of every cell both convolutions."""
        c, cells = self.config.channels, self.config.cells_per_stage
        total = conv_bn_params(input_shape[0], c, 9)
        for stage in range(3):
            if stage > 0:  # the residual reduction: two 3x3 ReLUConvBNs and a 1x1 shortcut
                total += conv_bn_params(c, 2 * c, 9) + conv_bn_params(2 * c, 2 * c, 9) + c * 2 * c
                c *= 2
            total += cells * len(EDGES) * (conv_bn_params(c, c, 1) + conv_bn_params(c, c, 9))
        return total + 2 * c + c * num_classes + num_classes  # last BatchNorm, classifier

    def mixed_edges(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Per cell kind, (number of mixed edges, operation names): the architecture weights'
        shape. Every cell of the network shares one set."""
        return {"cell": (len(EDGES), OPS)}

    def derive(self, weights: dict[str, list[list[float]]]) -> list[str]:
        """Per edge the operation of largest weight, over all five (``none`` included), as
        NAS-Bench-201 derives DARTS cells; the first of equal weights."""
        rows = weights.get("cell") if isinstance(weights, dict) else None
        matrix = np.asarray(rows if rows is not None else [], dtype=float)
        if matrix.shape != (len(EDGES), len(OPS)):
            raise ValueError(
                f"nb201 architecture weights are {{'cell': {len(EDGES)} rows (edges) of {len(OPS)} "
                f"weights (operations {', '.join(OPS)})}}, got shape {matrix.shape}"
            )
        return [OPS[int(i)] for i in matrix.argmax(axis=1)]

