"""Declared spaces through the HTTP API: one that cannot build a network is refused with a 422
naming the choice and the allowed values, before anything is stored; the catalogue shows the
space's schema, vocabulary and an example the API accepts."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_api import catalogue, client, no_traceback, submit  # noqa: F401 (client is a fixture)

pytestmark = pytest.mark.timeout(60)

LAYERS: list[dict[str, Any]] = [
    {"name": "conv", "ops": [{"op": "conv2d", "channels": [4, 8], "kernel": [3, 5]}, "identity"]},
    {"name": "act", "ops": ["relu", "gelu"], "when": {"conv": ["conv2d"]}},
    {"name": "flat", "ops": ["flatten"]},
    {"name": "hidden", "ops": [{"op": "dense", "units": [16, 32]}, "skip"]},
]


def declared_spec(layers: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "space": {"type": "declared", "layers": copy.deepcopy(LAYERS if layers is None else layers),
                  "hyperparameters": {"lr": [0.05, 0.1], "batch_size": [32, 64]}},
        "strategy": {"type": "random"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 1},
    }
    for key, value in extra.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and key in spec else value
    return spec


def edited(layer: int, **change: Any) -> list[dict[str, Any]]:
    layers = copy.deepcopy(LAYERS)
    layers[layer].update(change)
    return layers


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown operation", declared_spec(edited(1, ops=["relu", "swish"])),
     ["layers[1] 'act'", "unknown operation 'swish'", "allowed: identity, linear, conv1d, conv2d"]),
    ("parameter out of range", declared_spec(edited(0, ops=[{"op": "conv2d", "channels": 4, "kernel": 0}])),
     ["layers[0] 'conv'", "kernel: 0 is out of range", "an integer from 1 to 31"]),
    ("unknown parameter", declared_spec(edited(3, ops=[{"op": "dense", "neurons": 8}])),
     ["layers[3] 'hidden'", "no parameter 'neurons'", "its parameters: units"]),
    ("condition on a missing choice", declared_spec(edited(1, when={"cnv": ["conv2d"]})),
     ["layers[1] 'act'.when", "'cnv' is not an earlier choice", "allowed: conv"]),
    ("condition on an operation the choice lacks", declared_spec(edited(1, when={"conv": ["linear"]})),
     ["layers[1] 'act'.when.conv", "'linear' is not an option", "allowed: conv2d, identity"]),
    ("conv after flatten", declared_spec([*LAYERS, {"name": "conv2", "ops": [{"op": "conv2d", "channels": 4}]}]),
     ["space.layers[4] 'conv2'", "needs an image", "its input is flat", "flat=flatten", "(1, 8, 8)"]),
    ("an image space on sequences", declared_spec(evaluator={"dataset": "mnist1d"}),
     ["space.layers[0] 'conv'", "needs an image", "a sequence (1, 40)", "use conv1d"]),
    ("learning rate out of bounds",
     declared_spec(space={"type": "declared", "layers": LAYERS, "hyperparameters": {"lr": [0.1, 20]}}),
     ["space.hyperparameters.lr", "20", "less than or equal to 10"]),
    ("hyperparameters for an evaluator that does not train",
     {**declared_spec(), "evaluator": {"type": "proxy", "dataset": "digits"}},
     ["space.hyperparameters.lr", "evaluator 'proxy' does not train with lr"]),
    ("epochs searched while ASHA sets them",
     declared_spec(space={"type": "declared", "layers": LAYERS, "hyperparameters": {"epochs": [1, 2]}},
                   strategy={"type": "asha"}),
     ["space.hyperparameters.epochs", "strategy 'asha' sets each trial's epochs"]),
    ("too intricate to check",
     declared_spec([*({"name": f"a{i}", "ops": ["relu", "gelu", "tanh"]} for i in range(20)),
                    {"name": "x", "ops": ["relu"], "when": {f"a{i}": ["relu"] for i in range(20)}}]),
     ["over 100,000 combinations", "fewer conditions"]),
    ("warm start outside the space",
     declared_spec(warm_start=[{"layers": {"conv": "identity", "act": "relu", "flat": "flatten", "hidden": "identity"},
                                "hyperparameters": {"lr": 0.1, "batch_size": 32}}]),
     ["warm_start[0]", "layers.act", "exists only when conv is conv2d"]),
]


@pytest.mark.parametrize(("what", "body", "fragments"), INVALID, ids=[c[0] for c in INVALID])
def test_a_space_that_cannot_build_is_refused_naming_the_choice(
    client: TestClient, what: str, body: dict[str, Any], fragments: list[str]  # noqa: F811
) -> None:
    r = client.post("/v1/jobs", json=body)
    no_traceback(r)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert all(f in detail for f in fragments), (what, detail)
    assert client.get("/v1/jobs").json()["total"] == 0


def test_catalogue_shows_the_schema_vocabulary_and_an_accepted_example(client: TestClient) -> None:  # noqa: F811
    entry = catalogue(client, "spaces")["declared"]
    schema = entry["json_schema"]
    assert {"layers", "hyperparameters"} <= set(schema["properties"])
    assert "conv2d(channels, kernel=3, stride=1, dilation=1)" in str(schema)  # the vocabulary, with defaults
    assert entry["details"]["size"] == 2160
    example = entry["details"]["example"]
    assert set(example) == {"layers", "hyperparameters"} and example["layers"]["flat"] == "flatten"
    job = submit(client, {"space": {"type": "declared"}, "strategy": {"type": "random"},
                          "evaluator": {"type": "train", "dataset": "mnist1d"}, "warm_start": [example]})
    assert job["spec"]["warm_start"] == [example]


def test_an_accepted_space_is_stored_with_its_names_and_canonical_architectures(client: TestClient) -> None:  # noqa: F811
    layers = edited(2, name=None)
    del layers[2]["name"]
    arch = {"layers": {"conv": {"op": "conv2d", "channels": 8, "kernel": 5}, "act": "gelu", "layer2": "flatten",
                       "hidden": {"op": "linear", "units": 16}}, "hyperparameters": {"lr": 0.1, "batch_size": 64}}
    job = submit(client, declared_spec(layers, warm_start=[arch]))
    assert [layer["name"] for layer in job["spec"]["space"]["layers"]] == ["conv", "act", "layer2", "hidden"]
    assert job["spec"]["warm_start"] == [{
        "layers": {"conv": "conv2d(channels=8,kernel=5,stride=1,dilation=1)", "act": "gelu", "layer2": "flatten",
                   "hidden": "linear(units=16)"},
        "hyperparameters": {"lr": 0.1, "batch_size": 64},
    }]


def test_a_setting_written_on_the_evaluator_is_trained_with_not_searched(client: TestClient) -> None:  # noqa: F811
    spec = declared_spec(evaluator={"lr": 0.3})
    del spec["space"]["hyperparameters"]  # the default searches lr and batch size
    job = submit(client, spec)
    searched = {name: options for name, options in job["spec"]["space"]["hyperparameters"].items() if options}
    assert searched == {"batch_size": [32, 64]}
    assert job["spec"]["evaluator"]["lr"] == 0.3
    r = client.post("/v1/jobs", json={**spec, "warm_start": [{"layers": {"conv": "identity", "flat": "flatten",
                                                                         "hidden": "identity"},
                                                              "hyperparameters": {"lr": 0.05, "batch_size": 32}}]})
    assert r.status_code == 422 and "hyperparameters" in r.text and "batch_size" in r.text, r.text


def test_a_setting_both_searched_and_written_is_refused_naming_both(client: TestClient) -> None:  # noqa: F811
    r = client.post("/v1/jobs", json=declared_spec(evaluator={"batch_size": 16}))
    assert r.status_code == 422, r.text
    no_traceback(r)
    assert "space.hyperparameters.batch_size" in r.text and "evaluator.batch_size sets it to 16" in r.text, r.text


def test_a_retrain_job_refuses_a_setting_its_architecture_already_carries(client: TestClient) -> None:  # noqa: F811
    arch = {"layers": {"conv": "identity", "flat": "flatten", "hidden": "identity"},
            "hyperparameters": {"lr": 0.05, "batch_size": 32}}
    retrain = {"kind": "retrain", "space": declared_spec()["space"], "retrain": {"arch": arch}}
    r = client.post("/v1/jobs", json={**retrain, "evaluator": {"type": "train", "dataset": "digits", "lr": 0.2}})
    assert r.status_code == 422, r.text
    assert "evaluator.lr" in r.text and "carries its searched lr (0.05)" in r.text, r.text
    job = submit(client, {**retrain, "evaluator": {"type": "train", "dataset": "digits", "epochs": 3}})
    assert job["spec"]["evaluator"]["epochs"] == 3  # epochs stays the evaluator's to set
