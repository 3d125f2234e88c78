"""The REINFORCE policy shared by the reinforce strategy and ENAS (scion/policy.py): what ENAS
uses beyond the strategy's one-sample updates (the strategy's own tests cover those)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from scion.policy import CategoricalPolicy


def _policy(sizes: list[int], seed: int = 0) -> CategoricalPolicy:
    policy = CategoricalPolicy(sizes, learning_rate=0.1, baseline_decay=0.9, entropy_weight=0.0)
    policy.logits = [np.random.default_rng(seed + i).standard_normal(k) for i, k in enumerate(sizes)]
    return policy


def test_most_likely_walks_every_choice_vector_in_decreasing_probability() -> None:
    policy = _policy([3, 2, 4])
    probs = policy.probabilities()
    walked = list(policy.most_likely())
    assert sorted(map(tuple, walked)) == sorted(itertools.product(range(3), range(2), range(4)))
    log_p = [policy.log_prob(c, probs) for c in walked]
    assert all(a >= b - 1e-12 for a, b in zip(log_p, log_p[1:]))
    assert walked[0] == [int(np.argmax(p)) for p in probs]


def test_an_update_over_several_samples_ascends_their_mean_gradient() -> None:
    policy = CategoricalPolicy([3], learning_rate=0.1, baseline_decay=0.9, entropy_weight=0.0, optimizer="sgd")
    # The first reward starts the baseline (advantage 0); the second's advantage is 1 - 0.
    policy.update([([0], 0.0), ([2], 1.0)])
    uniform = np.full(3, 1 / 3)
    assert np.allclose(policy.logits[0], 0.1 * (np.array([0.0, 0.0, 1.0]) - uniform) / 2)
    assert policy.baseline == pytest.approx(0.1)  # 0.9 * 0 + 0.1 * 1


def test_an_update_with_no_finite_reward_changes_nothing() -> None:
    policy = _policy([3])
    before = policy.state()
    policy.update([([1], float("nan"))])
    assert policy.state() == before
