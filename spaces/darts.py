"""The DARTS cell space (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search",
ICLR 2019), searched here as a discrete space.

An architecture is a normal cell and a reduction cell, written as in the DARTS code's
``Genotype``::

    {"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ...8 pairs],
     "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ...8 pairs]}

Pairs ``2j`` and ``2j+1`` are the two inputs of intermediate node ``j+2``; an input is ``0``
(``c_{k-2}``, the output of the cell before the previous one), ``1`` (``c_{k-1}``, the previous
cell's output) or ``2..j+1`` (an earlier intermediate node of the same cell). A node is the sum of
its two operations and the cell's output is the channel concatenation of the four intermediate
nodes, so every node is used. Published DARTS genotypes (DARTS_V2 and the like) can be pasted as
they are.

Canonical form (what ``validate`` returns and ``key`` prints):
- the two inputs of a node are an unordered pair, sorted by (input, operation);
- a ``none`` edge contributes zeros whatever it reads, so its input is written as ``0``.
Two architectures that differ only in those ways are the same network and share a key. Unlike
DARTS' derived genotypes, both edges of a node may read the same input (as in ENAS): that keeps
every combination of the 32 per-edge decisions valid.

Decisions (for REINFORCE, TPE, grid, NSGA-II crossover): 32 categorical decisions, cell-major,
for every edge its operation (8 options) and its input with a per-node option count (2, 3, 4, 5
for nodes 2..5), so that any vector of in-range indices is an architecture. ``encode`` is the
one-hot of the canonical choices (184 numbers).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scion.configs.spaces import DARTSConfig
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

# The DARTS PRIMITIVES, in the order of the DARTS code.
OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
CELLS: tuple[str, ...] = ("normal", "reduce")
NUM_NODES = 4  # intermediate nodes per cell (DARTS' "steps")
EDGES = 2 * NUM_NODES  # two inputs per node
INPUT_NAMES: tuple[str, ...] = ("c_{k-2}", "c_{k-1}", "node 2", "node 3", "node 4")
NONE = "none"

_OP_INDEX = {op: i for i, op in enumerate(OPS)}
_ALLOWED = ", ".join(OPS)

Pair = tuple[str, int]
Cell = tuple[Pair, ...]  # 8 canonical pairs


def _decisions() -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for cell in CELLS:
        for edge in range(EDGES):
            node, which = divmod(edge, 2)
            name = f"{cell} node {node + 2} input {which + 1}"
            out.append((f"{name} op", OPS))
            out.append((f"{name} from", INPUT_NAMES[: node + 2]))
    return tuple(out)


_DECISIONS = _decisions()


def inputs_of(node: int) -> int:
    """How many inputs intermediate node ``node`` (0-based) may read: c_{k-2}, c_{k-1} and the
    nodes before it."""
    return node + 2


def mixed_edge(node: int, src: int) -> int:
    """Which of a supernet cell's mixed edges joins input ``src`` to intermediate node ``node``
    (0-based): node-major, input-minor."""
    return sum(inputs_of(n) for n in range(node)) + src


MIXED_EDGES = mixed_edge(NUM_NODES, 0)  # 2 + 3 + 4 + 5 = 14


def check_io(input_shape: tuple[int, ...], num_classes: int) -> None:
    """Refuse shapes a DARTS network cannot take, before anything is built or counted."""
    if len(input_shape) not in (2, 3) or any(d < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (channels, H, W) or (channels, L), got {input_shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")


@dataclass(frozen=True)
class CellPlan:
    """One cell of a DARTS network: its two inputs' channels, its operations' channels ``c``, and
    whether it (``reduction``) or the cell before it (``reduction_prev``) halves the resolution."""

    c_prev_prev: int
    c_prev: int
    c: int
    reduction: bool
    reduction_prev: bool


def cell_plan(channels: int, layers: int, stem_multiplier: int) -> list[CellPlan]:
    """The cells in order, laid out as DARTS' ``NetworkCIFAR``: the stem outputs
    ``stem_multiplier * channels``, the reduction cells at ``layers // 3`` and ``2 * layers // 3``
    double ``c``, and every cell outputs ``NUM_NODES * c``."""
    c_prev_prev = c_prev = stem_multiplier * channels
    c = channels
    reductions = {layers // 3, 2 * layers // 3}
    plan: list[CellPlan] = []
    reduction_prev = False
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c *= 2
        plan.append(CellPlan(c_prev_prev, c_prev, c, reduction, reduction_prev))
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, NUM_NODES * c
    return plan


def _op_params(op: str, c: int, strided: bool, kernel_area: Callable[[int], int]) -> int:
    """The parameters of one edge's module as ``darts_net.make_op`` builds it."""
    if op in ("sep_conv_3x3", "sep_conv_5x5"):
        return 2 * (c * kernel_area(int(op[-1])) + conv_bn_params(c, c, 1))
    if op in ("dil_conv_3x3", "dil_conv_5x5"):
        return c * kernel_area(int(op[-1])) + conv_bn_params(c, c, 1)
    if op == "skip_connect" and strided:
        return conv_bn_params(c, c, 1)  # FactorizedReduce: two 1x1 halves and a BatchNorm
    return 0


