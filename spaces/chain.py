"""A chain (macro) space in the MnasNet / ProxylessNAS style (Tan et al., CVPR 2019; Cai et al.,
ICLR 2019): a fixed sequence of stages, each a run of inverted-residual blocks whose shape is
searched per stage.

An architecture is the JSON list of per-stage settings, one object per stage::

    [{"depth": 2, "kernel": 5, "expand": 6, "width": 1.0, "se": true}, ...]

- ``depth``: blocks in the stage; the first block applies the stage's stride and width change,
  the others keep the shape and carry a residual connection;
- ``kernel``: the depthwise convolution's size;
- ``expand``: the expansion ratio of the 1x1 convolution before it (MobileNetV2);
- ``width``: multiplier of the stage's base channels (rounded to the nearest integer);
- ``se``: squeeze-and-excitation after the depthwise convolution.

Every setting matters for every stage, so the canonical form is the list itself with ``width``
written as a float; ``key`` is ``d2-k5-e6-w1.0-se1|...`` (stages separated by ``|``). The options
of each decision come from the config (MnasNet's defaults: depth 1-4, kernel 3/5/7, expansion
3/6, width 0.75/1.0/1.25, SE on/off), so a user can narrow or widen the space.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from scion.configs.spaces import ChainConfig, scaled_channels
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
    plane,
    uniform_shrink,
)
from spaces.categorical import CategoricalSpace

FIELDS: tuple[str, ...] = ("depth", "kernel", "expand", "width", "se")
_TYPES: dict[str, tuple[type, ...]] = {
    "depth": (int,), "kernel": (int,), "expand": (int,), "width": (float, int), "se": (bool,)
}




class ChainSpace(CategoricalSpace):
    """Per-stage inverted-residual settings; stage widths and strides come from the config."""

    def __init__(self, config: ChainConfig | None = None) -> None:
        self.config = config if config is not None else ChainConfig()
        c = self.config
        self.options: dict[str, tuple[Any, ...]] = {
            "depth": tuple(c.depths),
            "kernel": tuple(c.kernels),
            "expand": tuple(c.expansions),
            "width": tuple(float(w) for w in c.widths),
            "se": tuple(c.se),
        }
        self.stages = len(c.channels)
        self._lookup = {f: {v: i for i, v in enumerate(opts)} for f, opts in self.options.items()}

    # -- internal forms ------------------------------------------------------------------------

    def _allowed(self, field: str) -> str:
        if field == "se":
            return ", ".join("true" if v else "false" for v in self.options[field])
        return ", ".join(_fmt(field, v) for v in self.options[field])

    def _index(self, stage: int, field: str, value: Any) -> int:
        if type(value) in _TYPES[field]:  # exact types: True must not pass for 1
            index = self._lookup[field].get(value)
            if index is not None:
                return index
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return self._index(stage, field, value.item())
        where = f"stage {stage} {field}"
        allowed = self._allowed(field)
        if field == "se" and not isinstance(value, bool):
            raise InvalidArchitecture(f"{where}: expected true or false, got {value!r}; allowed: {allowed}")
        if field != "se" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidArchitecture(f"{where}: expected a number, got {value!r}; allowed: {allowed}")
        raise InvalidArchitecture(f"{where}: {value!r} is not an option; allowed: {allowed}")

    def _indices(self, arch: Any) -> list[list[int]]:
        """Per stage, the option index of each field."""
        if isinstance(arch, str):
            arch = self.from_key(arch)
        example = '{"depth": 2, "kernel": 5, "expand": 6, "width": 1.0, "se": true}'
        if not isinstance(arch, (list, tuple)):
            raise InvalidArchitecture(
                f"a chain architecture is a list of {self.stages} stage objects like {example}, "
                f"got {type(arch).__name__}"
            )
        if len(arch) != self.stages:
            raise InvalidArchitecture(
                f"a chain architecture has one object per stage: expected {self.stages}, got {len(arch)}"
            )
        out = []
        for stage, item in enumerate(arch):
            check_fields(item, FIELDS, f"stage {stage}", "stage", example)
            out.append([self._index(stage, f, item[f]) for f in FIELDS])
        return out

    def _to_json(self, indices: list[list[int]]) -> list[dict[str, Any]]:
        return [{f: self.options[f][i] for f, i in zip(FIELDS, stage)} for stage in indices]

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        return self._to_json(
            [[int(rng.integers(len(self.options[f]))) for f in FIELDS] for _ in range(self.stages)]
        )

    # -- categorical decisions -----------------------------------------------------------------

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        return [
            (f"stage {s} {f}", tuple(("on" if v else "off") if f == "se" else _fmt(f, v) for v in self.options[f]))
            for s in range(self.stages)
            for f in FIELDS
        ]

    def _choices_of(self, arch: Any) -> list[int | None]:
        return [i for row in self._indices(arch) for i in row]

    def _arch_of(self, choices: list[int]) -> list[dict[str, Any]]:
        n = len(FIELDS)
        return self._to_json([choices[s * n : (s + 1) * n] for s in range(self.stages)])

    # -- canonical forms -----------------------------------------------------------------------

    def key(self, arch: Any) -> str:
        return "|".join(
            "-".join(f"{_PREFIX[f]}{_fmt(f, self.options[f][i])}" for f, i in zip(FIELDS, row))
            for row in self._indices(arch)
        )

    def from_key(self, text: str) -> list[dict[str, Any]]:
        example = "d2-k5-e6-w1.0-se1|..."
        stages = text.strip().split("|")
        if len(stages) != self.stages:
            raise InvalidArchitecture(
                f"a chain key lists {self.stages} '|'-separated stages like {example}, got "
                f"{len(stages)} in {text!r}"
            )
        arch = []
        for stage, part in enumerate(stages):
            items = part.split("-")
            if len(items) != len(FIELDS) or not all(
                it.startswith(_PREFIX[f]) for it, f in zip(items, FIELDS)
            ):
                raise InvalidArchitecture(
                    f"stage {stage}: expected 'd<depth>-k<kernel>-e<expand>-w<width>-se<0|1>', got {part!r}"
                )
            values: dict[str, Any] = {}
            for it, f in zip(items, FIELDS):
                raw = it[len(_PREFIX[f]):]
                try:
                    if f == "se":
                        if raw not in ("0", "1"):
                            raise ValueError
                        values[f] = raw == "1"
                    elif f == "width":
                        values[f] = float(raw)
                    else:
                        values[f] = int(raw)
                except ValueError:
                    raise InvalidArchitecture(
                        f"stage {stage} {f}: cannot read {raw!r} in {part!r}; allowed: {self._allowed(f)}"
                    ) from None
            arch.append(values)
        return arch

    def validate(self, arch: Any) -> list[dict[str, Any]]:
        return self._to_json(self._indices(arch))

    def size(self) -> int:
        return math.prod(len(self.options[f]) for f in FIELDS) ** self.stages

    # -- networks ------------------------------------------------------------------------------

    def build(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
        stages = self.validate(arch)
        from spaces.chain_net import ChainNetwork  # torch stays out of the API's import path

        c = self.config
        return ChainNetwork(
            stages,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            channels=list(c.channels),
            strides=list(c.strides),
            stem_channels=c.stem_channels,
            head_channels=c.head_channels,
        )

    def costs(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Costs:
        """What ``build(arch, ...)`` costs, counted layer by layer as ``chain_net`` builds it."""
        stages = self.validate(arch)
        c = self.config
        sequence = len(input_shape) == 2  # 1-D inputs run 1 x k kernels and 1 x s strides
        height, width = plane(input_shape)
        size = height * width
        total = (conv_costs(input_shape[0], c.stem_channels, 3 if sequence else 9, size)
                 + layer_costs(c.stem_channels, size, norm=True) + layer_costs(c.stem_channels, size))
        c_in = c.stem_channels
        for stage, base, stride in zip(stages, c.channels, c.strides):
            c_out = scaled_channels(base, stage["width"])
            for block in range(stage["depth"]):
                before = size
                if block == 0 and stride == 2:
                    height, width = halved(height), halved(width)
                    size = height * width
                total += _block_costs(c_in, c_out, stage, sequence, before, size)
                c_in = c_out
        if c.head_channels:
            total += (conv_costs(c_in, c.head_channels, 1, size) + layer_costs(c.head_channels, size, norm=True)
                      + layer_costs(c.head_channels, size))
            c_in = c.head_channels
        return total + layer_costs(c_in, 1) + linear_costs(c_in, num_classes)

    def largest_costs(self, input_shape: tuple[int, ...], num_classes: int) -> Largest:
        """Every stage at its largest depth, kernel, expansion and width, with SE where it is an
        option: no network of the space has more parameters, FLOPs or activations."""
        largest = {field: max(options) for field, options in self.options.items()}
        return uniform_shrink(self.costs([largest] * self.stages, input_shape, num_classes), "channels",
                              "lower channels, stem_channels, head_channels, or the largest depths, expansions, "
                              "widths or kernels")

    def widest_channels(self) -> list[int]:
        """Per stage, the output channels of its widest option: the supernet's sizes."""
        return [max(scaled_channels(base, w) for w in self.options["width"]) for base in self.config.channels]

    def supernet(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """The weight-sharing supernet (torch.nn.Module) whose sub-networks are this space's networks."""
        from spaces.chain_supernet import ChainSupernet  # torch stays out of the API's import path

        return ChainSupernet(self, tuple(input_shape), num_classes)

    def supernet_params(self, input_shape: tuple[int, ...], num_classes: int) -> int:
        """The supernet's parameter count, computed without torch (the API checks memory with it):
        every block at its stage's largest depth, input width, expansion and kernel."""
        c = self.config
        sequence = len(input_shape) == 2  # 1-D inputs run 1 x k kernels
        k = max(self.options["kernel"])
        kernel, stem = (k, 3) if sequence else (k * k, 9)
        expand = max(self.options["expand"])
        se = True in self.options["se"]
        total = conv_bn_params(input_shape[0], c.stem_channels, stem)
        c_in = c.stem_channels
        for c_out in self.widest_channels():
            for _ in range(max(self.options["depth"])):
                hidden = c_in * expand
                if expand != 1:
                    total += conv_bn_params(c_in, hidden, 1)
                total += conv_bn_params(1, hidden, kernel)  # depthwise: one input channel per group
                if se:
                    squeezed = max(1, c_in // 4)
                    total += 2 * hidden * squeezed + squeezed + hidden
                total += conv_bn_params(hidden, c_out, 1)
                c_in = c_out
        if c.head_channels:
            total += conv_bn_params(c_in, c.head_channels, 1)
            c_in = c.head_channels
        return total + c_in * num_classes + num_classes


def _block_costs(c_in: int, c_out: int, stage: dict[str, Any], sequence: bool, before: int, after: int) -> Costs:
    """One inverted-residual block as ``chain_net.InvertedResidual`` builds it, reading ``before``
    positions and writing ``after``."""
    hidden = c_in * stage["expand"]
    total = Costs()
    if stage["expand"] != 1:  # 1x1 expansion, BN, ReLU
        total += (conv_costs(c_in, hidden, 1, before) + layer_costs(hidden, before, norm=True)
                  + layer_costs(hidden, before))
    area = stage["kernel"] if sequence else stage["kernel"] ** 2
    total += (conv_costs(hidden, hidden, area, after, groups=hidden) + layer_costs(hidden, after, norm=True)
              + layer_costs(hidden, after))
    if stage["se"]:  # pool, 1x1 with bias, ReLU, 1x1 with bias, sigmoid
        squeezed = max(1, c_in // 4)
        total += (layer_costs(hidden, 1) + conv_costs(hidden, squeezed, 1, 1, bias=True) + layer_costs(squeezed, 1)
                  + conv_costs(squeezed, hidden, 1, 1, bias=True) + layer_costs(hidden, 1))
    return total + conv_costs(hidden, c_out, 1, after) + layer_costs(c_out, after, norm=True)


_PREFIX = {"depth": "d", "kernel": "k", "expand": "e", "width": "w", "se": "se"}


def _fmt(field: str, value: Any) -> str:
    if field == "se":
        return "1" if value else "0"
    if field == "width":
        return repr(float(value))
    return str(value)
