"""REINFORCE policy gradient over the space's categorical decisions.

Zoph & Le, "Neural Architecture Search with Reinforcement Learning", ICLR 2017; Pham et al.,
"Efficient Neural Architecture Search via Parameter Sharing" (ENAS), ICML 2018; the REINFORCE
estimator is Williams, Machine Learning 1992.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scion.configs.strategies import ReinforceConfig
from scion.policy import CategoricalPolicy


class Reinforce(Strategy):
    """A REINFORCE controller reduced to one independent categorical distribution per decision
    of the space (softmax over a logit vector each), as in Zoph & Le (ICLR 2017) and the ENAS
    controller (Pham et al., ICML 2018) without the RNN: NAS-Bench-201's own REINFORCE baseline
    (Dong & Yang, ICLR 2020) has the same shape.

    The policy is ``scion.policy.CategoricalPolicy``, shared with ENAS on the worker. Each ask
    samples every decision from the current policy. Each tell of a completed trial takes one
    gradient step on ``advantage * grad log p(choices) + entropy_weight * grad H``,
    where the advantage is the score minus an exponential moving-average baseline (optionally
    divided by the running standard deviation of the scores). Failed trials do not update the
    policy. Asks made while trials are outstanding sample the current policy, so any number of
    workers can be kept busy; updates use the policy as it is when the result arrives (the
    slightly off-policy asynchronous update of A3C / ENAS). Exact repeats are avoided by
    resampling, and, when the policy has concentrated, by taking an unseen neighbour of a sample.

    Use it when the space is naturally a list of independent choices (cell operations, per-stage
    kernel / expansion / depth), and as the classic RL baseline of the NAS literature. It needs
    hundreds of evaluations to learn; at small budgets, regularized evolution or local search
    are usually stronger.
    """

    Config = ReinforceConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.policy = CategoricalPolicy(
            [len(options) for _, options in space.decisions()],
            learning_rate=config.learning_rate, baseline_decay=config.baseline_decay,
            entropy_weight=config.entropy_weight, optimizer=config.optimizer, standardize=config.standardize,
        )
        self.seen: set[str] = set()

    def probabilities(self) -> list[np.ndarray]:
        return self.policy.probabilities()

    @property
    def reward_count(self) -> int:
        """Rewards learned from so far (failed trials bring none)."""
        return self.policy.reward_count

    def ask(self) -> Proposal | None:
        space, probs = self.space, self.probabilities()
        arch = None
        for _ in range(self.config.max_resample):
            arch = space.from_choices(self.policy.sample(self.rng, probs))
            if space.key(arch) not in self.seen:
                self.seen.add(space.key(arch))
                return Proposal(arch)
        # The policy has concentrated on architectures already proposed: take the most likely
        # unseen neighbour of the last sample (ties broken at random), else a uniform sample.
        candidates = [n for n in space.neighbours(arch) if space.key(n) not in self.seen]
        if candidates:
            logp = np.array([self.policy.log_prob(space.to_choices(n), probs) for n in candidates])
            noise = self.rng.random(len(candidates)) * 1e-9
            pick = candidates[int(np.argmax(logp + noise))]
            self.seen.add(space.key(pick))
            return Proposal(pick)
        for _ in range(self.config.max_resample):
            arch = space.sample(self.rng)
            if space.key(arch) not in self.seen:
                self.seen.add(space.key(arch))
                return Proposal(arch)
        size = space.size()
        if size is not None and len(self.seen) >= size:
            return None
        return Proposal(arch)

    # -- learning --------------------------------------------------------------------------------

    def tell(self, result: TrialResult) -> None:
        self.seen.add(self.space.key(result.arch))
        if result.score is None or not math.isfinite(result.score):
            return  # failed trials carry no reward signal
        self.policy.update([(self.space.to_choices(result.arch), float(result.score))])

    # -- state -----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {**self.policy.state(), "seen": sorted(self.seen)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.policy.load_state(state)
        self.seen = set(state["seen"])
