"""The strategy interface (Optuna's small-sampler shape, Syne Tune's asynchronous hooks).

A strategy never touches the database, Celery or torch. The scheduler calls ``ask`` whenever a
slot is free, possibly many times before any ``tell``; ``tell`` receives every finished or
failed trial exactly once. ``state_dict`` must capture everything (the random generator
included) so that a restarted scheduler continues the same search.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from spaces.base import Arch, SearchSpace


@dataclass
class Proposal:
    arch: Arch
    fidelity: dict[str, Any] | None = None


@dataclass
class TrialResult:
    """What a strategy may see of a trial: never the held-out metrics."""

    number: int
    arch: Arch
    status: str  # "completed" | "failed" | "stopped" | "cancelled"
    score: float | None  # the primary objective, oriented so that higher is better
    objectives: dict[str, float] = field(default_factory=dict)  # every objective, as measured
    scores: dict[str, float] = field(default_factory=dict)  # every objective, oriented higher-is-better
    fidelity: dict[str, Any] | None = None  # the budget it ran at, as proposed


class Strategy(ABC):
    Config: ClassVar[type[BaseModel]]

    def __init__(self, space: SearchSpace, config: BaseModel, rng: np.random.Generator) -> None:
        self.space = space
        self.config = config
        self.rng = rng

    @abstractmethod
    def ask(self) -> Proposal | None:
        """The next candidate, or None when nothing can be proposed until more results arrive."""

    @abstractmethod
    def tell(self, result: TrialResult) -> None: ...

    def on_report(self, number: int, step: int, score: float | None, scores: dict[str, float]) -> bool:
        """An intermediate result of a running trial (``step`` = epochs done; ``score`` the primary
        objective and ``scores`` every objective, higher-is-better). False stops the trial: its
        worker ends it within one epoch and the trial is told as ``stopped`` with this result.
        Only strategies that override this are sent reports."""
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self._load_state(state)

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The strategy's own JSON-serialisable state, beside the generator's."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None: ...


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator state as JSON that any database stores exactly (big ints as strings)."""
    return _stringify(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = _intify(state)


def _stringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"int": str(value)}
    return value


def _intify(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {k: _intify(v) for k, v in value.items()}
    return value
