"""The DARTS cell space: genotypes as DARTS writes them, canonical keys, the exact size, clear
messages, and networks that build, trace and train on images and sequences (CPU, seconds)."""
from __future__ import annotations

import itertools
import json
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from spaces import SPACES, InvalidArchitecture
from spaces.darts import OPS, DARTSConfig, DARTSSpace, _canonical_node, inputs_of
from worker.training.datasets import load_dataset
from worker.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# DARTS (second order), as published in the DARTS code's genotypes.py.
DARTS_V2 = {
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
}
TINY = DARTSSpace(DARTSConfig(channels=4, layers=3, stem_multiplier=1))


def all_ops(op: str) -> dict[str, Any]:
    cell = [[op, e % 2] for e in range(8)]
    return {"normal": cell, "reduce": [list(p) for p in cell]}


def test_registered_with_a_schema_and_an_example() -> None:
    entry = SPACES["darts"]
    assert entry.config().type == "darts"
    assert "layers" in entry.config.model_json_schema()["properties"]
    space = entry.factory(entry.config())
    example = space.sample(np.random.default_rng(0))
    assert json.loads(json.dumps(example)) == space.validate(example)


def test_published_genotype_is_accepted_and_builds_the_published_network() -> None:
    space = DARTSSpace(DARTSConfig(channels=36, layers=20))
    assert space.key(DARTS_V2) == (
        "normal:sep_conv_3x3~0+sep_conv_3x3~1|sep_conv_3x3~0+sep_conv_3x3~1|"
        "skip_connect~0+sep_conv_3x3~1|skip_connect~0+dil_conv_3x3~2;"
        "reduce:max_pool_3x3~0+max_pool_3x3~1|max_pool_3x3~1+skip_connect~2|"
        "max_pool_3x3~0+skip_connect~2|max_pool_3x3~1+skip_connect~2"
    )
    # DARTS' own log for this network on CIFAR-10 (C=36, 20 cells, no auxiliary head):
    # "param size = 3.349342MB".
    model = space.build(DARTS_V2, (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 3_349_342


def test_key_treats_the_two_inputs_of_a_node_as_unordered() -> None:
    swapped = json.loads(json.dumps(DARTS_V2))
    for cell in ("normal", "reduce"):
        pairs = swapped[cell]
        for node in range(4):
            pairs[2 * node], pairs[2 * node + 1] = pairs[2 * node + 1], pairs[2 * node]
    assert swapped != DARTS_V2
    assert TINY.key(swapped) == TINY.key(DARTS_V2)
    assert TINY.validate(swapped) == TINY.validate(DARTS_V2)
    np.testing.assert_array_equal(TINY.encode(swapped), TINY.encode(DARTS_V2))
    # Moving an edge to another input, or between nodes, is a different network.
    moved = json.loads(json.dumps(DARTS_V2))
    moved["normal"][7] = ["dil_conv_3x3", 3]
    assert TINY.key(moved) != TINY.key(DARTS_V2)
    between = json.loads(json.dumps(DARTS_V2))
    between["normal"][0], between["normal"][2] = between["normal"][2], between["normal"][0]
    assert TINY.key(between) == TINY.key(DARTS_V2)  # both are sep_conv_3x3~0: same network
    between["normal"][1], between["normal"][7] = ["dil_conv_3x3", 1], ["sep_conv_3x3", 1]
    assert TINY.key(between) != TINY.key(DARTS_V2)


def test_a_none_edge_reads_nothing_so_its_input_does_not_change_the_key() -> None:
    a = all_ops("sep_conv_5x5")
    b = json.loads(json.dumps(a))
    a["reduce"][5] = ["none", 0]
    b["reduce"][5] = ["none", 2]
    assert TINY.key(a) == TINY.key(b)
    assert TINY.validate(b)["reduce"][4:6] == [["none", 0], ["sep_conv_5x5", 0]]
    # ...and no neighbour is a none edge moved to another input.
    keys = [TINY.key(n) for n in TINY.neighbours(a)]
    assert TINY.key(a) not in keys and len(keys) == len(set(keys))


def test_size_counts_distinct_networks_exactly() -> None:
    # Per node: every (op, input) x (op, input) assignment, canonicalised, counted.
    per_cell = 1
    for node in range(4):
        items = [(op, src) for op in OPS for src in range(inputs_of(node))]
        distinct = {_canonical_node(a, b) for a, b in itertools.product(items, repeat=2)}
        n = inputs_of(node)
        assert len(distinct) == (7 * n + 1) * (7 * n + 2) // 2
        per_cell *= len(distinct)
    assert TINY.size() == per_cell**2 == 77_362_501_958_739_360_000


def test_decisions_cover_every_edge_and_any_choice_vector_is_an_architecture() -> None:
    decisions = TINY.decisions()
    assert len(decisions) == 32
    assert [len(o) for _, o in decisions[:16]] == [8, 2, 8, 2, 8, 3, 8, 3, 8, 4, 8, 4, 8, 5, 8, 5]
    assert decisions[1] == ("normal node 2 input 1 from", ("c_{k-2}", "c_{k-1}"))
    assert TINY.encode(DARTS_V2).shape == (sum(len(o) for _, o in decisions),) == (184,)
    rng = np.random.default_rng(0)
    for _ in range(50):
        choices = [int(rng.integers(len(o))) for _, o in decisions]
        arch = TINY.from_choices(choices)
        assert TINY.from_choices(TINY.to_choices(arch)) == arch
        assert TINY.encode(arch).sum() == 32
    with pytest.raises(InvalidArchitecture, match=r"normal node 2 input 1 from: choice 2 is out of range 0\.\.1"):
        TINY.from_choices([0, 2] + [0] * 30)


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda a: a["normal"].__setitem__(3, ["conv_3x3", 1]),
         ["normal edge 3 (node 3, second input)", "'conv_3x3'", "allowed:", "sep_conv_5x5", "none"]),
        (lambda a: a["reduce"].__setitem__(4, ["max_pool_3x3", 4]),
         ["reduce edge 4 (node 4, first input)", "input 4 is out of range", "inputs 0..3",
          "0 = c_{k-2}", "3 = node 3"]),
        (lambda a: a["normal"].__setitem__(0, ["skip_connect", True]),
         ["normal edge 0", "input must be an integer", "True"]),
        (lambda a: a["normal"].__setitem__(0, "skip_connect"), ["normal edge 0", "[operation, input] pair"]),
        (lambda a: a.pop("reduce"), ["'normal' and 'reduce'", "missing 'reduce'"]),
        (lambda a: a.__setitem__("normal_concat", [2, 3, 4, 5]), ["unexpected 'normal_concat'"]),
        (lambda a: a["normal"].pop(), ["normal", "8 [operation, input] pairs", "got 7"]),
    ],
)
def test_validate_names_the_bad_field_and_the_allowed_values(edit: Any, fragments: list[str]) -> None:
    arch = json.loads(json.dumps(DARTS_V2))
    edit(arch)
    with pytest.raises(InvalidArchitecture) as info:
        TINY.validate(arch)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("normal:none~0+none~1", "2 ';'-separated cells"),
        ("reduce:x;normal:y", "expected 'normal:'"),
        ("normal:none~0+none~1|none~0+none~1;reduce:none~0+none~1", "4 '|'-separated nodes"),
        ("normal:none~0|a|b|c;reduce:a|b|c|d", "node 2: expected 'op~input+op~input'"),
    ],
)
def test_malformed_keys_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture, match=None) as info:
        TINY.validate(text)
    assert fragment in str(info.value)


