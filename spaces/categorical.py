"""The moves every space of categorical decisions makes the same way, written once.

A space that lists its decisions (``decisions()``), reads an architecture as the option taken at
each (``_choices_of``, None where a decision does not apply to it, such as the settings of a layer
past a conv1d network's depth) and builds the canonical architecture from any vector of in-range
choices (``_arch_of``, which ignores what does not apply) inherits from ``CategoricalSpace``:

- ``neighbours``: one applying decision changed to each of its other options, decision by
  decision in ``_edit_order()`` (``decisions()`` order unless the space says otherwise), options
  in order;
- ``mutate``: one of those neighbours, uniformly, in one draw; never the architecture itself;
- ``encode``: one-hot per decision in ``decisions()`` order, all zeros where it does not apply,
  so every architecture of the space has a vector of the same length;
- ``to_choices`` / ``from_choices``: the choices with 0 where a decision does not apply; out of
  range or wrongly counted choices are refused naming the decision.

Neighbours and mutate assume that changing one applying decision always gives another network,
and two different changes two different networks. A space where that fails (DARTS, whose
canonical cells merge some edits) keeps its own.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from itertools import accumulate
from typing import Any

import numpy as np

from spaces.base import Arch, InvalidArchitecture


class CategoricalSpace(ABC):
    @abstractmethod
    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        """The space as categorical decisions (name, options), in the order of the choices."""

    @abstractmethod
    def _choices_of(self, arch: Any) -> list[int | None]:
        """The option index taken at each decision, None where it does not apply to ``arch``;
        raises InvalidArchitecture for a value outside the space."""

    @abstractmethod
    def _arch_of(self, choices: list[int]) -> Arch:
        """The canonical architecture of in-range ``choices`` (checked by the caller)."""

    def _edit_order(self) -> Sequence[int]:
        """The order in which ``neighbours`` changes the decisions."""
        return range(len(self._sizes))

    @cached_property
    def _sizes(self) -> tuple[int, ...]:
        """Options per decision, read once: a space's decisions are fixed by its config."""
        return tuple(len(options) for _, options in self.decisions())

    @cached_property
    def _offsets(self) -> tuple[int, ...]:
        return tuple(accumulate(self._sizes[:-1], initial=0))

    @cached_property
    def _length(self) -> int:
        return sum(self._sizes)

    def to_choices(self, arch: Any) -> list[int]:
        return [0 if c is None else c for c in self._choices_of(arch)]

    def from_choices(self, choices: list[int]) -> Arch:
        sizes = self._sizes
        if len(choices) != len(sizes):
            decisions = self.decisions()
            raise InvalidArchitecture(
                f"this space takes {len(sizes)} choices, one per decision from {decisions[0][0]!r} to "
                f"{decisions[-1][0]!r}, got {len(choices)}"
            )
        for i, (c, size) in enumerate(zip(choices, sizes)):
            if not 0 <= int(c) < size:
                raise InvalidArchitecture(f"{self.decisions()[i][0]}: choice {c} is out of range 0..{size - 1}")
        return self._arch_of([int(c) for c in choices])

    def _changes(self, choices: list[int | None]) -> list[tuple[int, int]]:
        """(decision, option) of every neighbour of ``choices``, in neighbour order."""
        sizes, changes = self._sizes, []
        for i in self._edit_order():
            c = choices[i]
            if c is not None:
                changes += [(i, j) for j in range(sizes[i]) if j != c]
        return changes

    def neighbours(self, arch: Any) -> list[Arch]:
        choices = self._choices_of(arch)
        base = [0 if c is None else c for c in choices]
        out = []
        for i, j in self._changes(choices):
            new = base.copy()
            new[i] = j
            out.append(self._arch_of(new))
        return out

    def mutate(self, arch: Any, rng: np.random.Generator) -> Arch:
        """Uniform over ``neighbours``."""
        choices = self._choices_of(arch)
        changes = self._changes(choices)
        if not changes:
            raise InvalidArchitecture("this space has a single architecture: nothing to mutate")
        i, j = changes[int(rng.integers(len(changes)))]
        new = [0 if c is None else c for c in choices]
        new[i] = j
        return self._arch_of(new)

    def encode(self, arch: Any) -> np.ndarray:
        """One-hot per decision in ``decisions()`` order; all zeros where a decision does not apply."""
        vec = np.zeros(self._length, dtype=np.float32)
        for offset, c in zip(self._offsets, self._choices_of(arch)):
            if c is not None:
                vec[offset + c] = 1.0
        return vec


__all__ = ["CategoricalSpace"]
