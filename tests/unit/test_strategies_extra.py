"""Behaviour specific to the grid, local-search, REINFORCE and TPE strategies (the contract tests
cover what every strategy shares)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.strategies import STRATEGIES, TrialResult, make_strategy
from scheduler.strategies.grid import FeistelPermutation
from spaces import SPACES, make_space


def _space():
    return make_space(SPACES["nb201"].config())


def _strategy(name: str, seed: int = 0, **overrides):
    return make_strategy(STRATEGIES[name].config(**overrides), _space(), seed)


def _tell(strategy, number: int, arch, score: float | None) -> None:
    status = "failed" if score is None else "completed"
    strategy.tell(TrialResult(number=number, arch=arch, status=status, score=score))


def _convs(space, arch) -> float:
    """A smooth synthetic objective: 3x3 convolutions are best, 'none' worst."""
    key = space.key(arch)
    return key.count("nor_conv_3x3") * 10 + key.count("nor_conv_1x1") * 3 - key.count("none")


# -- grid --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False])
def test_grid_enumerates_every_nb201_cell_exactly_once_then_stops(shuffle):
    grid = _strategy("grid", seed=5, shuffle=shuffle)
    space = grid.space
    keys = []
    while (proposal := grid.ask()) is not None:
        keys.append(space.key(proposal.arch))
    assert len(keys) == space.size() == 15625
    assert len(set(keys)) == 15625
    assert grid.ask() is None
    if not shuffle:  # lexicographic: the first decision changes slowest
        assert space.to_choices(space.from_key(keys[0])) == [0] * 6
        assert space.to_choices(space.from_key(keys[1])) == [0] * 5 + [1]
        assert space.to_choices(space.from_key(keys[-1])) == [4] * 6


def test_grid_shuffled_order_depends_on_the_seed_and_survives_a_restart():
    a, b = _strategy("grid", seed=1), _strategy("grid", seed=2)
    first_a = [a.space.key(a.ask().arch) for _ in range(100)]
    first_b = [b.space.key(b.ask().arch) for _ in range(100)]
    assert first_a != first_b
    state = json.loads(json.dumps(a.state_dict()))
    assert len(json.dumps(state)) < 2000  # a seed and a position, not the permutation
    restored = _strategy("grid", seed=99)
    restored.load_state_dict(state)
    assert [restored.ask().arch for _ in range(50)] == [a.ask().arch for _ in range(50)]


def test_feistel_permutation_is_a_bijection_for_awkward_sizes():
    for n in (1, 2, 3, 7, 100, 1000, 4097):
        perm = FeistelPermutation(n, seed=12345)
        assert sorted(perm(i) for i in range(n)) == list(range(n))


def test_grid_refuses_spaces_over_its_cap():
    with pytest.raises(ValueError, match="max_size"):
        _strategy("grid", max_size=1000)


def test_grid_refuses_infinite_spaces():
    class Infinite:
        def size(self):
            return None

        def decisions(self):
            return [("x", ("a", "b"))]

    config = STRATEGIES["grid"].config()
    with pytest.raises(ValueError, match="finite"):
        STRATEGIES["grid"].factory(Infinite(), config, np.random.default_rng(0))


# -- local search ------------------------------------------------------------------------------


def test_local_search_stays_in_the_neighbourhood_until_it_improves_then_moves():
    ls = _strategy("local_search", seed=3, initial_samples=1)
    space = ls.space
    start = ls.ask().arch
    _tell(ls, 0, start, _convs(space, start))
    centre, centre_score, number = start, _convs(space, start), 1
    moves = 0
    while moves < 3 and number < 200:
        arch = ls.ask().arch
        neighbour_keys = {space.key(n) for n in space.neighbours(centre)}
        assert space.key(arch) in neighbour_keys, "proposed outside the centre's neighbourhood"
        score = _convs(space, arch)
        _tell(ls, number, arch, score)
        number += 1
        if score > centre_score:  # first improvement: the climb moves at once
            centre, centre_score, moves = arch, score, moves + 1
            assert space.key(ls.centre[0]) == space.key(arch)
    assert moves == 3


def test_local_search_restarts_at_a_random_architecture_on_a_local_optimum():
    ls = _strategy("local_search", seed=4, initial_samples=1)
    space = ls.space
    peak = ls.ask().arch
    target = space.to_choices(peak)

    def score(arch):  # ``peak`` is the global (hence local) optimum
        return -float(sum(a != b for a, b in zip(space.to_choices(arch), target)))

    _tell(ls, 0, peak, score(peak))
    neighbour_keys = {space.key(n) for n in space.neighbours(peak)}
    for number in range(1, len(neighbour_keys) + 1):
        arch = ls.ask().arch
        assert space.key(arch) in neighbour_keys
        _tell(ls, number, arch, score(arch))
    assert ls.restarts == 1 and ls.centre is None
    restart = ls.ask().arch
    assert space.key(restart) not in neighbour_keys | {space.key(peak)}


def test_local_search_keeps_workers_busy_without_repeats_while_results_are_out():
    ls = _strategy("local_search", seed=5, initial_samples=2)
    space = ls.space
    first = [ls.ask().arch for _ in range(2)]
    for i, arch in enumerate(first):
        _tell(ls, i, arch, _convs(space, arch))
    centre = ls.centre[0]
    batch = [ls.ask().arch for _ in range(40)]  # more than the 24 neighbours, nothing told
    keys = [space.key(a) for a in batch]
    assert len(set(keys) | {space.key(a) for a in first}) == 42
    fresh = {space.key(n) for n in space.neighbours(centre)} - {space.key(a) for a in first}
    assert set(keys[: len(fresh)]) == fresh  # the centre's neighbours come first


def test_local_search_best_improvement_waits_for_the_whole_neighbourhood():
    ls = _strategy("local_search", seed=6, initial_samples=1, first_improvement=False)
    space = ls.space
    start = ls.ask().arch
    _tell(ls, 0, start, _convs(space, start))
    batch = [ls.ask().arch for _ in range(24)]
    for i, arch in enumerate(batch[:-1]):
        _tell(ls, i + 1, arch, _convs(space, arch))
        assert space.key(ls.centre[0]) == space.key(start)
    _tell(ls, 24, batch[-1], _convs(space, batch[-1]))
    best = max(_convs(space, a) for a in batch)
    assert best > _convs(space, start)  # this seed's start is not a local optimum
    assert _convs(space, ls.centre[0]) == best  # the best of the neighbourhood, not the first


# -- REINFORCE ---------------------------------------------------------------------------------


def test_reinforce_policy_concentrates_on_a_decisions_best_option():
    rl = _strategy("reinforce", seed=7)
    space = rl.space
    rng = np.random.default_rng(0)
    number = 0
    for _ in range(50):  # batches of 4 in flight, as with parallel workers
        batch = [rl.ask().arch for _ in range(4)]
        for arch in batch:
            choices = space.to_choices(arch)
            reward = (1.0 if choices[2] == 3 else 0.0) + 0.1 * rng.standard_normal()
            _tell(rl, number, arch, reward)
            number += 1
    probs = rl.probabilities()
    assert int(np.argmax(probs[2])) == 3
    assert probs[2][3] > 0.8
    # Decisions that do not matter stay spread out.
    assert max(p.max() for i, p in enumerate(probs) if i != 2) < 0.8


def test_reinforce_ignores_failed_trials():
    rl = _strategy("reinforce", seed=8)
    before = [p.copy() for p in rl.probabilities()]
    arch = rl.ask().arch
    _tell(rl, 0, arch, None)
    assert all(np.allclose(a, b) for a, b in zip(before, rl.probabilities()))
    assert rl.reward_count == 0


# -- TPE ---------------------------------------------------------------------------------------


def test_tpe_optimises_a_synthetic_objective_with_pending_trials():
    tpe = _strategy("tpe", seed=9)
    space = tpe.space
    scores, keys, number = [], [], 0
    while number < 40:
        batch = [tpe.ask().arch for _ in range(4)]  # four pending at once
        running = [r for r in tpe.study.trials if r.state.name == "RUNNING"]
        assert len(running) == 4
        for arch in batch:
            keys.append(space.key(arch))
            failed = number % 9 == 4
            score = None if failed else _convs(space, arch)
            _tell(tpe, number, arch, score)
            if score is not None:
                scores.append(score)
            number += 1
    assert len(set(keys)) == 40
    states = [r[2] for r in tpe.records]
    assert "RUNNING" not in states and "FAIL" in states
    assert np.mean(scores[-12:]) > np.mean(scores[:10])  # TPE beats its random start-up


# -- every one of these: a restart while trials are still running ------------------------------


@pytest.mark.parametrize("name", ["grid", "local_search", "reinforce", "tpe"])
def test_restore_with_trials_in_flight_continues_the_same_search(name):
    def run(strategy, pending, start, n):
        space, asked = strategy.space, []
        for number, arch in pending:
            _tell(strategy, number, arch, _convs(space, arch))
        number = start
        for _ in range(n // 4):
            batch = [strategy.ask().arch for _ in range(4)]
            asked += [space.key(a) for a in batch]
            for arch in batch:
                _tell(strategy, number, arch, _convs(space, arch))
                number += 1
        return asked

    original = _strategy(name, seed=11)
    space = original.space
    for number in range(20):
        arch = original.ask().arch
        _tell(original, number, arch, _convs(space, arch))
    in_flight = [(20 + i, original.ask().arch) for i in range(6)]
    state = json.loads(json.dumps(original.state_dict()))
    restored = _strategy(name, seed=12345)
    restored.load_state_dict(state)
    assert run(restored, in_flight, 26, 24) == run(original, in_flight, 26, 24)
