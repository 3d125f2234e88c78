"""A 1-D convolutional space for sequences (MNIST-1D, a user's time series).

An architecture is the JSON list of its layers, between ``min_layers`` and ``max_layers`` long::

    [{"kernel": 5, "channels": 32, "dilation": 2, "pool": "max", "skip": true}, ...]

Each layer is a dilated ``Conv1d`` ("same" padding), BatchNorm and ReLU; ``skip`` adds a
residual shortcut around it (a 1x1 convolution when the width changes); ``pool`` then halves the
length with max or average pooling of size 2, or keeps it (``none``). A global average pool and a
linear classifier follow the last layer. Images ``(C, H, W)`` are read as sequences of length
``H * W`` (row by row), so the space also runs on digits.

Depth is a decision of its own: ``decisions()`` lists ``depth`` first and then every setting of
all ``max_layers`` layers; the settings of layers past ``depth`` are ignored, and written as each
decision's first option by ``to_choices`` (so equal networks have equal choices, keys and
encodings). The key is ``k5-c32-d2-pmax-s1|...``, one item per layer.
"""
from __future__ import annotations

import math
from itertools import product
from typing import Any

import numpy as np

from scion.configs.spaces import Conv1DConfig
from spaces.base import (
    Costs,
    InvalidArchitecture,
    Largest,
    check_fields,
    conv_bn_params,
    conv_costs,
    halved,
    layer_costs,
    linear_costs,
    uniform_shrink,
)
from spaces.categorical import CategoricalSpace

FIELDS: tuple[str, ...] = ("kernel", "channels", "dilation", "pool", "skip")
_TYPES: dict[str, type] = {"kernel": int, "channels": int, "dilation": int, "pool": str, "skip": bool}
_PREFIX = {"kernel": "k", "channels": "c", "dilation": "d", "pool": "p", "skip": "s"}


