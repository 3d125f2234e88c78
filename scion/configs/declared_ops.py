"""The operation vocabulary of declared spaces: each operation's parameters, how a declared
option is read, and the shape an operation turns its input into.

Pure Python (no torch), so that the API can refuse at submission a declared space that cannot
build: ``output_shape`` is the arithmetic torch applies (``spaces.declared_net`` builds its
modules from the same shapes, and tests compare both). Shapes leave out the batch:
``(features,)`` is flat, ``(channels, length)`` a sequence, ``(channels, height, width)`` an
image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]
MAX_OPTIONS = 256  # options of one choice, after expanding parameter lists


class ShapeError(ValueError):
    """An operation cannot take this input shape; the message says why and what would fit."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # int or float
    low: float
    high: float
    default: int | float | None = None  # None: the parameter must be given
    below_high: bool = False  # the high bound itself is excluded (dropout's p < 1)

    def rule(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        top = f"below {self.high:g}" if self.below_high else f"{self.high:g}"
        return f"{what} from {self.low:g} to {top}"

    def read(self, value: Any) -> int | float:
        """The value as this parameter's type, or ValueError saying what is allowed."""
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (self.kind is int and not isinstance(value, int)) or not math.isfinite(value):
            raise ValueError(f"{self.name}: {value!r} is not allowed; {self.name} is {self.rule()}")
        if not self.low <= value <= self.high or (self.below_high and value >= self.high):
            raise ValueError(f"{self.name}: {value!r} is out of range; {self.name} is {self.rule()}")
        return self.kind(value)


@dataclass(frozen=True)
class Operation:
    name: str
    summary: str
    params: tuple[Param, ...] = ()

    def signature(self) -> str:
        """``conv2d(channels, kernel=3, stride=1, dilation=1)``: required parameters first."""
        if not self.params:
            return self.name
        parts = [p.name if p.default is None else f"{p.name}={p.default:g}" for p in self.params]
        return f"{self.name}({', '.join(parts)})"


_CONV = (
    Param("channels", int, 1, 4096),
    Param("kernel", int, 1, 31, 3),
    Param("stride", int, 1, 8, 1),
    Param("dilation", int, 1, 16, 1),
)
_POOL = (Param("kernel", int, 2, 8, 2),)
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "elu")

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("identity", "passes its input on unchanged: makes a layer optional (alias: skip)"),
        Operation("linear", "fully connected layer; needs a flat input (alias: dense)",
                  (Param("units", int, 1, 65536),)),
        Operation("conv1d", "1-D convolution over a sequence (channels, length), 'same' padding", _CONV),
        Operation("conv2d", "2-D convolution over an image (channels, height, width), 'same' padding", _CONV),
        Operation("max_pool", "max pooling of a sequence or image, stride = kernel", _POOL),
        Operation("avg_pool", "average pooling of a sequence or image, stride = kernel", _POOL),
        Operation("global_avg_pool", "averages a sequence or image over its length / height and width: flat"),
        Operation("flatten", "flattens a sequence or image into (features,); a flat input is kept"),
        Operation("batchnorm", "batch normalisation over the channels (or the features, when flat)"),
        Operation("dropout", "zeroes each value with probability p while training",
                  (Param("p", float, 0, 1, 0.5, below_high=True),)),
        *(Operation(name, f"{name} activation") for name in ACTIVATIONS),
    )
}
ALIASES = {"dense": "linear", "skip": "identity"}


@dataclass(frozen=True)
class Option:
    """One concrete operation a layer choice may take, e.g. ``conv2d(channels=16,kernel=3,...)``."""

    op: str
    params: tuple[tuple[str, int | float], ...]  # every parameter, in the vocabulary's order

    @property
    def label(self) -> str:
        if not self.params:
            return self.op
        return f"{self.op}({','.join(f'{name}={value!r}' for name, value in self.params)})"

    def settings(self) -> dict[str, int | float]:
        return dict(self.params)


def vocabulary() -> str:
    """Every operation with its parameters, for messages and the schema's description."""
    return "; ".join(op.signature() for op in OPERATIONS.values())


