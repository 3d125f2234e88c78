"""What a user sends stays what they sent; what is stored says everything the scheduler and the
workers need, so neither guesses: the default objective and its direction, a retrain job's one
trial and inert strategy, architectures in their canonical form, max_parallel within max_trials."""
from __future__ import annotations

import spaces  # noqa: F401  (the space implementations the spec validates architectures with)
from scion.spec import SPEC_VERSION, JobRequest, JobSpec, load_spec

SEARCH = {
    "space": {"type": "nb201"}, "strategy": {"type": "random"},
    "evaluator": {"type": "train", "dataset": "digits", "epochs": 2},
    "budget": {"max_trials": 3, "max_parallel": 8},
    "warm_start": ["|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"],
}


def test_a_request_is_checked_but_not_rewritten() -> None:
    request = JobRequest.model_validate(SEARCH)
    assert request.objectives == [] and request.budget.max_parallel == 8
    assert request.warm_start == SEARCH["warm_start"]  # as written (a benchmark string)


def test_the_stored_spec_is_normalised_and_versioned() -> None:
    spec = JobSpec.of(JobRequest.model_validate(SEARCH))
    assert spec.spec_version == SPEC_VERSION
    assert [(o.metric, o.mode) for o in spec.objectives] == [("val_acc", "max")]
    assert spec.budget.max_parallel == 3
    assert spec.warm_start == [["nor_conv_3x3", "none", "skip_connect", "none", "none", "avg_pool_3x3"]]


def test_a_retrain_request_becomes_one_trial_of_its_architecture() -> None:
    arch = ["nor_conv_3x3"] * 6
    request = JobRequest.model_validate({
        "kind": "retrain", "retrain": {"arch": arch}, "space": {"type": "nb201"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 5},
    })
    assert request.strategy is None and request.warm_start == []
    spec = JobSpec.of(request)
    assert spec.name == "retrain" and spec.strategy.type == "random"
    assert (spec.budget.max_trials, spec.budget.max_parallel) == (1, 1)
    assert spec.warm_start == [arch] and spec.retrain.arch == arch
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec  # stored and read back: the same


def test_a_one_shot_request_is_stored_with_what_each_phase_needs_and_reads_back() -> None:
    enas = {"space": {"type": "nb201"}, "evaluator": {"type": "train", "dataset": "digits"},
            "one_shot": {"method": {"type": "enas", "samples": 4}, "retrain_top_k": 2}}
    spec = JobSpec.of(JobRequest.model_validate(enas))
    assert spec.strategy.type == "random"  # inert: the controller proposes the search's candidates
    assert (spec.budget.max_trials, spec.budget.max_parallel) == (4, 2)
    assert load_spec(spec.model_dump(mode="json")) == spec
    spos = JobSpec.of(JobRequest.model_validate({**enas, "one_shot": {"method": {"type": "spos"}}}))
    assert spos.strategy.type == "evolution" and spos.budget.max_trials == 20  # SPOS searched by evolution


def test_a_spec_stored_as_version_2_reads_as_the_current_version() -> None:
    stored = {**JobSpec.of(JobRequest.model_validate(SEARCH)).model_dump(mode="json"), "spec_version": 2}
    del stored["one_shot"]  # version 2 had no one_shot
    assert load_spec(stored).spec_version == SPEC_VERSION == 3
