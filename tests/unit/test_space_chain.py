"""The chain (MnasNet-style) space: per-stage settings, keys, the exact size, clear messages, and
inverted-residual networks that build, trace and train on images and sequences (CPU, seconds)."""
from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from spaces import SPACES, InvalidArchitecture
from spaces.chain import ChainConfig, ChainSpace
from spaces.chain_net import InvertedResidual, SqueezeExcite
from worker.training.datasets import load_dataset
from worker.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ChainConfig(channels=[4, 8, 8], strides=[1, 2, 2], stem_channels=4)
TINY = ChainSpace(SMALL)
ARCH = [
    {"depth": 2, "kernel": 3, "expand": 3, "width": 1.0, "se": False},
    {"depth": 1, "kernel": 5, "expand": 6, "width": 1.25, "se": True},
    {"depth": 3, "kernel": 7, "expand": 3, "width": 0.75, "se": False},
]


def copy(arch: Any) -> Any:
    return json.loads(json.dumps(arch))


def test_registered_with_mnasnet_defaults() -> None:
    entry = SPACES["chain"]
    space = entry.factory(entry.config())
    example = space.sample(np.random.default_rng(0))
    assert len(example) == 5 and set(example[0]) == {"depth", "kernel", "expand", "width", "se"}
    assert [name for name, _ in space.decisions()[:5]] == [
        "stage 0 depth", "stage 0 kernel", "stage 0 expand", "stage 0 width", "stage 0 se"
    ]
    assert space.decisions()[:5] == [
        ("stage 0 depth", ("1", "2", "3", "4")),
        ("stage 0 kernel", ("3", "5", "7")),
        ("stage 0 expand", ("3", "6")),
        ("stage 0 width", ("0.75", "1.0", "1.25")),
        ("stage 0 se", ("off", "on")),
    ]
    assert space.size() == (4 * 3 * 2 * 3 * 2) ** 5 == 61_917_364_224


def test_size_follows_the_configured_options() -> None:
    space = ChainSpace(ChainConfig(channels=[8, 16], strides=[1, 2], depths=[1, 2], kernels=[3],
                                   expansions=[6], widths=[1.0], se=[False, True]))
    assert space.size() == (2 * 2) ** 2 == 16
    every = {space.key(space.from_choices([a, 0, 0, 0, b, c, 0, 0, 0, d]))
             for a in range(2) for b in range(2) for c in range(2) for d in range(2)}
    assert len(every) == 16


def test_key_is_readable_and_round_trips() -> None:
    assert TINY.key(ARCH) == "d2-k3-e3-w1.0-se0|d1-k5-e6-w1.25-se1|d3-k7-e3-w0.75-se0"
    assert TINY.validate(TINY.key(ARCH)) == ARCH
    # An integer width is the same option as its float, and writes the same key.
    same = copy(ARCH)
    same[0]["width"] = 1
    assert TINY.validate(same)[0]["width"] == 1.0 and TINY.key(same) == TINY.key(ARCH)
    # Field order in the JSON object does not matter.
    reordered = [dict(reversed(list(stage.items()))) for stage in ARCH]
    assert TINY.key(reordered) == TINY.key(ARCH)