def _op_costs(op: str, c: int, strided: bool, kernel_area: Callable[[int], int], before: int, after: int) -> Costs:
    """What one edge's module costs as ``darts_net.make_op`` builds it, reading ``before``
    positions and writing ``after``."""
    if op in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"):
        # ReLU, depthwise k x k (strided), pointwise 1x1, BN; a separable convolution twice
        area = kernel_area(int(op[-1]))
        half = (conv_costs(c, c, area, after, groups=c) + conv_costs(c, c, 1, after)
                + layer_costs(c, after, norm=True))
        if op.startswith("dil"):
            return layer_costs(c, before) + half
        return layer_costs(c, before) + half + layer_costs(c, after) + half
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return layer_costs(c, after)
    if op == "skip_connect" and strided:
        return _factorized_reduce(c, c, before, after)
    return Costs()


def _factorized_reduce(c_in: int, c_out: int, before: int, after: int) -> Costs:
    """ReLU, two strided 1x1 convolutions of half the channels each, BN."""
    return (layer_costs(c_in, before) + conv_costs(c_in, c_out // 2, 1, after)
            + conv_costs(c_in, c_out - c_out // 2, 1, after) + layer_costs(c_out, after, norm=True))


def _relu_conv_bn(c_in: int, c_out: int, positions: int) -> Costs:
    return (layer_costs(c_in, positions) + conv_costs(c_in, c_out, 1, positions)
            + layer_costs(c_out, positions, norm=True))


def _edge_name(cell: str, edge: int) -> str:
    node, which = divmod(edge, 2)
    return f"{cell} edge {edge} (node {node + 2}, {'first' if which == 0 else 'second'} input)"


def _input_help(node: int) -> str:
    n = inputs_of(node)
    names = ", ".join(f"{i} = {INPUT_NAMES[i]}" for i in range(n))
    return f"node {node + 2} may read inputs 0..{n - 1} ({names})"


def _canonical_node(a: Pair, b: Pair) -> tuple[Pair, Pair]:
    a = (NONE, 0) if a[0] == NONE else a
    b = (NONE, 0) if b[0] == NONE else b
    return (a, b) if (a[1], _OP_INDEX[a[0]]) <= (b[1], _OP_INDEX[b[0]]) else (b, a)


def _canonical_cell(pairs: list[Pair] | tuple[Pair, ...]) -> Cell:
    out: list[Pair] = []
    for node in range(NUM_NODES):
        out.extend(_canonical_node(pairs[2 * node], pairs[2 * node + 1]))
    return tuple(out)


class DARTSSpace(CategoricalSpace):
    """Operations on DARTS genotypes; the network's width and depth come from the config.

    Its own ``neighbours`` and ``mutate``: an edit of the canonical choices can give the same
    network as another edit or as the architecture itself (the input of a ``none`` edge, the order
    of a node's two inputs), which the shared ones assume cannot happen; these drop the repeats."""

    def __init__(self, config: DARTSConfig | None = None) -> None:
        self.config = config if config is not None else DARTSConfig()

    # -- internal forms ------------------------------------------------------------------------

    @staticmethod
    def _to_json(cells: tuple[Cell, Cell]) -> dict[str, list[list[Any]]]:
        return {name: [[op, i] for op, i in cell] for name, cell in zip(CELLS, cells)}

    def _cells(self, arch: Any) -> tuple[Cell, Cell]:
        """Validated, canonical (normal, reduce) tuples."""
        if isinstance(arch, str):
            arch = self.from_key(arch)
        if not isinstance(arch, dict):
            raise InvalidArchitecture(
                "a darts architecture is an object {\"normal\": [[op, input], ...8], "
                "\"reduce\": [[op, input], ...8]} or its key string, "
                f"got {type(arch).__name__}"
            )
        if len(arch) != len(CELLS) or any(c not in arch for c in CELLS):
            extra = sorted(set(map(str, arch)) - set(CELLS))
            missing = [c for c in CELLS if c not in arch]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(repr(m) for m in missing)}")
            if extra:
                detail.append(f"unexpected {', '.join(repr(e) for e in extra)}")
            raise InvalidArchitecture(
                f"a darts architecture has exactly the keys 'normal' and 'reduce' ({'; '.join(detail)})"
            )
        cells = []
        for name in CELLS:
            pairs = arch[name]
            if not isinstance(pairs, (list, tuple)) or len(pairs) != EDGES:
                got = f"{len(pairs)} items" if isinstance(pairs, (list, tuple)) else type(pairs).__name__
                raise InvalidArchitecture(
                    f"{name}: a cell is a list of {EDGES} [operation, input] pairs, two per "
                    f"intermediate node (nodes 2..{NUM_NODES + 1}), got {got}"
                )
            checked: list[Pair] = []
            for edge, pair in enumerate(pairs):
                checked.append(self._check_pair(name, edge, pair))
            cells.append(_canonical_cell(checked))
        return cells[0], cells[1]

    @staticmethod
    def _check_pair(cell: str, edge: int, pair: Any) -> Pair:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            op, src = pair
            if isinstance(op, str) and op in _OP_INDEX and type(src) is int and 0 <= src < edge // 2 + 2:
                return op, src  # the common, valid case, without building messages
        where = _edge_name(cell, edge)
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InvalidArchitecture(f"{where}: expected an [operation, input] pair, got {pair!r}")
        op, src = pair
        if not isinstance(op, str) or op not in _OP_INDEX:
            raise InvalidArchitecture(f"{where}: {op!r} is not an operation; allowed: {_ALLOWED}")
        node = edge // 2
        if isinstance(src, bool) or not isinstance(src, (int, np.integer)):
            raise InvalidArchitecture(
                f"{where}: input must be an integer, got {src!r}; {_input_help(node)}"
            )
        if not 0 <= int(src) < inputs_of(node):
            raise InvalidArchitecture(f"{where}: input {src} is out of range; {_input_help(node)}")
        return op, int(src)

    # -- sampling and neighbourhoods -----------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> dict[str, list[list[Any]]]:
        cells = []
        for _ in CELLS:
            ops = rng.integers(0, len(OPS), size=EDGES)
            srcs = [int(rng.integers(inputs_of(e // 2))) for e in range(EDGES)]
            cells.append(_canonical_cell([(OPS[o], s) for o, s in zip(ops, srcs)]))
        return self._to_json((cells[0], cells[1]))

    def _edits(self, cells: tuple[Cell, Cell]) -> list[tuple[Cell, Cell]]:
        """Every canonical architecture one edit away (one edge's operation or input), in a
        fixed order and without repeats or ``cells`` itself."""
        seen = {cells}
        out: list[tuple[Cell, Cell]] = []
        for c, cell in enumerate(cells):
            for edge, (op, src) in enumerate(cell):
                node = edge // 2
                changes = [(o, src) for o in OPS if o != op]
                if op != NONE:  # a none edge reads nothing: moving its input changes nothing
                    changes += [(op, s) for s in range(inputs_of(node)) if s != src]
                for change in changes:
                    pairs = list(cell)
                    pairs[edge] = change
                    new = list(cells)
                    new[c] = _canonical_cell(pairs)
                    candidate = (new[0], new[1])
                    if candidate not in seen:
                        seen.add(candidate)
                        out.append(candidate)
        return out

    def mutate(self, arch: Any, rng: np.random.Generator) -> dict[str, list[list[Any]]]:
        """One edge's operation or input changed, uniformly over the distinct results."""
        edits = self._edits(self._cells(arch))
        return self._to_json(edits[int(rng.integers(len(edits)))])

    def neighbours(self, arch: Any) -> list[dict[str, list[list[Any]]]]:
        return [self._to_json(c) for c in self._edits(self._cells(arch))]

    # -- categorical decisions and encoding ----------------------------------------------------

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        return list(_DECISIONS)

    def _choices_of(self, arch: Any) -> list[int | None]:
        """The canonical form's choices, every one applying (``encode`` is their one-hot)."""
        choices: list[int | None] = []
        for cell in self._cells(arch):
            for op, src in cell:
                choices += [_OP_INDEX[op], src]
        return choices

    def _arch_of(self, choices: list[int]) -> dict[str, list[list[Any]]]:
        cells = []
        for c in range(len(CELLS)):
            flat = choices[c * 2 * EDGES : (c + 1) * 2 * EDGES]
            cells.append(_canonical_cell([(OPS[flat[2 * e]], flat[2 * e + 1]) for e in range(EDGES)]))
        return self._to_json((cells[0], cells[1]))

    # -- canonical forms -----------------------------------------------------------------------

    def key(self, arch: Any) -> str:
        """``normal:op~i+op~j|...;reduce:...``, one ``|``-separated item per intermediate node."""
        parts = []
        for name, cell in zip(CELLS, self._cells(arch)):
            nodes = [
                f"{cell[2 * n][0]}~{cell[2 * n][1]}+{cell[2 * n + 1][0]}~{cell[2 * n + 1][1]}"
                for n in range(NUM_NODES)
            ]
            parts.append(f"{name}:" + "|".join(nodes))
        return ";".join(parts)

    def from_key(self, text: str) -> dict[str, list[list[Any]]]:
        """Parse a key (either pair order within a node is accepted) into a JSON architecture."""
        example = "normal:op~0+op~1|op~0+op~2|op~1+op~3|op~0+op~4;reduce:..."
        s = text.strip()
        cells = s.split(";")
        if len(cells) != len(CELLS):
            raise InvalidArchitecture(
                f"a darts key has {len(CELLS)} ';'-separated cells like {example}, got {text!r}"
            )
        arch: dict[str, list[list[Any]]] = {}
        for expected, part in zip(CELLS, cells):
            name, sep, body = part.partition(":")
            if not sep or name.strip() != expected:
                raise InvalidArchitecture(
                    f"darts key: expected '{expected}:' to start cell {CELLS.index(expected) + 1} "
                    f"like {example}, got {part!r}"
                )
            nodes = body.split("|")
            if len(nodes) != NUM_NODES:
                raise InvalidArchitecture(
                    f"{expected}: a darts key lists {NUM_NODES} '|'-separated nodes, got {len(nodes)}"
                )
            pairs: list[list[Any]] = []
            for n, node in enumerate(nodes):
                items = node.split("+")
                if len(items) != 2:
                    raise InvalidArchitecture(
                        f"{expected} node {n + 2}: expected 'op~input+op~input', got {node!r}"
                    )
                for item in items:
                    op, sep, src = item.partition("~")
                    if not sep or not src.isdigit():
                        raise InvalidArchitecture(
                            f"{expected} node {n + 2}: expected 'op~input', got {item!r}"
                        )
                    pairs.append([op, int(src)])
            arch[expected] = pairs
        return arch

    def validate(self, arch: Any) -> dict[str, list[list[Any]]]:
        return self._to_json(self._cells(arch))

    def size(self) -> int:
        """Distinct networks: per node, an unordered pair drawn with repetition from 7 live
        operations times its inputs, plus ``none`` (whose input does not matter)."""
        per_cell = math.prod(
            (7 * inputs_of(n) + 1) * (7 * inputs_of(n) + 2) // 2 for n in range(NUM_NODES)
        )
        return per_cell ** len(CELLS)

    # -- networks ------------------------------------------------------------------------------

    def build(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
        normal, reduce = self._cells(arch)
        from spaces.darts_net import DARTSNetwork  # torch stays out of the API's import path

        return DARTSNetwork(
            list(normal),
            list(reduce),
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            channels=self.config.channels,
            layers=self.config.layers,
            stem_multiplier=self.config.stem_multiplier,
        )

    def costs(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Costs:
        """What ``build(arch, ...)`` costs, counted layer by layer as ``darts_net`` builds it."""
        normal, reduce = self._cells(arch)
        check_io(input_shape, num_classes)
        sequence = len(input_shape) == 2  # 1-D inputs run with 1 x k kernels

        def kernel_area(k: int) -> int:
            return k if sequence else k * k

        height, width = plane(input_shape)
        plan = cell_plan(self.config.channels, self.config.layers, self.config.stem_multiplier)
        size = height * width
        total = conv_costs(input_shape[0], plan[0].c_prev, kernel_area(3), size) + layer_costs(
            plan[0].c_prev, size, norm=True)
        sizes = (size, size)  # of the cell's two inputs, c_{k-2} and c_{k-1}
        for cell in plan:
            before = sizes[1]
            if cell.reduction:
                height, width = halved(height), halved(width)
            after = height * width
            if cell.reduction_prev:
                total += _factorized_reduce(cell.c_prev_prev, cell.c, sizes[0], before)
            else:
                total += _relu_conv_bn(cell.c_prev_prev, cell.c, before)
            total += _relu_conv_bn(cell.c_prev, cell.c, before)
            for op, src in reduce if cell.reduction else normal:
                strided = cell.reduction and src < 2
                total += _op_costs(op, cell.c, strided, kernel_area, before if src < 2 else after, after)
            sizes = (before, after)
        features = NUM_NODES * plan[-1].c
        return total + layer_costs(features, 1) + linear_costs(features, num_classes)

    def largest_costs(self, input_shape: tuple[int, ...], num_classes: int) -> Largest:
        """Every edge a 5x5 separable convolution of a cell input: no network of the space has more
        parameters, FLOPs or activations."""
        cell = [["sep_conv_5x5", 0]] * EDGES
        return uniform_shrink(self.costs({"normal": cell, "reduce": cell}, input_shape, num_classes), "channels",
                              "lower channels, layers or stem_multiplier")

    # -- one-shot search ------------------------------------------------------------------------

    def supernet(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """The weight-sharing supernet (torch.nn.Module) whose sub-networks are this space's networks."""
        from spaces.darts_supernet import DARTSSupernet  # torch stays out of the API's import path

        return DARTSSupernet(self, tuple(input_shape), num_classes)

    def supernet_params(self, input_shape: tuple[int, ...], num_classes: int) -> int:
        """The supernet's parameter count, computed without torch (the API checks memory with it)."""
        check_io(input_shape, num_classes)
        sequence = len(input_shape) == 2  # 1-D inputs run with 1 x k kernels

        def kernel_area(k: int) -> int:
            return k if sequence else k * k

        plan = cell_plan(self.config.channels, self.config.layers, self.config.stem_multiplier)
        total = conv_bn_params(input_shape[0], plan[0].c_prev, kernel_area(3))  # the stem
        for cell in plan:
            # preprocess0 is a FactorizedReduce after a reduction cell: the same count as a 1x1 conv.
            total += conv_bn_params(cell.c_prev_prev, cell.c, 1) + conv_bn_params(cell.c_prev, cell.c, 1)
            for node in range(NUM_NODES):
                for src in range(inputs_of(node)):
                    strided = cell.reduction and src < 2
                    total += sum(_op_params(op, cell.c, strided, kernel_area) for op in OPS)
        features = NUM_NODES * plan[-1].c
        return total + features * num_classes + num_classes

    def mixed_edges(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Per cell kind, (number of mixed edges, operation names): the architecture weights'
        shape. Node j's edges come from each of its 2 + j inputs, node-major, input-minor."""
        return {cell: (MIXED_EDGES, OPS) for cell in CELLS}

    def derive(self, weights: dict[str, list[list[float]]]) -> dict[str, list[list[Any]]]:
        """The architecture the weights select (canonical form), by DARTS' genotype rule: per node
        the two inputs whose strongest non-``none`` operation weighs most, each with that
        operation (ties go to the earlier input and the earlier operation, as in DARTS' code)."""
        if set(weights) != set(CELLS) or any(
            len(weights[c]) != MIXED_EDGES or any(len(row) != len(OPS) for row in weights[c]) for c in CELLS
        ):
            raise ValueError(
                f"darts architecture weights are {{'normal', 'reduce'}} each {MIXED_EDGES} rows of "
                f"{len(OPS)} operation weights ({', '.join(OPS)})"
            )
        live = [k for k, op in enumerate(OPS) if op != NONE]
        arch: dict[str, list[list[Any]]] = {}
        for cell in CELLS:
            pairs: list[list[Any]] = []
            for node in range(NUM_NODES):
                best = []  # per input: (its strongest live operation, that operation's weight)
                for src in range(inputs_of(node)):
                    row = weights[cell][mixed_edge(node, src)]
                    k = max(live, key=lambda k, row=row: (row[k], -k))
                    best.append((k, row[k]))
                chosen = sorted(range(inputs_of(node)), key=lambda src: -best[src][1])[:2]
                pairs += [[OPS[best[src][0]], src] for src in chosen]
            arch[cell] = pairs
        return self.validate(arch)
