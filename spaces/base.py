"""Helpers shared by the built-in spaces. The interface they implement is the core's
(``scion.space``), which the job spec and the strategies program against; a space whose
architectures are vectors of categorical choices gets ``mutate``, ``neighbours``, ``encode`` and
the choices from ``spaces.categorical``."""
from __future__ import annotations

from typing import Any

from scion.space import (
    COST_NAMES,
    Arch,
    Costs,
    InvalidArchitecture,
    InvalidSpace,
    Largest,
    SearchSpace,
    check_input,
    searched_settings,
    training_settings,
)

__all__ = ["Arch", "Costs", "InvalidArchitecture", "InvalidSpace", "Largest", "SearchSpace", "check_fields",
           "check_input", "conv_bn_params", "conv_costs", "halved", "layer_costs", "linear_costs", "plane",
           "searched_settings", "training_settings", "uniform_shrink"]


def conv_bn_params(c_in: int, c_out: int, kernel_area: int) -> int:
    """Parameters of a bias-free convolution (``kernel_area`` taps per input channel) followed by
    BatchNorm (its scale and shift): what the spaces' supernet parameter counts add up, without torch."""
    return c_in * c_out * kernel_area + 2 * c_out


def check_fields(item: Any, fields: tuple[str, ...], where: str, kind: str, example: Any) -> None:
    """For spaces whose architecture is a list of objects (one per stage or layer): refuse an
    item that is not an object with exactly ``fields``, naming what is missing or unexpected."""
    if not isinstance(item, dict):
        raise InvalidArchitecture(f"{where}: expected an object like {example}, got {item!r}")
    missing = [f for f in fields if f not in item]
    extra = sorted(str(k) for k in item if k not in fields)
    if missing or extra:
        detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                             f"unexpected {', '.join(extra)}" if extra else "") if part)
        raise InvalidArchitecture(f"{where}: a {kind} has exactly the fields {', '.join(fields)} ({detail})")


# What a network costs, layer by layer, for ``Costs`` (the spaces' ``costs`` and ``largest_costs``
# add these up as their networks are built; tests/contract/test_costs.py holds them to torch's counts).


def conv_costs(c_in: int, c_out: int, kernel_area: int, positions: int, *, groups: int = 1,
               bias: bool = False) -> Costs:
    """A convolution with ``positions`` output positions (height x width, or length)."""
    weights = c_in // groups * c_out * kernel_area
    return Costs(weights + (c_out if bias else 0), 2 * weights * positions, c_out * positions)


def layer_costs(channels: int, positions: int, *, norm: bool = False) -> Costs:
    """A layer that keeps its input's size and computes no multiply-adds: an activation, a
    pooling (``positions`` being its output's), or a BatchNorm (``norm``: its scale and shift)."""
    return Costs(2 * channels if norm else 0, 0, channels * positions)


def linear_costs(n_in: int, n_out: int) -> Costs:
    return Costs(n_in * n_out + n_out, 2 * n_in * n_out, n_out)


def plane(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(height, width) of an image, (1, length) of a sequence run as an image of height 1."""
    return (1, input_shape[1]) if len(input_shape) == 2 else (input_shape[1], input_shape[2])


def halved(size: int) -> int:
    """A side after a stride-2 convolution or pooling with padding (or ``ceil_mode``): ceil(size / 2)."""
    return (size + 1) // 2


def uniform_shrink(costs: Costs, field: str, advice: str) -> Largest:
    """The largest costs of a space whose every cost shrinks with the same choices."""
    return Largest(costs, {name: (field, advice) for name in COST_NAMES})