def expand(spec: Any, limit: int = MAX_OPTIONS) -> list[Option]:
    """The options a declared operation stands for: ``"relu"``, or ``{"op": "conv2d", "channels":
    [8, 16], "kernel": 3}`` where a list gives the options of a parameter (every combination is
    an option, in the vocabulary's parameter order), at most ``limit`` of them. Raises ValueError
    naming the mistake."""
    if isinstance(spec, str):
        spec = {"op": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("op"), str):
        raise ValueError(f"an operation is a name like 'relu' or an object like {{'op': 'conv2d', 'channels': 16}}, "
                         f"got {spec!r}")
    name = ALIASES.get(spec["op"], spec["op"])
    op = OPERATIONS.get(name)
    if op is None:
        raise ValueError(f"unknown operation {spec['op']!r}; allowed: {', '.join([*OPERATIONS, *ALIASES])}")
    known = {p.name for p in op.params}
    extra = sorted(str(k) for k in spec if k != "op" and k not in known)
    if extra:
        allowed = ", ".join(p.name for p in op.params) or "none"
        raise ValueError(f"{op.name} has no parameter {', '.join(map(repr, extra))}; its parameters: {allowed}")
    combinations = math.prod(len(v) if isinstance(v, list) else 1 for v in spec.values())
    if combinations > limit:
        raise ValueError(f"{op.name}: its parameter lists make {combinations} options, more than the {limit} left of "
                         f"the {MAX_OPTIONS} a choice may offer; split it into several choices")
    choices: list[list[tuple[str, int | float]]] = [[]]
    for param in op.params:
        given = spec.get(param.name, param.default)
        if given is None:
            raise ValueError(f"{op.name} needs {param.name} ({param.rule()}); e.g. {op.signature()}")
        values = given if isinstance(given, list) else [given]
        if not values:
            raise ValueError(f"{param.name}: an empty list offers no option; give a value or a list of values")
        read = [param.read(v) for v in values]
        if len(set(read)) != len(read):
            raise ValueError(f"{param.name}: repeated options {values}")
        choices = [c + [(param.name, v)] for c in choices for v in read]
    return [Option(op.name, tuple(c)) for c in choices]


_KINDS = {  # rank -> (what an operation needs, what an input is)
    1: ("a flat input (features,)", "flat"),
    2: ("a sequence (channels, length)", "a sequence"),
    3: ("an image (channels, height, width)", "an image"),
}


def describe(shape: Shape) -> str:
    """``an image (1, 8, 8)``."""
    return f"{_KINDS[len(shape)][1]} {shape}" if len(shape) in _KINDS else f"a {len(shape)}-d input {shape}"


def _needs(option: Option, shape: Shape, ranks: tuple[int, ...], hints: dict[int, str]) -> None:
    """ShapeError unless the input has one of ``ranks``; ``hints`` says, per rank met, what to do."""
    if len(shape) not in ranks:
        wanted = " or ".join(_KINDS[r][0] for r in ranks)
        hint = f"; {hints[len(shape)]}" if len(shape) in hints else ""
        raise ShapeError(f"{option.label} needs {wanted}, but its input is {describe(shape)}{hint}")


def _conv_length(length: int, kernel: int, stride: int, dilation: int) -> int:
    padding = dilation * (kernel - 1) // 2
    return (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_shape(option: Option, shape: Shape) -> Shape:
    """The shape ``option`` turns ``shape`` into, or ShapeError."""
    p = option.settings()
    op = option.op
    if op in ("identity", "batchnorm", "dropout", *ACTIVATIONS):
        return shape
    if op == "flatten":
        return (math.prod(shape),)
    flat = "it cannot follow flatten, global_avg_pool or linear"
    if op == "linear":
        flatten = "put flatten or global_avg_pool before it"
        _needs(option, shape, (1,), {2: flatten, 3: flatten})
        return (int(p["units"]),)
    if op == "global_avg_pool":
        _needs(option, shape, (2, 3), {1: flat})
        return (shape[0],)
    if op in ("conv1d", "conv2d"):
        rank = 2 if op == "conv1d" else 3
        _needs(option, shape, (rank,), {1: flat, 2: "use conv1d for sequences", 3: "use conv2d for images"})
        sizes = [_conv_length(n, int(p["kernel"]), int(p["stride"]), int(p["dilation"])) for n in shape[1:]]
    else:  # max_pool, avg_pool
        _needs(option, shape, (2, 3), {1: flat})
        sizes = [(n - int(p["kernel"])) // int(p["kernel"]) + 1 for n in shape[1:]]
    if min(sizes) < 1:
        raise ShapeError(f"{option.label} leaves nothing of its input, {describe(shape)}: too small for this kernel; "
                         "pool or stride less before it, or use a smaller kernel")
    return (int(p.get("channels", shape[0])), *sizes)
