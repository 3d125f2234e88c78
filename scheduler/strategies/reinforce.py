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


class Reinforce(Strategy):
    """A REINFORCE controller reduced to one independent categorical distribution per decision
    of the space (softmax over a logit vector each), as in Zoph & Le (ICLR 2017) and the ENAS
    controller (Pham et al., ICML 2018) without the RNN: NAS-Bench-201's own REINFORCE baseline
    (Dong & Yang, ICLR 2020) has the same shape.

    Each ask samples every decision from the current policy. Each tell of a completed trial
    takes one gradient step on ``advantage * grad log p(choices) + entropy_weight * grad H``,
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
        self.sizes = [len(options) for _, options in space.decisions()]
        self.logits = [np.zeros(k) for k in self.sizes]
        self.adam_m = [np.zeros(k) for k in self.sizes]
        self.adam_v = [np.zeros(k) for k in self.sizes]
        self.steps = 0
        self.baseline: float | None = None
        self.reward_count = 0
        self.reward_mean = 0.0
        self.reward_m2 = 0.0
        self.seen: set[str] = set()

    # -- the policy ------------------------------------------------------------------------------

    def probabilities(self) -> list[np.ndarray]:
        out = []
        for logits in self.logits:
            z = np.exp(logits - logits.max())
            out.append(z / z.sum())
        return out

    def _sample(self, probs: list[np.ndarray]) -> list[int]:
        u = self.rng.random(len(probs))
        return [min(int(np.searchsorted(np.cumsum(p), x, side="right")), len(p) - 1)
                for p, x in zip(probs, u)]

    def ask(self) -> Proposal | None:
        space, probs = self.space, self.probabilities()
        arch = None
        for _ in range(self.config.max_resample):
            arch = space.from_choices(self._sample(probs))
            if space.key(arch) not in self.seen:
                self.seen.add(space.key(arch))
                return Proposal(arch)
        # The policy has concentrated on architectures already proposed: take the most likely
        # unseen neighbour of the last sample (ties broken at random), else a uniform sample.
        candidates = [n for n in space.neighbours(arch) if space.key(n) not in self.seen]
        if candidates:
            logp = np.array([self._log_prob(space.to_choices(n), probs) for n in candidates])
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

    @staticmethod
    def _log_prob(choices: list[int], probs: list[np.ndarray]) -> float:
        return float(sum(math.log(max(p[c], 1e-300)) for p, c in zip(probs, choices)))

    # -- learning --------------------------------------------------------------------------------

    def tell(self, result: TrialResult) -> None:
        cfg = self.config
        self.seen.add(self.space.key(result.arch))
        if result.score is None or not math.isfinite(result.score):
            return  # failed trials carry no reward signal
        reward = float(result.score)
        # Running mean / variance of the rewards (Welford).
        self.reward_count += 1
        delta = reward - self.reward_mean
        self.reward_mean += delta / self.reward_count
        self.reward_m2 += delta * (reward - self.reward_mean)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = cfg.baseline_decay * self.baseline + (1 - cfg.baseline_decay) * reward
        if cfg.standardize and self.reward_count >= 2:
            std = math.sqrt(self.reward_m2 / (self.reward_count - 1))
            advantage = advantage / std if std > 0 else 0.0
        choices = self.space.to_choices(result.arch)
        grads = []
        for p, c in zip(self.probabilities(), choices):
            grad = -advantage * p
            grad[c] += advantage  # advantage * d log p(c) / d logits
            if cfg.entropy_weight:
                log_p = np.log(np.maximum(p, 1e-300))
                entropy = -float(np.sum(p * log_p))
                grad += cfg.entropy_weight * (-p * (log_p + entropy))  # d H / d logits
            grads.append(grad)
        self._ascend(grads)

    def _ascend(self, grads: list[np.ndarray]) -> None:
        cfg = self.config
        if cfg.optimizer == "sgd":
            for logits, g in zip(self.logits, grads):
                logits += cfg.learning_rate * g
            return
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        self.steps += 1
        for i, g in enumerate(grads):
            self.adam_m[i] = beta1 * self.adam_m[i] + (1 - beta1) * g
            self.adam_v[i] = beta2 * self.adam_v[i] + (1 - beta2) * g * g
            m_hat = self.adam_m[i] / (1 - beta1**self.steps)
            v_hat = self.adam_v[i] / (1 - beta2**self.steps)
            self.logits[i] += cfg.learning_rate * m_hat / (np.sqrt(v_hat) + eps)

    # -- state -----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "logits": [x.tolist() for x in self.logits],
            "adam_m": [x.tolist() for x in self.adam_m],
            "adam_v": [x.tolist() for x in self.adam_v],
            "steps": self.steps,
            "baseline": self.baseline,
            "reward_count": self.reward_count,
            "reward_mean": self.reward_mean,
            "reward_m2": self.reward_m2,
            "seen": sorted(self.seen),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.logits = [np.array(x, dtype=float) for x in state["logits"]]
        self.adam_m = [np.array(x, dtype=float) for x in state["adam_m"]]
        self.adam_v = [np.array(x, dtype=float) for x in state["adam_v"]]
        self.steps = state["steps"]
        self.baseline = state["baseline"]
        self.reward_count = state["reward_count"]
        self.reward_mean = state["reward_mean"]
        self.reward_m2 = state["reward_m2"]
        self.seen = set(state["seen"])
