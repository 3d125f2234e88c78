"""Pareto helpers (scheduler/strategies/pareto.py) on hand-made points, and NSGA-II's reason to
exist: on a two-objective problem over the NAS-Bench-201 space it finds a better front than
random search with the same number of evaluations."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from scheduler.strategies import STRATEGIES, TrialResult, make_strategy
from scion.pareto import (
    crowding_distance,
    dominates,
    hypervolume_2d,
    non_dominated_sort,
    orient,
    pareto_front,
    pareto_mask,
    rank_and_crowding,
    survivors,
)
from spaces import SPACES, make_space


def brute_force_front(points: np.ndarray) -> list[int]:
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


# ---------------------------------------------------------------- dominance and fronts


def test_dominance_needs_one_strict_improvement():
    assert dominates([2, 1], [1, 1])
    assert not dominates([1, 1], [1, 1])  # equal points never dominate each other
    assert not dominates([2, 0], [1, 1])  # a trade-off


def test_front_of_hand_made_points_keeps_ties_and_drops_the_dominated():
    points = np.array([
        [1.0, 5.0],  # 0 front
        [2.0, 4.0],  # 1 front
        [2.0, 3.0],  # 2 dominated by 1 (same first objective, worse second)
        [3.0, 1.0],  # 3 front
        [3.0, 1.0],  # 4 identical to 3: also front
        [0.5, 5.0],  # 5 dominated by 0 (same second, worse first)
        [1.5, 2.0],  # 6 dominated by 1
        [3.0, 0.5],  # 7 dominated by 3
    ])
    assert pareto_front(points).tolist() == [0, 1, 3, 4]
    assert [f.tolist() for f in non_dominated_sort(points)] == [
        [0, 1, 3, 4], [2, 5, 7], [6],
    ]


def test_three_objectives():
    points = np.array([[1, 1, 1], [2, 0, 0], [1, 1, 0], [0, 2, 0], [1, 1, 1], [0, 0, 3], [0, 0, 2]])
    assert pareto_front(points).tolist() == [0, 1, 3, 4, 5]
    assert [f.tolist() for f in non_dominated_sort(points)] == [[0, 1, 3, 4, 5], [2, 6]]


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_front_matches_brute_force_on_random_points_with_many_ties(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        points = rng.integers(0, 5, size=(int(rng.integers(1, 60)), m)).astype(float)
        assert pareto_front(points).tolist() == brute_force_front(points)
        fronts = non_dominated_sort(points)
        assert sorted(np.concatenate(fronts).tolist()) == list(range(len(points)))
        for earlier, later in itertools.pairwise(fronts):  # every later point is dominated by an earlier front
            assert all(any(dominates(points[i], points[j]) for i in earlier) for j in later)


def test_single_objective_front_is_the_best_with_ties():
    assert pareto_front([[3.0], [7.0], [7.0], [1.0]]).tolist() == [1, 2]
    assert [f.tolist() for f in non_dominated_sort([[3.0], [7.0], [7.0], [1.0]])] == [[1, 2], [0], [3]]
    assert pareto_front(np.zeros((0, 2))).tolist() == []


def test_minimised_objectives_through_orientation():
    # (accuracy max, params min): 0 is cheapest, 2 most accurate, 1 neither best nor dominated,
    # 3 is as accurate as 1 but bigger, 4 identical to 0.
    raw = [[90.0, 100.0], [92.0, 300.0], [95.0, 900.0], [92.0, 500.0], [90.0, 100.0]]
    points = orient(raw, ["max", "min"])
    assert points.tolist() == [[90, -100], [92, -300], [95, -900], [92, -500], [90, -100]]
    assert pareto_front(points).tolist() == [0, 1, 2, 4]
    # Both minimised: the smaller values win.
    assert pareto_front(orient([[1, 5], [2, 2], [3, 3], [1, 6]], ["min", "min"])).tolist() == [0, 1]


def test_large_front_is_fast():
    rng = np.random.default_rng(0)
    x = rng.random(100_000)
    points = np.c_[x, 1 - x + rng.normal(0, 0.05, x.size)]  # many points near an anti-diagonal
    front = pareto_front(points)
    assert 0 < len(front) < 1000
    sample = np.r_[front[:20], rng.choice(len(points), 30, replace=False)]
    mask = pareto_mask(points)
    for i in sample:  # spot-check against the definition
        assert mask[i] == (not np.any(np.all(points >= points[i], 1) & np.any(points > points[i], 1)))


# ---------------------------------------------------------------- crowding and selection


def test_crowding_distance_by_hand():
    front = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(front)
    assert math.isinf(d[0]) and math.isinf(d[3])
    # (3 - 0) / 4 + (4 - 1) / 4 for point 1; (4 - 1) / 4 + (3 - 0) / 4 for point 2
    assert d[1] == pytest.approx(1.5) and d[2] == pytest.approx(1.5)
    uneven = crowding_distance(np.array([[0.0, 10.0], [1.0, 9.0], [9.0, 1.0], [10.0, 0.0]]))
    assert uneven[1] == pytest.approx(1.8) and uneven[2] == pytest.approx(1.8)
    crowded = crowding_distance(np.array([[0.0, 10.0], [1.0, 9.0], [2.0, 8.0], [10.0, 0.0]]))
    assert crowded[1] == pytest.approx(0.4) and crowded[2] == pytest.approx(1.8)


def test_crowding_distance_ties_and_degenerate_fronts():
    assert crowding_distance(np.array([[1.0, 1.0]])).tolist() == [0.0]  # nothing to spread
    assert crowding_distance(np.array([[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]])).tolist() == [0.0, 0.0, 0.0]
    # The first objective is constant (adds nothing); the second sorts stably, so of the two
    # points tied at the top the first listed is the boundary one.
    d = crowding_distance(np.array([[5.0, 0.0], [5.0, 1.0], [5.0, 1.0]]))
    assert math.isinf(d[0]) and math.isinf(d[2]) and d[1] == pytest.approx(1.0)


def test_rank_and_crowding_and_survivors():
    points = np.array([[0.0, 4.0], [1.0, 3.0], [2.0, 2.5], [4.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    rank, crowding = rank_and_crowding(points)
    assert rank.tolist() == [0, 0, 0, 0, 1, 2]
    assert math.isinf(crowding[0]) and math.isinf(crowding[3])
    assert crowding[1] < crowding[2]  # 1 sits closer to its neighbours than 2 does
    assert survivors(points, 5).tolist() == [0, 1, 2, 3, 4]
    assert survivors(points, 3).tolist() == [0, 2, 3]  # front 0 minus its most crowded point
    assert survivors(points, 10).tolist() == list(range(6))
    tied = np.array([[1.0], [1.0], [0.0]])
    assert survivors(tied, 1).tolist() == [0]
    assert survivors(tied, 1, prefer_later=True).tolist() == [1]


def test_hypervolume_2d():
    assert hypervolume_2d([[2.0, 1.0], [1.0, 2.0]], [0.0, 0.0]) == pytest.approx(3.0)
    assert hypervolume_2d([[2.0, 1.0], [1.0, 2.0], [1.0, 1.0], [2.0, 1.0]], [0.0, 0.0]) == pytest.approx(3.0)
    assert hypervolume_2d([[3.0, 3.0]], [1.0, 1.0]) == pytest.approx(4.0)
    assert hypervolume_2d([[-1.0, 5.0]], [0.0, 0.0]) == 0.0


# ---------------------------------------------------------------- NSGA-II on a synthetic problem

OPS_COST = {"nor_conv_3x3": 9, "nor_conv_1x1": 1}  # a parameter proxy: 3x3 convs cost 9x a 1x1


def synthetic(arch: list[str]) -> tuple[float, float]:
    """(quality, cost) over the NB201 cell: convolutions raise quality and cost, 'none' edges
    lower quality; 1x1 convolutions are cheaper per quality point than 3x3, so the trade-off
    front mixes both."""
    quality = 10 * arch.count("nor_conv_3x3") + 3 * arch.count("nor_conv_1x1") - arch.count("none")
    return float(quality), float(sum(OPS_COST.get(op, 0) for op in arch))


REFERENCE = (-7.0, -55.0)  # just worse than the worst quality (-6) and the largest cost (54)


def front_hypervolume(name: str, seed: int, evaluations: int = 150, batch: int = 4) -> float:
    space = make_space(SPACES["nb201"].config())
    strategy = make_strategy(STRATEGIES[name].config(), space, seed)
    found, number = [], 0
    while number < evaluations:
        asked = [strategy.ask().arch for _ in range(batch)]  # four workers in flight
        for arch in asked:
            quality, cost = synthetic(arch)
            found.append((quality, -cost))
            strategy.tell(TrialResult(
                number=number, arch=arch, status="completed", score=quality,
                objectives={"quality": quality, "params": cost}, scores={"quality": quality, "params": -cost},
            ))
            number += 1
    return hypervolume_2d(np.array(found), REFERENCE)


def test_nsga2_finds_a_better_front_than_random_search():
    seeds = range(5)
    nsga2 = [front_hypervolume("nsga2", s) for s in seeds]
    random = [front_hypervolume("random", s) for s in seeds]
    best = hypervolume_2d([(10 * a + 3 * b, -(9 * a + b)) for a in range(7) for b in range(7 - a)], REFERENCE)
    assert np.mean(nsga2) > np.mean(random), (nsga2, random)
    assert max(nsga2) <= best + 1e-9
    print(f"hypervolume at 150 evaluations: nsga2 {np.mean(nsga2):.1f} ± {np.std(nsga2):.1f}, "
          f"random {np.mean(random):.1f} ± {np.std(random):.1f}, optimum {best:.1f}")


def test_nsga2_population_stays_non_dominated_and_survives_a_restart():
    space = make_space(SPACES["nb201"].config())
    strategy = make_strategy(STRATEGIES["nsga2"].config(population_size=10), space, 1)
    for number in range(120):
        arch = strategy.ask().arch
        quality, cost = synthetic(arch)
        scores = {"quality": quality} if number % 11 == 0 else {"quality": quality, "params": -cost}
        strategy.tell(TrialResult(number=number, arch=arch, status="completed", score=quality, scores=scores))
        if number % 13 == 0:
            strategy.tell(TrialResult(number=number, arch=space.sample(strategy.rng), status="failed", score=None))
    assert len(strategy.population) == 10 and strategy.objectives == ["quality", "params"]
    # After 120 evaluations the survivors are mostly trade-off points: a 'none' edge costs
    # quality and saves nothing, so NSGA-II's selection removes such cells.
    on_front = sum(
        1 for arch, scores in strategy.population
        if "none" not in arch and "params" in scores
    )
    assert on_front >= 8
    state = json.loads(json.dumps(strategy.state_dict()))
    restored = make_strategy(STRATEGIES["nsga2"].config(population_size=10), space, 99)
    restored.load_state_dict(state)
    assert [space.key(strategy.ask().arch) for _ in range(10)] == [space.key(restored.ask().arch) for _ in range(10)]