def test_neighbours_change_exactly_one_setting() -> None:
    neighbours = TINY.neighbours(ARCH)
    assert len(neighbours) == 3 * (3 + 2 + 1 + 2 + 1)
    for n in neighbours:
        changed = [(s, f) for s in range(3) for f in ARCH[s] if n[s][f] != ARCH[s][f]]
        assert len(changed) == 1


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda a: a[1].__setitem__("kernel", 4), ["stage 1 kernel", "4 is not an option", "allowed: 3, 5, 7"]),
        (lambda a: a[0].__setitem__("width", 2.0), ["stage 0 width", "allowed: 0.75, 1.0, 1.25"]),
        (lambda a: a[2].__setitem__("depth", True), ["stage 2 depth", "expected a number", "allowed: 1, 2, 3, 4"]),
        (lambda a: a[2].__setitem__("se", 1), ["stage 2 se", "true or false"]),
        (lambda a: a[0].__setitem__("expand", "6"), ["stage 0 expand", "'6'", "allowed: 3, 6"]),
        (lambda a: a[1].pop("se"), ["stage 1", "missing se"]),
        (lambda a: a[1].__setitem__("stride", 2), ["stage 1", "unexpected stride"]),
        (lambda a: a.pop(), ["one object per stage", "expected 3, got 2"]),
    ],
)
def test_validate_names_the_bad_field_and_the_allowed_values(edit: Any, fragments: list[str]) -> None:
    arch = copy(ARCH)
    edit(arch)
    with pytest.raises(InvalidArchitecture) as info:
        TINY.validate(arch)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("d2-k3-e3-w1.0-se0", "3 '|'-separated stages"),
        ("d2-k3-e3-w1.0|d1-k5-e6-w1.25-se1|d3-k7-e3-w0.75-se0", "stage 0: expected 'd<depth>"),
        ("d2-k3-e3-wide-se0|d1-k5-e6-w1.25-se1|d3-k7-e3-w0.75-se0", "stage 0 width: cannot read 'ide'"),
        ("d2-k3-e3-w1.0-se2|d1-k5-e6-w1.25-se1|d3-k7-e3-w0.75-se0", "stage 0 se: cannot read '2'"),
    ],
)
def test_malformed_keys_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        TINY.validate(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"strides": [1, 2]}, "strides has 2 entries but channels has 5"),
        ({"strides": [1, 3, 2, 2, 1]}, "1 or 2"),
        ({"kernels": [3, 4]}, "kernels must be odd"),
        ({"channels": [2, 24, 40, 80, 160]}, "stage 0: width multipliers"),
        ({"depths": [1, 1]}, "repeated"),
    ],
)
def test_config_mistakes_are_explained(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChainConfig(**overrides)
    assert fragment in str(info.value)


def test_network_follows_the_stage_settings() -> None:
    model = TINY.build(ARCH, (1, 8, 8), 10)
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 2 + 1 + 3
    # Widths: base [4, 8, 8] times [1.0, 1.25, 0.75] -> 4, 10, 6 channels.
    assert [b.body[-2].out_channels for b in blocks] == [4, 4, 10, 6, 6, 6]
    # A residual connection exactly where the shapes match (stride 1, same width).
    assert [b.residual for b in blocks] == [True, True, False, False, True, True]
    depthwise = [m for b in blocks for m in b.body if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert [d.kernel_size for d in depthwise] == [(3, 3)] * 2 + [(5, 5)] + [(7, 7)] * 3
    assert [d.in_channels for d in depthwise] == [12, 12, 24, 30, 18, 18]  # expansion 3, 6, 3
    assert [isinstance(m, SqueezeExcite) for b in blocks for m in b.body].count(True) == 1
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)], ids=["digits", "mnist1d"])
def test_builds_on_images_and_sequences(shape: tuple[int, ...]) -> None:
    model = TINY.build(ARCH, shape, 10)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10)
    out.sum().backward()
    if len(shape) == 2:
        kernels = {m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d)}
        assert all(k[0] == 1 for k in kernels)  # a true 1-D network: no padding rows
        feature = model.features(torch.randn(2, 1, 1, 40))
        assert feature.shape[2:] == (1, 10)  # strides 1, 2, 2 along the sequence only


def test_head_channels_add_a_final_convolution() -> None:
    space = ChainSpace(SMALL.model_copy(update={"head_channels": 32}))
    model = space.build(ARCH, (1, 8, 8), 10)
    assert model.classifier.in_features == 32
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)], ids=["digits", "mnist1d"])
def test_traced_module_matches_eager(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = TINY.build(ARCH, shape, 10).eval()
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
    arch = [{"depth": 1, "kernel": 3, "expand": 3, "width": 1.0, "se": True}] * 3
    space = ChainSpace(ChainConfig(channels=[8, 16, 24], strides=[1, 2, 2], stem_channels=8))
    model = space.build(arch, data.input_shape, data.num_classes)
    result = train(model, data, epochs=1, batch_size=32, lr=0.05)
    assert result["val_acc"] > 30  # chance is 10%
