"""Contract every registered strategy must pass, whatever its algorithm.

The scheduler asks while trials are still running, restarts from saved state and expects the
same search under the same seed; these tests hold each strategy to that.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from scheduler.strategies import STRATEGIES, TrialResult, make_strategy
from scheduler.strategy_log import LoggedStrategy
from spaces import SPACES, make_space

STRATEGY_NAMES = STRATEGIES.names()


def _space():
    return make_space(SPACES["nb201"].config())


def _strategy(name: str, seed: int = 0, **overrides):
    config = STRATEGIES[name].config(**overrides)
    return make_strategy(config, _space(), seed)


def _fake_score(key: str) -> float:
    """A deterministic, structured objective: rewards 3x3 convolutions."""
    return key.count("nor_conv_3x3") * 10 + key.count("nor_conv_1x1") * 3 - key.count("none")


def _drive(strategy, n: int, batch: int = 4, failing_every: int = 0) -> list[str]:
    """Ask in batches of ``batch`` before telling, as parallel workers do; returns keys asked."""
    space, keys, number = strategy.space, [], 0
    while number < n:
        pending = []
        for _ in range(min(batch, n - number)):
            proposal = strategy.ask()
            assert proposal is not None
            pending.append((number, proposal.arch))
            keys.append(space.key(proposal.arch))
            number += 1
        for num, arch in pending:
            failed = failing_every and num % failing_every == 0
            score = None if failed else _fake_score(space.key(arch))
            strategy.tell(TrialResult(number=num, arch=arch, status="failed" if failed else "completed", score=score))
    return keys


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_many_asks_before_any_tell_give_valid_distinct_architectures(name):
    strategy = _strategy(name)
    archs = [strategy.ask().arch for _ in range(64)]
    keys = [strategy.space.key(strategy.space.validate(a)) for a in archs]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_same_seed_same_search_other_seed_other_search(name):
    a, b, c = _drive(_strategy(name, 7), 60), _drive(_strategy(name, 7), 60), _drive(_strategy(name, 8), 60)
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_state_round_trip_continues_the_same_search(name):
    original = _strategy(name, 3)
    _drive(original, 30, failing_every=7)
    state = json.loads(json.dumps(original.state_dict()))  # what the database stores
    restored = _strategy(name, 999)  # a different seed: everything must come from the state
    restored.load_state_dict(state)
    assert _drive(restored, 30) == _drive(original, 30)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_saved_state_and_replayed_calls_continue_the_same_search(name):
    """What a scheduler taking a job over does: load the last whole state, replay the calls
    logged since (scheduler/strategy_log.py), and go on as the original would have."""
    original = LoggedStrategy(_strategy(name, 3), _space())
    _drive(original, 20, failing_every=7)
    state = json.loads(json.dumps(original.state_dict()))
    _drive(original, 12)
    calls = json.loads(json.dumps(original.take_unsaved()))  # as the database returns them
    restored = LoggedStrategy(_strategy(name, 999), _space())
    restored.strategy.load_state_dict(state)
    restored.replay(calls)
    assert _drive(restored, 20) == _drive(original, 20)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_failed_trials_do_not_stop_the_search(name):
    strategy = _strategy(name)
    keys = _drive(strategy, 40, failing_every=2)
    assert len(keys) == 40


def _table(path) -> dict[str, tuple[float, float]]:
    with open(path) as f:
        return {r["arch"]: (float(r["val_acc_12ep"]), float(r["test_acc_200ep"])) for r in csv.DictReader(f)}


def test_evolution_beats_random_search_on_nas_bench_201(nb201_csv):
    """The reason to run a strategy at all: at 150 evaluations with 4 in flight, regularized
    evolution finds better cells (by the held-out 200-epoch test accuracy) than random search."""
    table = _table(nb201_csv)

    def incumbent_test_acc(name: str, seed: int) -> float:
        strategy = _strategy(name, seed)
        space, best, n = strategy.space, (-1.0, 0.0), 0
        while n < 150:
            batch = [strategy.ask().arch for _ in range(4)]
            for arch in batch:
                val, test = table[space.key(arch)]
                best = max(best, (val, test))
                strategy.tell(TrialResult(number=n, arch=arch, status="completed", score=val))
                n += 1
        return best[1]

    seeds = range(20)
    rea = np.mean([incumbent_test_acc("evolution", s) for s in seeds])
    rs = np.mean([incumbent_test_acc("random", s) for s in seeds])
    assert rea > rs, (rea, rs)