class Conv1DSpace(CategoricalSpace):
    """Variable-depth stacks of 1-D convolution layers."""

    def __init__(self, config: Conv1DConfig | None = None) -> None:
        self.config = config if config is not None else Conv1DConfig()
        c = self.config
        self.options: dict[str, tuple[Any, ...]] = {
            "kernel": tuple(c.kernels),
            "channels": tuple(c.channels),
            "dilation": tuple(c.dilations),
            "pool": tuple(c.pools),
            "skip": tuple(c.skips),
        }
        self.depths = tuple(range(c.min_layers, c.max_layers + 1))
        self._lookup = {f: {v: i for i, v in enumerate(opts)} for f, opts in self.options.items()}

    # -- internal forms ------------------------------------------------------------------------

    def _allowed(self, field: str) -> str:
        if field == "skip":
            return ", ".join("true" if v else "false" for v in self.options[field])
        return ", ".join(str(v) for v in self.options[field])

    def _index(self, layer: int, field: str, value: Any) -> int:
        if type(value) is _TYPES[field]:  # exact types: True must not pass for 1
            index = self._lookup[field].get(value)
            if index is not None:
                return index
        if isinstance(value, (np.integer, np.bool_, np.str_)):
            return self._index(layer, field, value.item())
        where = f"layer {layer} {field}"
        allowed = self._allowed(field)
        if type(value) is not _TYPES[field]:
            expected = {"skip": "true or false", "pool": "a string"}.get(field, "an integer")
            raise InvalidArchitecture(f"{where}: expected {expected}, got {value!r}; allowed: {allowed}")
        raise InvalidArchitecture(f"{where}: {value!r} is not an option; allowed: {allowed}")

    def _indices(self, arch: Any) -> list[list[int]]:
        """Per layer, the option index of each field."""
        if isinstance(arch, str):
            arch = self.from_key(arch)
        example = '{"kernel": 5, "channels": 32, "dilation": 2, "pool": "max", "skip": true}'
        lo, hi = self.depths[0], self.depths[-1]
        if not isinstance(arch, (list, tuple)):
            raise InvalidArchitecture(
                f"a conv1d architecture is a list of {lo} to {hi} layer objects like {example}, "
                f"got {type(arch).__name__}"
            )
        if not lo <= len(arch) <= hi:
            raise InvalidArchitecture(
                f"a conv1d architecture has {lo} to {hi} layers (min_layers..max_layers), got {len(arch)}"
            )
        out = []
        for layer, item in enumerate(arch):
            check_fields(item, FIELDS, f"layer {layer}", "layer", example)
            out.append([self._index(layer, f, item[f]) for f in FIELDS])
        return out

    def _to_json(self, indices: list[list[int]]) -> list[dict[str, Any]]:
        return [{f: self.options[f][i] for f, i in zip(FIELDS, row)} for row in indices]

    # -- sampling ------------------------------------------------------------------------------

    def _random_layer(self, rng: np.random.Generator) -> list[int]:
        return [int(rng.integers(len(self.options[f]))) for f in FIELDS]

    def sample(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        """Depth uniform over min_layers..max_layers, then every layer's settings uniform."""
        depth = self.depths[int(rng.integers(len(self.depths)))]
        return self._to_json([self._random_layer(rng) for _ in range(depth)])

    # -- categorical decisions -----------------------------------------------------------------

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        out = [("depth", tuple(str(d) for d in self.depths))]
        for layer in range(self.depths[-1]):
            for f in FIELDS:
                options = tuple(
                    ("on" if v else "off") if f == "skip" else str(v) for v in self.options[f]
                )
                out.append((f"layer {layer} {f}", options))
        return out

    def _choices_of(self, arch: Any) -> list[int | None]:
        """Depth, then every layer's settings; those of layers past the depth do not apply."""
        indices = self._indices(arch)
        choices: list[int | None] = [self.depths.index(len(indices))]
        for layer in range(self.depths[-1]):
            choices += indices[layer] if layer < len(indices) else [None] * len(FIELDS)
        return choices

    def _arch_of(self, choices: list[int]) -> list[dict[str, Any]]:
        depth = self.depths[choices[0]]
        n = len(FIELDS)
        return self._to_json([choices[1 + i * n : 1 + (i + 1) * n] for i in range(depth)])

    def _edit_order(self) -> list[int]:
        """Every layer setting, then the depth (layers cut from the end, or added there with each
        setting's first option): the order conv1d's neighbours, and so its seeded mutations, have
        always had."""
        return [*range(1, len(self._sizes)), 0]

    # -- canonical forms -----------------------------------------------------------------------

    def key(self, arch: Any) -> str:
        return "|".join(
            "-".join(f"{_PREFIX[f]}{_fmt(f, self.options[f][i])}" for f, i in zip(FIELDS, row))
            for row in self._indices(arch)
        )

    def from_key(self, text: str) -> list[dict[str, Any]]:
        example = "k5-c32-d2-pmax-s1|..."
        arch = []
        for layer, part in enumerate(text.strip().split("|")):
            items = part.split("-")
            if len(items) != len(FIELDS) or not all(
                it.startswith(_PREFIX[f]) for it, f in zip(items, FIELDS)
            ):
                raise InvalidArchitecture(
                    f"layer {layer}: a conv1d key lists layers like {example} "
                    f"('k<kernel>-c<channels>-d<dilation>-p<none|max|avg>-s<0|1>'), got {part!r}"
                )
            values: dict[str, Any] = {}
            for it, f in zip(items, FIELDS):
                raw = it[len(_PREFIX[f]):]
                if f == "pool":
                    values[f] = raw
                elif f == "skip":
                    if raw not in ("0", "1"):
                        raise InvalidArchitecture(f"layer {layer} skip: expected s0 or s1, got {it!r}")
                    values[f] = raw == "1"
                elif raw.isdigit():
                    values[f] = int(raw)
                else:
                    raise InvalidArchitecture(
                        f"layer {layer} {f}: cannot read {raw!r} in {part!r}; allowed: {self._allowed(f)}"
                    )
            arch.append(values)
        return arch

    def validate(self, arch: Any) -> list[dict[str, Any]]:
        return self._to_json(self._indices(arch))

    def size(self) -> int:
        per_layer = 1
        for f in FIELDS:
            per_layer *= len(self.options[f])
        return sum(per_layer**d for d in self.depths)

    # -- networks ------------------------------------------------------------------------------

    def build(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
        layers = self.validate(arch)
        from spaces.conv1d_net import Conv1DNetwork  # torch stays out of the API's import path

        return Conv1DNetwork(layers, input_shape=tuple(input_shape), num_classes=num_classes)

    def costs(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Costs:
        """What ``build(arch, ...)`` costs, counted layer by layer as ``conv1d_net`` builds it."""
        c, length, total = input_shape[0], math.prod(input_shape[1:]), Costs()
        for layer in self.validate(arch):
            total += _layer_costs(c, layer["channels"], layer["kernel"], layer["pool"], layer["skip"], length)
            c, length = layer["channels"], length if layer["pool"] == "none" else halved(length)
        return total + layer_costs(c, 1) + linear_costs(c, num_classes)

    def largest_costs(self, input_shape: tuple[int, ...], num_classes: int) -> Largest:
        """Each cost's most over the networks, layer by layer: per (channels, length) a layer may
        leave, the most each cost reaches there (the widest layer need not be the costliest: a
        shortcut is a 1x1 convolution only where the width changes). The largest kernel always costs most."""
        kernel = max(self.options["kernel"])
        reach = {(input_shape[0], math.prod(input_shape[1:])): Costs()}
        most = Costs()
        for depth in range(1, self.depths[-1] + 1):
            after: dict[tuple[int, int], Costs] = {}
            for (c_in, length), so_far in reach.items():
                for c_out, pool, skip in product(self.options["channels"], self.options["pool"], self.options["skip"]):
                    state = (c_out, length if pool == "none" else halved(length))
                    cost = so_far + _layer_costs(c_in, c_out, kernel, pool, skip, length)
                    after[state] = after[state].most(cost) if state in after else cost
            reach = after
            if depth in self.depths:
                for (c, _), so_far in reach.items():
                    most = most.most(so_far + layer_costs(c, 1) + linear_costs(c, num_classes))
        return uniform_shrink(most, "channels", "lower the largest channels or kernels, or max_layers")

    # -- one-shot NAS --------------------------------------------------------------------------

    def supernet(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """The weight-sharing supernet (torch.nn.Module) whose sub-networks are this space's networks."""
        from spaces.conv1d_supernet import Conv1DSupernet  # torch stays out of the API's import path

        return Conv1DSupernet(self, tuple(input_shape), num_classes)

    def supernet_layers(self, input_channels: int) -> list[tuple[int, int, bool]]:
        """Per layer of the supernet (``max_layers`` of them, once-for-all style: every setting's
        weights are a slice of the largest), its convolution's input and output channels and
        whether it holds a 1x1 shortcut, which it does when some network's layer there has a
        shortcut that changes the width. Its kernel is the largest option."""
        widest = max(self.options["channels"])
        layers, c_in, inputs = [], input_channels, (input_channels,)
        for _ in range(self.depths[-1]):
            widens = any(a != b for a in inputs for b in self.options["channels"])
            layers.append((c_in, widest, widens and True in self.options["skip"]))
            c_in, inputs = widest, self.options["channels"]
        return layers

    def supernet_params(self, input_shape: tuple[int, ...], num_classes: int) -> int:
        """The supernet's parameter count, computed without torch (the API checks memory with it)."""
        kernel, total, c_out = max(self.options["kernel"]), 0, 0
        for c_in, c_out, shortcut in self.supernet_layers(input_shape[0]):
            total += conv_bn_params(c_in, c_out, kernel)
            total += conv_bn_params(c_in, c_out, 1) if shortcut else 0
        return total + c_out * num_classes + num_classes


def _layer_costs(c_in: int, c_out: int, kernel: int, pool: str, skip: bool, length: int) -> Costs:
    """One layer as ``conv1d_net.ConvLayer`` builds it: convolution, BN, the shortcut (a 1x1
    convolution and BN where the width changes), ReLU, pooling; ``length`` in."""
    total = conv_costs(c_in, c_out, kernel, length) + layer_costs(c_out, length, norm=True)
    if skip and c_in != c_out:
        total += conv_costs(c_in, c_out, 1, length) + layer_costs(c_out, length, norm=True)
    total += layer_costs(c_out, length)
    return total if pool == "none" else total + layer_costs(c_out, halved(length))


def _fmt(field: str, value: Any) -> str:
    if field == "skip":
        return "1" if value else "0"
    return str(value)