def test_config_needs_both_kinds_of_cell() -> None:
    with pytest.raises(ValidationError, match="layers"):
        DARTSConfig(layers=2)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)], ids=["digits", "mnist1d"])
def test_builds_on_images_and_sequences(shape: tuple[int, ...]) -> None:
    model = TINY.build(DARTS_V2, shape, 10)
    heights: list[int] = []

    def record(_module: Any, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            heights.append(output.shape[2])

    leaves = [m for m in model.modules() if not list(m.children()) and m is not model.pool]
    hooks = [m.register_forward_hook(record) for m in leaves]
    out = model(torch.randn(4, *shape))
    for hook in hooks:
        hook.remove()
    assert out.shape == (4, 10)
    if len(shape) == 2:
        assert set(heights) == {1}  # a sequence stays a sequence: no padding rows
    else:
        assert set(heights) == {8, 4, 2}  # two reductions, at cells 1 and 2 of 3


def test_sequence_network_uses_1d_kernels() -> None:
    image = TINY.build(all_ops("sep_conv_5x5"), (1, 8, 8), 10)
    sequence = TINY.build(all_ops("sep_conv_5x5"), (1, 40), 10)
    kernels = {m.kernel_size for m in sequence.modules() if isinstance(m, torch.nn.Conv2d)}
    assert kernels == {(1, 1), (1, 3), (1, 5)}
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(sequence) < count(image)


@pytest.mark.parametrize("op", ["none", "skip_connect", "max_pool_3x3", "dil_conv_5x5"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40), (2, 7, 5), (1, 1)])
def test_every_operation_keeps_shapes_on_odd_and_tiny_inputs(op: str, shape: tuple[int, ...]) -> None:
    model = TINY.build(all_ops(op), shape, 3)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.sum().backward()


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)], ids=["digits", "mnist1d"])
def test_traced_module_matches_eager(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = TINY.build(TINY.sample(np.random.default_rng(5)), shape, 10).eval()
    x = torch.randn(6, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x)
    other = torch.randn(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
        torch.testing.assert_close(traced(other), model(other))


def test_one_epoch_on_digits_beats_chance() -> None:
    data = load_dataset("digits")
    torch.manual_seed(0)
    space = DARTSSpace(DARTSConfig(channels=8, layers=3, stem_multiplier=2))
    model = space.build(DARTS_V2, data.input_shape, data.num_classes)
    result = train(model, data, epochs=1, batch_size=32, lr=0.05)
    assert result["val_acc"] > 30  # chance is 10%
