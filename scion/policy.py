"""A REINFORCE controller's policy: one independent categorical distribution per decision of a
space (a softmax over a logit vector each), trained by policy gradient.

Shared by the ``reinforce`` strategy (scheduler, one update per finished trial) and ENAS on the
worker (``worker/one_shot/enas.py``, updates over several sampled paths each), so both learn the
same way. Numpy only: the scheduler never imports torch.

REINFORCE is Williams, Machine Learning 1992; the controller's shape (no RNN) that of
NAS-Bench-201's REINFORCE baseline (Dong & Yang, ICLR 2020); Adam and the moving-average
baseline as in the ENAS controller (Pham et al., ICML 2018).
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


class CategoricalPolicy:
    """Per-decision softmax logits, learned by REINFORCE with an exponential moving-average
    baseline, an entropy bonus and Adam (or plain gradient ascent).

    Each update ascends ``advantage * grad log p(choices) + entropy_weight * grad H`` where the
    advantage is the reward minus the baseline as it stood before that reward (the first reward
    starts the baseline), optionally divided by the running standard deviation of all rewards so
    far (``standardize``), so that the learning rate means the same whatever the reward's scale.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        learning_rate: float,
        baseline_decay: float,
        entropy_weight: float,
        optimizer: Literal["adam", "sgd"] = "adam",
        standardize: bool = False,
    ) -> None:
        self.sizes = [int(k) for k in sizes]
        self.learning_rate = learning_rate
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.optimizer = optimizer
        self.standardize = standardize
        self.logits = [np.zeros(k) for k in self.sizes]
        self.adam_m = [np.zeros(k) for k in self.sizes]
        self.adam_v = [np.zeros(k) for k in self.sizes]
        self.steps = 0
        self.baseline: float | None = None
        self.reward_count = 0
        self.reward_mean = 0.0
        self.reward_m2 = 0.0

    # -- the distribution ------------------------------------------------------------------------

    def probabilities(self) -> list[np.ndarray]:
        out = []
        for logits in self.logits:
            z = np.exp(logits - logits.max())
            out.append(z / z.sum())
        return out

    def sample(self, rng: np.random.Generator, probs: list[np.ndarray] | None = None) -> list[int]:
        """One option index per decision; draws exactly one uniform number per decision."""
        probs = self.probabilities() if probs is None else probs
        u = rng.random(len(probs))
        return [min(int(np.searchsorted(np.cumsum(p), x, side="right")), len(p) - 1) for p, x in zip(probs, u)]

    @staticmethod
    def log_prob(choices: Sequence[int], probs: list[np.ndarray]) -> float:
        return float(sum(math.log(max(p[c], 1e-300)) for p, c in zip(probs, choices)))

    def most_likely(self) -> Iterator[list[int]]:
        """Every choice vector in decreasing probability (ties in a fixed order), lazily: a best-first
        walk over each decision's options sorted by probability, as for the k best of a product of
        independent distributions."""
        log_p = [np.log(np.maximum(p, 1e-300)) for p in self.probabilities()]
        ranked = [np.argsort(-lp, kind="stable") for lp in log_p]

        def score(ranks: tuple[int, ...]) -> float:
            return float(sum(lp[order[r]] for lp, order, r in zip(log_p, ranked, ranks)))

        start = (0,) * len(self.sizes)
        heap = [(-score(start), start)]
        queued = {start}
        while heap:
            _, ranks = heapq.heappop(heap)
            yield [int(order[r]) for order, r in zip(ranked, ranks)]
            for d, r in enumerate(ranks):
                if r + 1 < self.sizes[d]:
                    nxt = ranks[:d] + (r + 1,) + ranks[d + 1:]
                    if nxt not in queued:
                        queued.add(nxt)
                        heapq.heappush(heap, (-score(nxt), nxt))

    # -- learning --------------------------------------------------------------------------------

    def update(self, samples: Sequence[tuple[Sequence[int], float]]) -> None:
        """One policy step on the mean gradient over ``samples`` (choices, reward), each advantage
        measured against the baseline as it stood before that sample's reward. Non-finite rewards
        carry no signal and are skipped; with none left nothing changes."""
        grads: list[np.ndarray] | None = None
        used = 0
        for choices, reward in samples:
            if reward is None or not math.isfinite(reward):
                continue
            g = self._gradient(choices, float(reward))
            grads = g if grads is None else [a + b for a, b in zip(grads, g)]
            used += 1
        if grads is None:
            return
        self._ascend([g / used for g in grads])

    def _advantage(self, reward: float) -> float:
        # Running mean / variance of the rewards (Welford).
        self.reward_count += 1
        delta = reward - self.reward_mean
        self.reward_mean += delta / self.reward_count
        self.reward_m2 += delta * (reward - self.reward_mean)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        if self.standardize and self.reward_count >= 2:
            std = math.sqrt(self.reward_m2 / (self.reward_count - 1))
            advantage = advantage / std if std > 0 else 0.0
        return advantage

    def _gradient(self, choices: Sequence[int], reward: float) -> list[np.ndarray]:
        advantage = self._advantage(reward)
        grads = []
        for p, c in zip(self.probabilities(), choices):
            grad = -advantage * p
            grad[c] += advantage  # advantage * d log p(c) / d logits
            if self.entropy_weight:
                log_p = np.log(np.maximum(p, 1e-300))
                entropy = -float(np.sum(p * log_p))
                grad += self.entropy_weight * (-p * (log_p + entropy))  # d H / d logits
            grads.append(grad)
        return grads

    def _ascend(self, grads: list[np.ndarray]) -> None:
        if self.optimizer == "sgd":
            for logits, g in zip(self.logits, grads):
                logits += self.learning_rate * g
            return
        self.steps += 1
        for i, g in enumerate(grads):
            self.adam_m[i] = ADAM_BETA1 * self.adam_m[i] + (1 - ADAM_BETA1) * g
            self.adam_v[i] = ADAM_BETA2 * self.adam_v[i] + (1 - ADAM_BETA2) * g * g
            m_hat = self.adam_m[i] / (1 - ADAM_BETA1**self.steps)
            v_hat = self.adam_v[i] / (1 - ADAM_BETA2**self.steps)
            self.logits[i] += self.learning_rate * m_hat / (np.sqrt(v_hat) + ADAM_EPS)

    # -- state (JSON) ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "logits": [x.tolist() for x in self.logits],
            "adam_m": [x.tolist() for x in self.adam_m],
            "adam_v": [x.tolist() for x in self.adam_v],
            "steps": self.steps,
            "baseline": self.baseline,
            "reward_count": self.reward_count,
            "reward_mean": self.reward_mean,
            "reward_m2": self.reward_m2,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.logits = [np.array(x, dtype=float) for x in state["logits"]]
        self.adam_m = [np.array(x, dtype=float) for x in state["adam_m"]]
        self.adam_v = [np.array(x, dtype=float) for x in state["adam_v"]]
        self.steps = state["steps"]
        self.baseline = state["baseline"]
        self.reward_count = state["reward_count"]
        self.reward_mean = state["reward_mean"]
        self.reward_m2 = state["reward_m2"]


__all__ = ["CategoricalPolicy"]
