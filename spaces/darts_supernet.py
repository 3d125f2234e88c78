"""The weight-sharing supernet of the DARTS cell space (the DARTS code's ``Network`` with
``MixedOp``), for one-shot search.

It is the standalone network of ``spaces.darts_net`` with every edge a node may have: in each
cell, node j has a mixed edge from each of its 2 + j inputs holding all seven live operations
(``none`` has no module), strided on the inputs c_{k-2} and c_{k-1} of reduction cells. It runs
either one architecture (single path, for SPOS and ENAS, and to hand a sub-network its weights)
or the DARTS mixture of every operation on every edge.

Kept apart from ``spaces.darts`` so that only workers import torch.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from spaces.darts import CELLS, MIXED_EDGES, NONE, NUM_NODES, OPS, CellPlan, DARTSSpace, inputs_of, mixed_edge
from spaces.darts_net import CellBase, CellNetwork, Geometry, make_op

SKIP = "skip_connect"
_LIVE: tuple[tuple[int, str], ...] = tuple((k, op) for k, op in enumerate(OPS) if op != NONE)


class MixedEdge(nn.ModuleDict):
    """One edge's live operations, by name; the skip_connect module doubles as DARTS-'s
    auxiliary skip."""

    def __init__(self, c: int, stride: int, geo: Geometry) -> None:
        super().__init__({op: make_op(op, c, stride, geo) for _, op in _LIVE})

    def mixed(self, x: Tensor, weights: Tensor, skip_beta: float) -> Tensor:
        """``sum_k weights[k] * op_k(x) + skip_beta * skip(x)``, the skip module run once."""
        terms = []
        for k, op in _LIVE:
            weight = weights[k] + skip_beta if op == SKIP else weights[k]
            terms.append(weight * self[op](x))
        return sum(terms[1:], terms[0])


class SupernetCell(CellBase):
    def __init__(self, plan: CellPlan, geo: Geometry) -> None:
        super().__init__(plan, geo)
        self.kind = "reduce" if plan.reduction else "normal"
        self.edges = nn.ModuleList(
            MixedEdge(plan.c, 2 if plan.reduction and src < 2 else 1, geo)
            for node in range(NUM_NODES)
            for src in range(inputs_of(node))
        )

    def terms(
        self,
        node: int,
        states: list[Tensor],
        arch: dict[str, list[list[Any]]] | None,
        mix: dict[str, Tensor] | None,
        skip_beta: float,
    ) -> list[Tensor]:
        if arch is not None:  # the node's two chosen (operation, input) pairs, none left out
            pairs = [(op, src) for op, src in arch[self.kind][2 * node : 2 * node + 2] if op != NONE]
            # One module on both edges runs once and counts twice.
            outs = {(op, src): self.edges[mixed_edge(node, src)][op](states[src]) for op, src in dict.fromkeys(pairs)}
            return [outs[pair] for pair in pairs]
        assert mix is not None
        weights = mix[self.kind]
        return [
            self.edges[mixed_edge(node, src)].mixed(states[src], weights[mixed_edge(node, src)], skip_beta)
            for src in range(inputs_of(node))
        ]


class DARTSSupernet(CellNetwork):
    def __init__(self, space: DARTSSpace, input_shape: tuple[int, ...], num_classes: int) -> None:
        config = space.config
        super().__init__(
            input_shape, num_classes, config.channels, config.layers, config.stem_multiplier, SupernetCell
        )
        self.space = space

    def forward(
        self,
        x: Tensor,
        arch: Any = None,
        *,
        mix: dict[str, Tensor] | None = None,
        skip_beta: float = 0.0,
    ) -> Tensor:
        """Single path: exactly what ``space.build(arch, ...)`` computes once loaded with
        ``subnet_state_dict(arch)``, in train and eval mode (``arch`` canonical, as
        ``space.validate`` returns it). A node sums its two chosen edges; when both read the
        same input with the same operation, that one module runs once and counts twice, so that
        its BatchNorm statistics move as each of the built network's two copies moves.

        Mixture (``mix``, per cell kind an (edges, ops) tensor of operation weights, already
        softmaxed): each edge outputs ``sum_k mix[e, k] * op_k(x)`` (``none`` adds nothing) plus
        ``skip_beta * skip(x)`` (DARTS-), and a node sums all its edges."""
        if (arch is None) == (mix is None):
            raise ValueError("pass either an architecture or a mixture of operation weights")
        if mix is not None:
            shapes = {kind: tuple(mix[kind].shape) if kind in mix else None for kind in CELLS}
            if any(shape != (MIXED_EDGES, len(OPS)) for shape in shapes.values()):
                raise ValueError(
                    f"mix needs a ({MIXED_EDGES}, {len(OPS)}) tensor for each cell kind, got {shapes}"
                )
        return self.logits(x, arch, mix, skip_beta)

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        """The weights ``space.build(arch, ...)`` loads with ``strict=True``: the shared stem,
        preprocessing and classifier, and for each live edge of the canonical genotype the
        supernet's module for its (operation, input), BatchNorm statistics included; copies,
        so that training the sub-network leaves the supernet as it was."""
        genotype = self.space.validate(arch)
        out: dict[str, Tensor] = {}

        def put(prefix: str, module: nn.Module) -> None:
            for name, value in module.state_dict().items():
                out[prefix + name] = value.detach().clone()

        put("stem.", self.stem)
        for i, cell in enumerate(self.cells):
            put(f"cells.{i}.preprocess0.", cell.preprocess0)
            put(f"cells.{i}.preprocess1.", cell.preprocess1)
            for index, (op, src) in enumerate(genotype[cell.kind]):
                if op != NONE:
                    put(f"cells.{i}.edges.{index}.", cell.edges[mixed_edge(index // 2, src)][op])
        put("classifier.", self.classifier)
        return out

