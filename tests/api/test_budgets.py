"""What a job may cost is bounded at submission (issue 16, items 3 and 11): a space whose largest
network is over this server's limits (parameters, FLOPs per example, activation memory at the
training batch size) is refused with a 422 naming the choice to shrink and the setting; epochs and
batch sizes have caps no strategy or one-shot method escapes; every number of the spec has a
documented range. The examples and the tests' usual specs are still accepted.
The real app in a TestClient against a fresh SQLite file and a fresh PostgreSQL database."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from api.main import create_app
from scion.settings import get_settings
from tests.api.test_api import submit
from tests.api.test_one_shot_requests import refused

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def search(space: dict[str, Any], dataset: str = "digits", **evaluator: Any) -> dict[str, Any]:
    return {"space": space, "strategy": {"type": "random"},
            "evaluator": {"type": "train", "dataset": dataset, **evaluator}}


def layers(n: int, op: dict[str, Any], first: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "declared", "hyperparameters": {},
            "layers": (first or []) + [{"name": f"l{i}", "ops": [op]} for i in range(n)]}


# The six specs the red team submitted, each valid by the schema, from 294 M to 10^15 parameters.
EXTREME = [
    ("nb201", search({"type": "nb201", "channels": 256, "cells_per_stage": 20}), "space.channels",
     "lower channels or cells_per_stage"),
    ("darts", search({"type": "darts", "channels": 512, "layers": 40}), "space.channels",
     "lower channels, layers or stem_multiplier"),
    ("chain", search({"type": "chain", "channels": [100_000] * 5, "widths": [1.0]}), "space.channels",
     "lower channels"),
    ("conv1d", search({"type": "conv1d", "min_layers": 32, "max_layers": 32, "channels": [4096], "kernels": [63]},
                      "mnist1d"), "space.channels", "lower the largest channels or kernels, or max_layers"),
    ("linear", search(layers(63, {"op": "linear", "units": 65536}, [{"name": "flat", "ops": ["flatten"]}])),
     "space.layers[2]", "lower the units or channels of choice 'l1'"),
    ("conv2d", search(layers(64, {"op": "conv2d", "channels": 4096})), "space.layers[1]",
     "lower the units or channels of choice 'l1'"),
]


@pytest.mark.parametrize(("spec", "field", "advice"), [e[1:] for e in EXTREME], ids=[e[0] for e in EXTREME])
def test_a_space_whose_largest_network_is_too_big_is_refused_naming_the_choice(
        client: TestClient, spec: dict[str, Any], field: str, advice: str) -> None:
    message = refused(client, spec, field)
    assert message.startswith("the largest network has ") and " parameters, above this server's limit of 1e8 " \
        "(SCION_MAX_MODEL_PARAMS); " in message, message
    assert advice in message
    assert client.get("/v1/jobs").json()["total"] == 0


def test_flops_and_activation_memory_have_limits_too(client: TestClient, monkeypatch) -> None:
    spec = search({"type": "nb201", "channels": 16, "cells_per_stage": 5}, batch_size=256)
    submit(client, spec)  # within the defaults
    monkeypatch.setenv("SCION_MAX_MODEL_FLOPS", "1e6")
    get_settings.cache_clear()
    message = refused(client, spec, "space.channels")
    assert "FLOPs per example, above this server's limit of 1e6 (SCION_MAX_MODEL_FLOPS)" in message
    monkeypatch.delenv("SCION_MAX_MODEL_FLOPS")
    monkeypatch.setenv("SCION_MAX_ACTIVATION_MB", "10")
    get_settings.cache_clear()
    message = refused(client, spec, "space.channels")
    assert ("MiB of activations for a training batch of 256 (evaluator.batch_size), above this server's limit of "
            "10 MiB (SCION_MAX_ACTIVATION_MB); lower channels or cells_per_stage, or evaluator.batch_size") in message
    submit(client, {**spec, "evaluator": {**spec["evaluator"], "batch_size": 8}})  # a smaller batch fits
    # a declared space is counted at the largest batch size it searches
    declared = search({"type": "declared", "layers": [{"name": "c", "ops": [{"op": "conv2d", "channels": 256}]}],
                       "hyperparameters": {"batch_size": [8, 4096]}})
    assert "for a training batch of 4096 (space.hyperparameters.batch_size)" in refused(client, declared,
                                                                                       "space.layers[0]")


def test_a_retrain_job_is_checked_on_its_own_network(client: TestClient, monkeypatch) -> None:
    spec = {"kind": "retrain", "retrain": {"arch": ["nor_conv_3x3"] * 6},
            "space": {"type": "nb201", "channels": 64, "cells_per_stage": 5},
            "evaluator": {"type": "train", "dataset": "digits"}}
    monkeypatch.setenv("SCION_MAX_MODEL_PARAMS", "3000000")
    get_settings.cache_clear()
    message = refused(client, spec, "retrain.arch")
    assert "the network has " in message and "limit of 3e6 (SCION_MAX_MODEL_PARAMS); retrain a smaller" in message
    submit(client, {**spec, "retrain": {"arch": ["skip_connect"] * 6}})  # no convolution in its cells: it fits


def test_no_strategy_or_method_trains_past_the_epoch_and_batch_caps(client: TestClient) -> None:
    asha = search({"type": "nb201", "channels": 4, "cells_per_stage": 1})
    asha["strategy"] = {"type": "asha", "max_epochs": 10_000}
    assert refused(client, asha, "strategy.asha.max_epochs") == "Input should be less than or equal to 1000"
    asha["strategy"] = {"type": "asha", "max_epochs": 1000}
    submit(client, asha)
    nb201 = {"type": "nb201", "channels": 4, "cells_per_stage": 1}
    for method, field in (("spos", "epochs"), ("darts", "epochs"), ("enas", "epochs"), ("spos", "batch_size")):
        spec = {"space": nb201, "evaluator": {"type": "train", "dataset": "digits"},
                "one_shot": {"method": {"type": method, field: 10_000}}}
        cap = 1000 if field == "epochs" else 4096
        assert refused(client, spec, f"one_shot.method.{method}.{field}") == f"Input should be less than or " \
                                                                             f"equal to {cap}"
    for field, value, allowed in (("epochs", 1001, 1000), ("batch_size", 4097, 4096)):
        spec = search(nb201, **{field: value})
        assert refused(client, spec, f"evaluator.train.{field}") == f"Input should be less than or equal to {allowed}"


BAD_NUMBERS = [
    ("weight_decay", {"evaluator": {"weight_decay": 1e308}}, "evaluator.train.weight_decay",
     "Input should be less than or equal to 1"),
    ("trial_time_limit", {"budget": {"trial_time_limit_s": 1e-300}}, "budget.trial_time_limit_s",
     "Input should be greater than or equal to 1"),
    ("time_limit", {"budget": {"time_limit_s": 0.5}}, "budget.time_limit_s",
     "Input should be greater than or equal to 1"),
    ("margin", {"early_stopping": {"margin": 1e300}}, "early_stopping.margin",
     "Input should be less than or equal to 1000000"),
]


@pytest.mark.parametrize(("change", "field", "message"), [b[1:] for b in BAD_NUMBERS], ids=[b[0] for b in BAD_NUMBERS])
def test_numbers_out_of_their_range_are_refused_naming_it(client: TestClient, change: dict[str, Any], field: str,
                                                          message: str) -> None:
    spec = search({"type": "nb201", "channels": 4, "cells_per_stage": 1})
    for part, values in change.items():
        spec[part] = {**spec.get(part, {}), **values}
    assert refused(client, spec, field) == message


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.yaml") if "tabular" not in p.name),
                         ids=lambda p: p.stem)  # (the tabular example reads a table and builds no network)
def test_the_examples_are_accepted(client: TestClient, path: Path) -> None:
    submit(client, yaml.safe_load(path.read_text()))
