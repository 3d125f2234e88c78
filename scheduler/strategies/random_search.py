"""Random search: the baseline every NAS paper must beat (Li & Talwalkar, 2019)."""
from __future__ import annotations

from typing import Any

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.dedup import propose_unseen
from scion.configs.strategies import RandomSearchConfig


class RandomSearch(Strategy):
    """Uniform samples of the space, never proposing an architecture twice while unseen ones
    are likely to remain."""

    Config = RandomSearchConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.seen: set[str] = set()

    def ask(self) -> Proposal | None:
        arch = propose_unseen(self.space, self.seen, lambda: self.space.sample(self.rng),
                              self.config.max_resample)
        return None if arch is None else Proposal(arch)

    def tell(self, result: TrialResult) -> None:
        self.seen.add(self.space.key(result.arch))

    def _state(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.seen = set(state["seen"])
