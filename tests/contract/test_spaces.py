"""Contract every registered search space must honour.

Strategies, the API and the worker only ever see the ``SearchSpace`` protocol, so these tests
are what lets a new space be dropped in without touching them.
"""
from __future__ import annotations

import csv
import json
import re
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scion.registry import Entry
from spaces import SPACES, InvalidArchitecture, SearchSpace, make_space
from spaces.nb201 import EDGES, OPS, NB201Config, NB201Space

# Build tests shrink each space so that they stay fast; unknown spaces use their defaults.
SMALL: dict[str, dict[str, Any]] = {
    "nb201": {"channels": 4, "cells_per_stage": 1},
    "darts": {"channels": 4, "layers": 3, "stem_multiplier": 1},
    "chain": {"channels": [4, 8, 8], "strides": [1, 2, 2], "stem_channels": 4, "depths": [1, 2]},
    "conv1d": {"max_layers": 3, "channels": [4, 8]},
    "declared": {"layers": [  # operations that fit images and sequences alike
        {"name": "norm", "ops": ["identity", "batchnorm"]},
        {"name": "pool", "ops": ["identity", {"op": "avg_pool", "kernel": 2}, {"op": "max_pool", "kernel": 2}]},
        {"name": "head", "ops": ["flatten", "global_avg_pool"]},
        {"name": "hidden", "ops": [{"op": "dense", "units": [4, 8]}, "skip"]},
        {"name": "act", "ops": ["relu", "gelu", "silu", "tanh", "leaky_relu"], "when": {"hidden": ["linear"]}},
        {"name": "drop", "ops": ["identity", {"op": "dropout", "p": 0.1}]},
    ]},
}
GARBAGE: list[Any] = [None, 42, 3.5, {"not": "an arch"}, [], "definitely not an arch", [[[]]]]
NB201_CSV = Path(__file__).resolve().parents[3] / "shared/data/nb201_cifar10.csv"

ENTRIES = SPACES.entries()
IDS = [e.name for e in ENTRIES]


def make(entry: Entry[Any], **overrides: Any) -> SearchSpace:
    return entry.factory(entry.config(**overrides))


@pytest.fixture(params=ENTRIES, ids=IDS)
def entry(request: pytest.FixtureRequest) -> Entry[Any]:
    return request.param


@pytest.fixture
def space(entry: Entry[Any]) -> SearchSpace:
    return make(entry)


def samples(space: SearchSpace, n: int = 20, seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_sample_is_deterministic_and_valid(space: SearchSpace) -> None:
    first, second = samples(space, seed=7), samples(space, seed=7)
    assert [space.key(a) for a in first] == [space.key(a) for a in second]
    for arch in first:
        assert space.key(space.validate(arch)) == space.key(arch)
    assert len({space.key(a) for a in samples(space, n=50)}) > 1


def test_mutate_differs_and_is_a_neighbour(space: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    for arch in samples(space):
        for _ in range(5):
            child = space.mutate(arch, rng)
            space.validate(child)
            assert space.key(child) != space.key(arch)
            assert space.key(child) in {space.key(n) for n in space.neighbours(arch)}


def test_neighbours_are_distinct_valid_and_exclude_arch(space: SearchSpace) -> None:
    for arch in samples(space, n=5):
        neighbours = space.neighbours(arch)
        keys = [space.key(space.validate(n)) for n in neighbours]
        assert neighbours and len(set(keys)) == len(keys)
        assert space.key(arch) not in keys
        assert [space.key(n) for n in space.neighbours(arch)] == keys  # fixed order


def test_encode_is_fixed_length_and_injective(space: SearchSpace) -> None:
    archs = samples(space, n=200)
    vectors = {space.key(a): space.encode(a) for a in archs}
    lengths = {v.shape for v in vectors.values()}
    assert len(lengths) == 1 and len(next(iter(lengths))) == 1
    for arch in archs[:10]:
        np.testing.assert_array_equal(space.encode(arch), vectors[space.key(arch)])
        assert np.issubdtype(space.encode(arch).dtype, np.floating)
    assert len({v.tobytes() for v in vectors.values()}) == len(vectors)


def test_choices_round_trip_and_bad_choices_are_refused_naming_the_decision(space: SearchSpace) -> None:
    decisions = space.decisions()
    for arch in samples(space):
        choices = space.to_choices(arch)
        assert len(choices) == len(decisions)
        assert space.key(space.from_choices(choices)) == space.key(arch)
    choices = space.to_choices(samples(space, n=1)[0])
    name, options = decisions[-1]
    for bad in (len(options), -1):
        with pytest.raises(InvalidArchitecture, match=f"{re.escape(name)}: choice {bad} is out of range"):
            space.from_choices([*choices[:-1], bad])
    with pytest.raises(InvalidArchitecture, match=f"takes {len(decisions)} choices"):
        space.from_choices(choices[:-1])


def test_key_round_trips_through_validate(space: SearchSpace) -> None:
    for arch in samples(space):
        key = space.key(arch)
        assert isinstance(key, str)
        assert space.validate(key) == space.validate(arch)
        assert space.key(space.validate(key)) == key


def test_json_round_trip_keeps_validity(space: SearchSpace) -> None:
    for arch in samples(space):
        again = json.loads(json.dumps(arch))
        assert space.key(space.validate(again)) == space.key(arch)


@pytest.mark.parametrize("garbage", GARBAGE, ids=repr)
def test_validate_rejects_garbage_with_a_reason(space: SearchSpace, garbage: Any) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        space.validate(garbage)
    assert len(str(info.value)) > 10


def test_size(space: SearchSpace) -> None:
    size = space.size()
    assert size is None or (isinstance(size, int) and size > 1)


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (1, 40)], ids=["image8x8", "sequence40"])
def test_build_forward_and_backward(entry: Entry[Any], input_shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    space = make(entry, **SMALL.get(entry.name, {}))
    torch.manual_seed(0)
    for arch in samples(space, n=3, seed=3):
        model = space.build(arch, input_shape, 5)
        out = model(torch.randn(4, *input_shape))
        assert out.shape == (4, 5)
        out.square().mean().backward()
        assert any(p.grad is not None for p in model.parameters())
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(2, *input_shape)).shape == (2, 5)


