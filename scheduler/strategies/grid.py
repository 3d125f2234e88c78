"""Grid (exhaustive) search: every architecture of a finite space, each exactly once.

The reference point of Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization",
JMLR 2012, and the way the tabular benchmarks themselves were built (NAS-Bench-201, Dong & Yang,
ICLR 2020, trains all 15,625 cells).
"""
from __future__ import annotations

import math
from typing import Any

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scion.configs.strategies import GridConfig

_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a cheap, well-mixing 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class FeistelPermutation:
    """A seeded bijection of ``range(n)`` computed one index at a time (no list is stored).

    A balanced Feistel network permutes ``range(4**half_bits)`` for any round function; cycle
    walking (re-applying it until the value falls below ``n``) restricts it to ``range(n)``,
    still a bijection. The domain is under 4n, so a walk takes under four steps on average.
    """

    ROUNDS = 6

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.half_bits = max(1, math.ceil(math.log2(max(n, 2)) / 2))
        self.mask = (1 << self.half_bits) - 1
        self.keys = [_mix((seed & _MASK64) ^ _mix(r + 1)) for r in range(self.ROUNDS)]

    def _round_trip(self, x: int) -> int:
        left, right = x >> self.half_bits, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << self.half_bits) | right

    def __call__(self, index: int) -> int:
        x = self._round_trip(index)
        while x >= self.n:
            x = self._round_trip(x)
        return x


class GridSearch(Strategy):
    """Exhaustive enumeration of a finite space through its categorical ``decisions()``.

    Bergstra & Bengio (JMLR 2012) for grid versus random search; NAS-Bench-201 (Dong & Yang,
    ICLR 2020) for exhaustive evaluation of a cell space.

    Use it when the whole space fits the budget (a small cell space, or the last few decisions
    of a design), when you want the complete table of a space, or as an order-free baseline:
    with ``shuffle`` (the default) any prefix of the enumeration is a uniform sample without
    repeats, so a grid job stopped early is as good as random search. ``ask`` returns None once
    every combination has been proposed. Results do not steer it, so it is asynchronous by
    nature; failed trials are not retried.

    Each combination of decision options is one index of a mixed-radix number; the shuffled
    order is a seeded Feistel permutation of the indices, so the state is only a seed and a
    position however large the grid.
    """

    Config = GridConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        size = space.size()
        if size is None:
            raise ValueError("grid search needs a finite space; this space has no size()")
        if size > config.max_size:
            raise ValueError(
                f"grid search would enumerate {size:,} architectures, more than max_size "
                f"({config.max_size:,}); raise max_size or use another strategy"
            )
        self.radices = [len(options) for _, options in space.decisions()]
        self.total = math.prod(self.radices)
        if self.total > config.max_size:
            raise ValueError(
                f"grid search would enumerate {self.total:,} decision combinations, more than "
                f"max_size ({config.max_size:,}); raise max_size or use another strategy"
            )
        self.permutation_seed = int(rng.integers(0, 2**63))
        self.position = 0
        self._permutation = FeistelPermutation(self.total, self.permutation_seed)

    def _choices(self, index: int) -> list[int]:
        """Mixed-radix digits, the first decision most significant (lexicographic order)."""
        digits = []
        for radix in reversed(self.radices):
            index, digit = divmod(index, radix)
            digits.append(digit)
        return digits[::-1]

    def ask(self) -> Proposal | None:
        if self.position >= self.total:
            return None
        index = self._permutation(self.position) if self.config.shuffle else self.position
        self.position += 1
        return Proposal(self.space.from_choices(self._choices(index)))

    def tell(self, result: TrialResult) -> None:
        pass  # the order is fixed in advance; results do not change it

    def _state(self) -> dict[str, Any]:
        return {"permutation_seed": str(self.permutation_seed), "position": self.position}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.permutation_seed = int(state["permutation_seed"])
        self.position = int(state["position"])
        self._permutation = FeistelPermutation(self.total, self.permutation_seed)
