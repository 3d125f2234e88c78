"""The search-space interface every space implements (NASLib's shape: the space owns
sampling, mutation, neighbourhoods, encodings and building). It lives in the core because the
job spec and the strategies program against it; the spaces in ``spaces/`` implement it.

Architectures are plain JSON values. Torch is imported only inside ``build`` so that the API
and the scheduler never need it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

Arch = Any  # a JSON-serialisable architecture value


class InvalidArchitecture(ValueError):
    """An architecture value that does not belong to the space; the message says why."""


@dataclass(frozen=True)
class Costs:
    """What one network costs, counted from its shape without torch: ``params`` as torch counts
    them; ``flops`` per example for a forward pass, as the worker measures them (a multiply-add is
    2, element-wise operations, pooling and normalisation 0); ``activations`` the elements of every
    layer's output per example (convolutions, normalisations, activations, pooling, linear
    layers), which training keeps for the backward pass."""

    params: int = 0
    flops: int = 0
    activations: int = 0

    def __add__(self, other: Costs) -> Costs:
        return Costs(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Costs)))

    def most(self, other: Costs) -> Costs:
        """Each cost the larger of the two (maybe of different networks)."""
        return Costs(*(max(getattr(self, f.name), getattr(other, f.name)) for f in fields(Costs)))


COST_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Costs))


@dataclass(frozen=True)
class Largest:
    """The most each cost reaches over a space's networks (``costs``), and per cost the part of
    the space's config to shrink when it is too much: (field under ``space``, advice)."""

    costs: Costs
    shrink: dict[str, tuple[str, str]]


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


def network_costs(space: SearchSpace, arch: Arch, input_shape: tuple[int, ...], num_classes: int) -> Costs | None:
    """What ``space.build(arch, input_shape, num_classes)`` costs, or None for a space that cannot tell."""
    costs = getattr(space, "costs", None)
    return costs(arch, tuple(input_shape), num_classes) if costs is not None else None


def largest_costs(space: SearchSpace, input_shape: tuple[int, ...], num_classes: int) -> Largest | None:
    """The most any network of ``space`` costs for this data, or None for a space that cannot tell;
    checked against the server's limits at submission (``scion.budgets``)."""
    largest = getattr(space, "largest_costs", None)
    return largest(tuple(input_shape), num_classes) if largest is not None else None


def check_input(space: SearchSpace, input_shape: tuple[int, ...]) -> None:
    """Raise InvalidSpace when some network of ``space`` cannot take inputs of ``input_shape``
    (checked at submission, where the dataset's shape is known without loading it)."""
    check = getattr(space, "check_input", None)
    if check is not None:
        check(tuple(input_shape))
