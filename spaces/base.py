"""The search-space interface every space implements (NASLib's shape: the space owns
sampling, mutation, neighbourhoods, encodings and building).

Architectures are plain JSON values. Torch is imported only inside ``build`` so that the API
and the scheduler never need it. A space whose architectures are vectors of categorical choices
gets ``mutate``, ``neighbours``, ``encode`` and the choices from ``spaces.categorical``.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

Arch = Any  # a JSON-serialisable architecture value


class InvalidArchitecture(ValueError):
    """An architecture value that does not belong to the space; the message says why."""


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


class SearchSpace(Protocol):
    def sample(self, rng: np.random.Generator) -> Arch: ...

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A random architecture one edit away, always different from ``arch``."""

    def neighbours(self, arch: Arch) -> list[Arch]:
        """Every architecture one edit away, in a fixed order."""

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector (one-hot per decision)."""

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        """The space as independent categorical decisions (name, options), for strategies that
        learn a distribution per decision (REINFORCE, TPE)."""

    def to_choices(self, arch: Arch) -> list[int]:
        """The option index taken at each decision."""

    def from_choices(self, choices: list[int]) -> Arch: ...

    def key(self, arch: Arch) -> str:
        """Canonical string: equal keys mean the same network."""

    def validate(self, arch: Any) -> Arch:
        """Return the canonical form of ``arch`` or raise InvalidArchitecture."""

    def size(self) -> int | None:
        """Number of architectures when finite, else None."""

    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """A torch.nn.Module taking a batch of ``input_shape`` tensors."""


class InvalidSpace(ValueError):
    """A space that cannot build a network for the job's data (a declared space whose layers do
    not fit the input shape); the message names the choice and why."""


# A space may also search training settings jointly with the network (a declared space's
# hyperparameters) and depend on the shape of the data (a declared space's layers). These
# helpers let the job spec, the scheduler and the train evaluator ask any space, without every
# space having to answer.


def searched_settings(space: SearchSpace) -> dict[str, tuple[Any, ...]]:
    """Training settings (evaluator config fields such as ``lr``) searched with the network, with
    their options; empty for spaces that search networks only."""
    settings = getattr(space, "searched_settings", None)
    return dict(settings()) if settings is not None else {}


def training_settings(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """The training settings ``arch`` carries, which override the evaluator's config for its trial."""
    settings = getattr(space, "training_settings", None)
    return dict(settings(arch)) if settings is not None else {}


def check_input(space: SearchSpace, input_shape: tuple[int, ...]) -> None:
    """Raise InvalidSpace when some network of ``space`` cannot take inputs of ``input_shape``
    (checked at submission, where the dataset's shape is known without loading it)."""
    check = getattr(space, "check_input", None)
    if check is not None:
        check(tuple(input_shape))
