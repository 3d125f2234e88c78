"""The NAS-Bench-201 weight-sharing supernet: the benchmark's skeleton whose every cell edge
holds all five operations, for one-shot methods (SPOS, ENAS: one path at a time; DARTS: the
softmax-weighted mixture of every edge's operations).

Its parameters are named like ``NB201Network``'s with the operation inserted after the edge
(``features.3.edges.2.nor_conv_3x3.1.weight`` is the network's ``features.3.edges.2.1.weight``),
which is how ``subnet_state_dict`` maps them. Kept apart from ``spaces.nb201`` so that only workers
import torch.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from spaces.nb201 import EDGES, OPS
from spaces.nb201_net import Skeleton, cell_output, make_op

if TYPE_CHECKING:
    from spaces.nb201 import NB201Space

_EDGE_KEY = re.compile(r"^(features\.\d+\.edges\.\d+)\.([a-z0-9_]+)\.(.+)$")


class SuperCell(nn.Module):
    """A cell whose edge e holds every operation but ``none`` (``edges[e][name]``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict({name: make_op(name, channels) for name in OPS if name != "none"}) for _ in EDGES
        )

    def path(self, x: Tensor, ops: list[str]) -> Tensor:
        """The cell of ``ops``, computed as ``Cell(ops)`` computes it."""
        return cell_output(x, lambda e, h: None if ops[e] == "none" else self.edges[e][ops[e]](h))

    def mixed(self, x: Tensor, weights: Tensor, skip_beta: float) -> Tensor:
        """Every edge the ``weights[e]``-weighted sum of its operations, plus ``skip_beta`` times
        its skip connection (DARTS-'s auxiliary skip)."""

        def edge(e: int, h: Tensor) -> Tensor:
            ops = self.edges[e]
            terms = [weights[e, k] * ops[name](h) for k, name in enumerate(OPS) if name != "none"]
            if skip_beta:
                terms.append(skip_beta * ops["skip_connect"](h))
            return sum(terms[1:], terms[0])

        return cell_output(x, edge)


class NB201Supernet(Skeleton):
    def __init__(self, space: NB201Space, input_shape: tuple[int, ...], num_classes: int) -> None:
        config = space.config
        super().__init__(input_shape, num_classes, config.channels, config.cells_per_stage, SuperCell)
        self.space = space

    def forward(
        self, x: Tensor, arch: Any = None, *, mix: dict[str, Tensor] | None = None, skip_beta: float = 0.0
    ) -> Tensor:
        """One path (``arch``) or, for DARTS, the mixture ``mix["cell"]``: a (6, 5) tensor of
        operation weights per edge (rows in ``EDGES`` order, columns in ``OPS`` order, already
        softmaxed), shared by every cell; ``skip_beta`` adds DARTS-'s auxiliary skip to each edge."""
        if (arch is None) == (mix is None):
            raise ValueError("pass either an architecture or a mixture (mix=...), not both or neither")
        x = self.as_image(x)
        if mix is not None:
            weights = mix["cell"]
            if tuple(weights.shape) != (len(EDGES), len(OPS)):
                raise ValueError(f"mix['cell'] must have shape ({len(EDGES)}, {len(OPS)}), got {tuple(weights.shape)}")
        else:
            ops = self.space.validate(arch)
        for layer in self.features:
            if not isinstance(layer, SuperCell):
                x = layer(x)
            elif mix is None:
                x = layer.path(x, ops)
            else:
                x = layer.mixed(x, weights, skip_beta)
        return self.head(x)

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        """The weights ``space.build(arch, ...)`` loads (strict): each edge's chosen operation's,
        every other layer's as they are; copies, so training the network leaves the supernet be."""
        ops = self.space.validate(arch)
        out: dict[str, Tensor] = {}
        for key, value in self.state_dict().items():
            match = _EDGE_KEY.match(key)
            if match is None:
                out[key] = value.clone()
                continue
            prefix, name, rest = match.groups()
            if ops[int(prefix.rsplit(".", 1)[1])] == name:
                out[f"{prefix}.{rest}"] = value.clone()
        return out


__all__ = ["NB201Supernet", "SuperCell"]
