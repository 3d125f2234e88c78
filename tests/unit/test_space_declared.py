"""The user-declared space: the operation vocabulary's shapes agree with torch, conditions
count, mutate and encode as documented, mistakes are refused naming the choice and the allowed
values, and networks for images and sequences train, carry their own hyperparameters into
training and export (CPU, seconds)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scheduler.strategies import STRATEGIES, TrialResult, make_strategy
from scion.configs.declared import DeclaredConfig
from scion.configs.declared_ops import OPERATIONS, ShapeError, expand, output_shape
from spaces import SPACES, InvalidArchitecture
from spaces.base import InvalidSpace, training_settings
from spaces.declared import DeclaredSpace
from spaces.declared_net import make_module
from tests.unit.test_artifacts import assert_exports_match
from tests.unit.test_training import Ctx
from worker.evaluators.train import TrainConfig, TrainEvaluator
from worker.training.datasets import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a conditional space: the activation exists only after a convolution
CONDITIONAL = {
    "layers": [
        {"name": "conv", "ops": [{"op": "conv2d", "channels": [4, 8], "kernel": [1, 3]}, "identity"]},
        {"name": "act", "ops": ["relu", "gelu"], "when": {"conv": ["conv2d"]}},
        {"name": "head", "ops": ["flatten", "global_avg_pool"]},
    ],
    "hyperparameters": {"lr": [0.05, 0.1], "batch_size": [16, 32]},
}
IMAGES = {  # conv2d for digits (1, 8, 8)
    "layers": [
        {"name": "conv1", "ops": [{"op": "conv2d", "channels": [8, 16], "kernel": [3, 5]}]},
        {"name": "norm1", "ops": ["batchnorm", "identity"]},
        {"name": "act1", "ops": ["relu", "silu"]},
        {"name": "pool1", "ops": [{"op": "max_pool", "kernel": 2}, {"op": "avg_pool", "kernel": 2}]},
        {"name": "conv2", "ops": [{"op": "conv2d", "channels": 16, "stride": [1, 2]}, "identity"]},
        {"name": "act2", "ops": ["relu", "elu"], "when": {"conv2": ["conv2d"]}},
        {"name": "head", "ops": ["global_avg_pool", "flatten"]},
        {"name": "drop", "ops": ["identity", {"op": "dropout", "p": 0.1}]},
    ],
    "hyperparameters": {"lr": [0.05, 0.1], "batch_size": [32, 64], "weight_decay": [0.0, 0.0005]},
}
SEQUENCES = {  # conv1d for MNIST-1D (1, 40)
    "layers": [
        {"name": "conv1", "ops": [{"op": "conv1d", "channels": [8, 16], "kernel": [5, 9], "dilation": [1, 2]}]},
        {"name": "act1", "ops": ["relu", "gelu"]},
        {"name": "pool1", "ops": [{"op": "max_pool", "kernel": [2, 4]}, "identity"]},
        {"name": "conv2", "ops": [{"op": "conv1d", "channels": 16, "stride": 2}, "identity"]},
        {"name": "act2", "ops": ["relu", "tanh"], "when": {"conv2": ["conv1d"]}},
        {"name": "head", "ops": ["flatten"]},
        {"name": "hidden", "ops": [{"op": "dense", "units": [16, 32]}, "skip"]},
    ],
    "hyperparameters": {"lr": [0.05, 0.1], "batch_size": [32, 64]},
}


def declared(body: dict[str, Any]) -> DeclaredSpace:
    return DeclaredSpace(DeclaredConfig(**json.loads(json.dumps(body))))


# -- the vocabulary ----------------------------------------------------------------------------

SETTINGS: dict[str, list[dict[str, Any]]] = {
    "linear": [{"units": 5}],
    "conv1d": [{"channels": 3, "kernel": k, "stride": s, "dilation": d}
               for k, s, d in [(1, 1, 1), (3, 2, 1), (4, 1, 3), (5, 3, 2), (31, 1, 1)]],
    "conv2d": [{"channels": 3, "kernel": k, "stride": s, "dilation": d}
               for k, s, d in [(1, 1, 1), (3, 2, 1), (4, 1, 3), (5, 3, 2)]],
    "max_pool": [{"kernel": 2}, {"kernel": 3}, {"kernel": 8}],
    "avg_pool": [{"kernel": 2}, {"kernel": 5}],
    "dropout": [{"p": 0.3}],
}


def test_every_operation_has_the_shape_torch_gives_or_refuses_it() -> None:
    shapes = [(12,), (2, 17), (2, 1), (2, 9, 7), (1, 2, 2)]
    built = set()
    for name in OPERATIONS:
        for params in SETTINGS.get(name, [{}]):
            (option,) = expand({"op": name, **params})
            for shape in shapes:
                try:
                    expected = output_shape(option, shape)
                except ShapeError as exc:
                    assert option.label in str(exc) and str(shape) in str(exc)
                    continue
                module = make_module(option, shape).eval()
                with torch.no_grad():
                    out = module(torch.randn(3, *shape))
                assert tuple(out.shape[1:]) == expected, (option.label, shape)
                built.add(name)
    assert built == set(OPERATIONS)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"op": "conv3d"}, ["unknown operation 'conv3d'", "allowed:", "conv2d", "dense"]),
        ({"op": "conv2d", "channels": 8, "kernel": 0}, ["kernel: 0 is out of range", "an integer from 1 to 31"]),
        ({"op": "conv2d", "channels": 8, "kernel": 2.5}, ["kernel: 2.5 is not allowed"]),
        ({"op": "conv2d"}, ["conv2d needs channels", "conv2d(channels, kernel=3, stride=1, dilation=1)"]),
        ({"op": "linear", "units": 4, "size": 3}, ["no parameter 'size'", "its parameters: units"]),
        ({"op": "dropout", "p": 1}, ["p: 1 is out of range", "below 1"]),
        ({"op": "linear", "units": []}, ["units: an empty list"]),
        (["relu"], ["an operation is a name like 'relu'"]),
    ],
)
def test_operation_mistakes_are_explained(spec: Any, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        expand(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_parameter_lists_expand_to_every_combination_with_aliases_resolved() -> None:
    labels = [o.label for o in expand({"op": "conv1d", "channels": [4, 8], "kernel": [3, 5]})]
    assert labels == [
        "conv1d(channels=4,kernel=3,stride=1,dilation=1)", "conv1d(channels=4,kernel=5,stride=1,dilation=1)",
        "conv1d(channels=8,kernel=3,stride=1,dilation=1)", "conv1d(channels=8,kernel=5,stride=1,dilation=1)",
    ]
    assert [o.label for o in expand("skip")] == ["identity"]
    assert [o.label for o in expand({"op": "dense", "units": 3})] == ["linear(units=3)"]


# -- conditions, size, decisions ---------------------------------------------------------------


CHAINED = {  # each hidden layer exists only after a linear one; the activation reads two choices
    "layers": [
        {"name": "h0", "ops": ["identity", {"op": "linear", "units": [4, 8]}, "flatten"]},
        {"name": "h1", "ops": ["identity", {"op": "linear", "units": [4, 8]}], "when": {"h0": ["linear"]}},
        {"name": "h2", "ops": ["identity", {"op": "linear", "units": 4}], "when": {"h1": ["linear"]}},
        {"name": "act", "ops": ["relu", "tanh"], "when": {"h0": ["linear(units=8)", "flatten"], "h2": ["identity"]}},
    ],
    "hyperparameters": {"epochs": [1, 2]},
}


@pytest.mark.parametrize(("body", "expected"), [(CONDITIONAL, (4 * 2 + 1) * 2 * 2 * 2), (CHAINED, 2 * 14)],
                         ids=["conditional", "chained"])
def test_size_is_the_number_of_distinct_networks(body: dict[str, Any], expected: int) -> None:
    space = declared(body)
    radices = [len(o) for _, o in space.decisions()]
    keys = {space.key(space.from_choices(list(c))) for c in itertools.product(*map(range, radices))}
    assert space.size() == len(keys) == expected


def test_a_space_too_intricate_to_check_is_refused() -> None:
    layers = [{"name": f"a{i}", "ops": ["relu", "gelu", "tanh"]} for i in range(20)]
    layers.append({"name": "x", "ops": ["relu"], "when": {f"a{i}": ["relu"] for i in range(20)}})
    with pytest.raises(InvalidSpace, match=r"layers\[\d+\] 'a\d+': over 100,000 combinations .* fewer conditions"):
        declared({"layers": layers})


def test_a_conditional_choice_exists_only_while_its_condition_holds() -> None:
    space = declared(CONDITIONAL)
    with_conv = {"layers": {"conv": {"op": "conv2d", "channels": 8, "kernel": 3}, "act": "gelu", "head": "flatten"},
                 "hyperparameters": {"lr": 0.1, "batch_size": 16}}
    arch = space.validate(with_conv)  # an operation object stands for its label
    assert arch["layers"]["conv"] == "conv2d(channels=8,kernel=3,stride=1,dilation=1)"
    assert space.key(arch) == ("conv=conv2d(channels=8,kernel=3,stride=1,dilation=1)|act=gelu|head=flatten"
                               "|lr=0.1|batch_size=16")
    without = [n for n in space.neighbours(arch) if n["layers"]["conv"] == "identity"]
    assert len(without) == 1 and "act" not in without[0]["layers"]  # the condition no longer holds
    back = [n for n in space.neighbours(without[0]) if n["layers"]["conv"] != "identity"]
    assert {n["layers"]["act"] for n in back} == {"relu"}  # regained: its first option, as from_choices
    # an inactive choice is written as its first option and ignored when read back
    choices = space.to_choices(without[0])
    assert choices[1] == 0 and space.encode(without[0])[5:7].sum() == 0
    assert space.from_choices([4, 1, *choices[2:]]) == without[0]
    assert training_settings(space, arch) == {"lr": 0.1, "batch_size": 16}


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda a: a["layers"].update(act="tanh"), ["layers.act", "'tanh' is not an option", "allowed: relu, gelu"]),
        (lambda a: a["layers"].update(conv="identity"), ["layers.act", "exists only when conv is conv2d"]),
        (lambda a: a["layers"].pop("head"), ["layers.head: missing", "allowed: flatten, global_avg_pool"]),
        (lambda a: a["layers"].update(extra="relu"), ["unknown choice extra", "choices: conv, act, head"]),
        (lambda a: a["hyperparameters"].update(lr=0.2), ["hyperparameters.lr", "allowed: 0.05, 0.1"]),
        (lambda a: a["hyperparameters"].update(batch_size=True), ["hyperparameters.batch_size", "True"]),
        (lambda a: a["hyperparameters"].pop("lr"), ["hyperparameters", "missing: lr"]),
        (lambda a: a.update(epochs=3), ["unexpected field epochs"]),
    ],
)
def test_validate_names_the_choice_and_the_allowed_values(edit: Any, fragments: list[str]) -> None:
    space = declared(CONDITIONAL)
    arch = space.sample(np.random.default_rng(0))
    arch["layers"].update(conv="conv2d(channels=4,kernel=1,stride=1,dilation=1)", act="relu")
    edit(arch)
    with pytest.raises(InvalidArchitecture) as info:
        space.validate(arch)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("layers", "fragments"),
    [
        ([{"ops": ["relu"], "when": {"later": ["relu"]}}, {"name": "later", "ops": ["relu"]}],
         ["layers[0] 'layer0'.when", "'later' is not an earlier choice"]),
        ([{"name": "a", "ops": ["relu"]}, {"ops": ["relu"], "when": {"a": ["gelu"]}}],
         ["layers[1] 'layer1'.when.a", "'gelu' is not an option of that choice", "allowed: relu"]),
        ([{"name": "a", "ops": ["relu"]}, {"ops": ["relu"], "when": {"a": []}}], ["an empty list never holds"]),
        ([{"name": "a", "ops": [{"op": "linear", "units": 4}, {"op": "dense", "units": 4}]}],
         ["linear(units=4) offered more than once"]),
        ([{"name": "a", "ops": [{"op": "conv2d", "channels": list(range(1, 60)), "kernel": [1, 3, 5, 7, 9]}]}],
         ["layers[0] 'a': ops[0]: conv2d: its parameter lists make 295 options", "the 256 left"]),
        ([{"name": "a-b", "ops": ["relu"]}], ["name"]),
    ],
)
def test_config_mistakes_name_the_choice(layers: list[dict[str, Any]], fragments: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        DeclaredConfig(layers=layers)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_every_network_must_fit_the_input_shape() -> None:
    images, sequences = declared(IMAGES), declared(SEQUENCES)
    images.check_input((1, 8, 8))
    sequences.check_input((1, 40))
    with pytest.raises(InvalidSpace, match=r"layers\[0\] 'conv1'.*needs an image.*a sequence \(1, 40\).*use conv1d"):
        images.check_input((1, 40))
    with pytest.raises(InvalidSpace, match=r"'conv1'.*needs a sequence.*an image \(1, 8, 8\).*use conv2d"):
        sequences.check_input((1, 8, 8))
    # a file dataset's shape is known only when a worker builds the network: the same message then
    with pytest.raises(ValueError, match=r"choice 'conv1': conv2d\(.*\) needs an image.*a sequence \(1, 40\)"):
        images.build(images.sample(np.random.default_rng(0)), (1, 40), 10)
    # one path in many is enough to refuse: a stride-2 convolution after the pooling leaves 8x8 at 2x2,
    # and a further 4x4 pool cannot take that
    deeper = json.loads(json.dumps(IMAGES))
    deeper["layers"].insert(6, {"name": "pool2", "ops": ["identity", {"op": "avg_pool", "kernel": 4}]})
    with pytest.raises(InvalidSpace, match=r"'pool2'.*avg_pool\(kernel=4\).*\(16, 2, 2\).*e\.g\. after .*stride=2"):
        declared(deeper).check_input((1, 8, 8))


def test_every_strategy_searches_a_conditional_space() -> None:
    space = declared(CONDITIONAL)
    for name in STRATEGIES.names():
        strategy = make_strategy(STRATEGIES[name].config(), space, seed=0)
        for number in range(6):
            proposal = strategy.ask()
            assert proposal is not None, name
            arch = space.validate(proposal.arch)
            strategy.tell(TrialResult(number=number, arch=arch, status="completed", score=float(len(space.key(arch))),
                                      fidelity=proposal.fidelity))


# -- networks: images, sequences, hyperparameters, export --------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("body", "dataset"), [(IMAGES, {"type": "digits"}),
                                                (SEQUENCES, {"type": "mnist1d", "num_samples": 1000})],
                         ids=["digits", "mnist1d"])
def test_trained_networks_export_with_matching_outputs(body: dict[str, Any], dataset: dict[str, Any],
                                                        tmp_path: Path) -> None:
    assert_exports_match(SPACES["declared"].config(**body), dataset, tmp_path)


def test_each_trial_trains_with_the_hyperparameters_it_carries(tmp_path: Path) -> None:
    space = declared({**IMAGES, "hyperparameters": {"lr": [0.1], "batch_size": [50], "weight_decay": [0.001],
                                                    "epochs": [2]}})
    arch = space.sample(np.random.default_rng(2))
    evaluator = TrainEvaluator(TrainConfig(dataset="digits", epochs=1, batch_size=32, lr=0.05, latency_repeats=1))
    ctx = Ctx(artifacts=tmp_path)
    result = evaluator.evaluate(space, arch, ctx)
    assert [e for e, _ in ctx.reports] == [1, 2]  # the architecture's epochs, not the evaluator's 1
    state = torch.load(ctx.artifact_path(0), weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == 0.1 and group["weight_decay"] == 0.001
    steps = -(-len(load_dataset("digits").y_train) // 50)
    assert state["scheduler"]["T_max"] == 2 * steps  # two epochs of batches of 50, not of 32
    assert result["val_acc"] > 50  # chance is 10%
    # a strategy's budget (ASHA's rungs) outranks the architecture's epochs
    short = Ctx(fidelity={"epochs": 1}, artifacts=tmp_path)
    evaluator.evaluate(space, arch, short)
    assert [e for e, _ in short.reports] == [1]


def test_the_example_spec_is_accepted() -> None:
    import yaml

    from scion.spec import JobSpec

    path = Path(__file__).resolve().parents[2] / "examples" / "declared-digits.yaml"
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    space = SPACES["declared"].factory(spec.space)
    assert set(space.searched_settings()) == {"lr", "batch_size"} and space.size() > 100
