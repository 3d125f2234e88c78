"""Learning-curve extrapolation: hopeless trials stop, promising or young ones go on."""
from __future__ import annotations

import math

from scheduler.early_stopping import CurveStoppingConfig, extrapolate, should_stop

CONFIG = CurveStoppingConfig(min_epochs=2, top_k=3)


def test_log_curve_is_extrapolated_exactly():
    curve = [(e, 50 + 10 * math.log(e)) for e in (1, 2, 3, 4)]
    assert abs(extrapolate(curve, 20) - (50 + 10 * math.log(20))) < 1e-9


def test_a_flat_or_falling_curve_is_never_predicted_below_its_best():
    assert extrapolate([(1, 60.0), (2, 55.0), (3, 50.0)], 10) == 60.0


def test_hopeless_trial_is_stopped_and_promising_one_goes_on():
    slow = [(1, 20.0), (2, 22.0), (3, 23.0)]
    fast = [(1, 60.0), (2, 80.0), (3, 88.0)]
    assert should_stop(CONFIG, slow, 10, kth_best=90.0) is not None
    assert should_stop(CONFIG, fast, 10, kth_best=90.0) is None


def test_no_judgement_without_enough_epochs_or_enough_finished_trials():
    assert should_stop(CONFIG, [(1, 10.0)], 10, kth_best=90.0) is None
    assert should_stop(CONFIG, [(1, 10.0), (2, 11.0)], 10, kth_best=None) is None
    assert should_stop(CONFIG, [(9, 10.0), (10, 11.0)], 10, kth_best=90.0) is None  # already done


def test_margin_gives_the_benefit_of_the_doubt():
    curve = [(1, 80.0), (2, 84.0)]
    assert should_stop(CONFIG, curve, 4, kth_best=90.0) is not None
    assert should_stop(CurveStoppingConfig(margin=5.0), curve, 4, kth_best=90.0) is None
