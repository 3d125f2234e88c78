"""The search-space interface every space implements (NASLib's shape: the space owns
sampling, mutation, neighbourhoods, encodings and building).

Architectures are plain JSON values. Torch is imported only inside ``build`` so that the API
and the scheduler never need it.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

Arch = Any  # a JSON-serialisable architecture value


class InvalidArchitecture(ValueError):
    """An architecture value that does not belong to the space; the message says why."""


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