def test_an_exported_network_rebuilds_from_its_json(entry: Entry[Any]) -> None:
    """What ``scion export --format state_dict`` writes beside the weights is JSON: the space's
    config, the architecture and the input shape as JSON, fed to make_space and build as they are."""
    torch = pytest.importorskip("torch")
    config = entry.config(**SMALL.get(entry.name, {}))
    original = make_space(config)
    arch = samples(original, n=1, seed=5)[0]
    torch.manual_seed(0)
    trained = original.build(arch, (1, 8, 8), 5).eval()
    about = json.loads(json.dumps({"space": config.model_dump(mode="json"), "arch": arch, "input_shape": [1, 8, 8]}))
    rebuilt = make_space(about["space"]).build(about["arch"], about["input_shape"], 5).eval()
    rebuilt.load_state_dict(trained.state_dict())
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained(x))


def test_a_space_given_as_json_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="space") as unknown:
        make_space({"type": "resnet"})
    assert all(name in str(unknown.value) for name in SPACES.names())
    with pytest.raises(ValueError, match="discriminator 'type'"):
        make_space({"channels": 4})
    with pytest.raises(ValueError, match="nb201.channels"):
        make_space({"type": "nb201", "channels": 0})


# -- NAS-Bench-201 specifics -------------------------------------------------------------------

def test_nb201_shape_of_the_space() -> None:
    space = NB201Space(NB201Config())
    arch = ["nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3",
            "skip_connect"]
    assert space.size() == len(OPS) ** len(EDGES) == 15625
    assert space.key(arch) == (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
        "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    )
    assert space.from_key(space.key(arch)) == arch
    assert space.encode(arch).shape == (30,) and space.encode(arch).dtype == np.float32
    assert space.encode(arch).sum() == 6
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 24
    assert all(sum(a != b for a, b in zip(n, arch)) == 1 for n in neighbours)
    rng = np.random.default_rng(0)
    assert all(sum(a != b for a, b in zip(space.mutate(arch, rng), arch)) == 1 for _ in range(50))


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        (["none"] * 3 + ["conv"] + ["none"] * 2, ["edge 3 (3<-0)", "'conv'", "allowed", "none",
                                                  "avg_pool_3x3"]),
        (["none"] * 5, ["6"]),
        (["none"] * 5 + [7], ["edge 5", "7"]),
        ("|none~0|+|none~0|none~1|", ["3", "nodes"]),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|", ["'conv'", "allowed"]),
        ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", ["node 2"]),
        ({"ops": []}, ["dict"]),
    ],
)
def test_nb201_messages_name_the_problem(value: Any, fragments: list[str]) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        NB201Space().validate(value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_nb201_benchmark_keys_round_trip() -> None:
    if not NB201_CSV.exists():
        pytest.skip(f"{NB201_CSV} is absent")
    space = NB201Space()
    with NB201_CSV.open(newline="") as f:
        keys = [row["arch"] for row in islice(csv.DictReader(f), 200)]
    assert len(keys) == 200
    for key in keys:
        assert space.key(space.from_key(key)) == key
        assert space.key(space.validate(key)) == key


def test_nb201_network_matches_the_benchmark() -> None:
    torch = pytest.importorskip("torch")
    space = NB201Space()

    def params(op: str) -> int:
        return sum(p.numel() for p in space.build([op] * 6, (3, 32, 32), 10).parameters())

    # Parameter counts NATS-Bench publishes for CIFAR-10 (C=16, N=5).
    assert params("nor_conv_3x3") == 1_531_546
    assert params("none") == params("skip_connect") == 73_306
    model = space.build(["nor_conv_1x1"] * 6, (3, 32, 32), 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nb201_all_none_cell_still_runs() -> None:
    torch = pytest.importorskip("torch")
    space = NB201Space(NB201Config(channels=4, cells_per_stage=2))
    for shape in [(1, 8, 8), (1, 40), (3, 7, 5)]:
        model = space.build(["none"] * 6, shape, 3)
        out = model(torch.randn(2, *shape))
        assert out.shape == (2, 3) and torch.isfinite(out).all()
        out.sum().backward()
