"""Helpers shared by the built-in spaces. The interface they implement is the core's
(``scion.space``), which the job spec and the strategies program against; a space whose
architectures are vectors of categorical choices gets ``mutate``, ``neighbours``, ``encode`` and
the choices from ``spaces.categorical``."""
from __future__ import annotations

from typing import Any

from scion.space import (
    Arch,
    InvalidArchitecture,
    InvalidSpace,
    SearchSpace,
    check_input,
    searched_settings,
    training_settings,
)

__all__ = ["Arch", "InvalidArchitecture", "InvalidSpace", "SearchSpace", "check_fields", "check_input",
           "conv_bn_params", "searched_settings", "training_settings"]


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
