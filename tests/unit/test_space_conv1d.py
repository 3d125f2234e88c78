"""The 1-D convolutional space: variable depth with canonical unused layers, the exact size, clear
messages, and networks that build, trace and train on sequences and flattened images (CPU,
seconds)."""
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
from spaces.conv1d import Conv1DConfig, Conv1DSpace
from spaces.conv1d_net import ConvLayer
from worker.training.datasets import load_dataset
from worker.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = Conv1DSpace(Conv1DConfig(max_layers=3, channels=[4, 8]))
ARCH = [
    {"kernel": 5, "channels": 8, "dilation": 2, "pool": "max", "skip": True},
    {"kernel": 3, "channels": 8, "dilation": 1, "pool": "none", "skip": True},
    {"kernel": 9, "channels": 4, "dilation": 4, "pool": "avg", "skip": False},
]


def test_registered_with_the_documented_defaults() -> None:
    entry = SPACES["conv1d"]
    space = entry.factory(entry.config())
    decisions = space.decisions()
    assert decisions[0] == ("depth", ("2", "3", "4", "5", "6"))
    assert decisions[1:6] == [
        ("layer 0 kernel", ("3", "5", "7", "9")),
        ("layer 0 channels", ("16", "32", "64")),
        ("layer 0 dilation", ("1", "2", "4")),
        ("layer 0 pool", ("none", "max", "avg")),
        ("layer 0 skip", ("off", "on")),
    ]
    assert len(decisions) == 1 + 6 * 5
    assert space.size() == sum(216**d for d in range(2, 7)) == 102_032_328_559_680
    depths = {len(space.sample(np.random.default_rng(s))) for s in range(60)}
    assert depths == {2, 3, 4, 5, 6}


def test_unused_layers_do_not_change_the_architecture() -> None:
    decisions = TINY.decisions()
    rng = np.random.default_rng(0)
    base = [int(rng.integers(len(o))) for _, o in decisions]
    base[0] = 0  # depth 2: the third layer's five decisions are ignored
    keys = set()
    for tail in itertools.product(range(4), range(2), range(3)):
        choices = list(base)
        choices[11], choices[12], choices[13] = tail
        keys.add(TINY.key(TINY.from_choices(choices)))
    assert len(keys) == 1
    arch = TINY.from_choices(base)
    assert len(arch) == 2
    assert TINY.to_choices(arch)[11:] == [0] * 5  # written canonically
    per_layer = 4 + 2 + 3 + 3 + 2
    assert TINY.encode(arch).shape == (2 + 3 * per_layer,)
    assert TINY.encode(arch)[-per_layer:].sum() == 0  # no third layer
    assert TINY.encode(arch).sum() == 1 + 2 * 5


def test_size_is_the_number_of_distinct_networks() -> None:
    space = Conv1DSpace(Conv1DConfig(min_layers=1, max_layers=3, kernels=[3, 5], channels=[4],
                                     dilations=[1], pools=["none", "max"], skips=[False]))
    radices = [len(o) for _, o in space.decisions()]
    keys = {space.key(space.from_choices(list(c))) for c in itertools.product(*map(range, radices))}
    assert space.size() == len(keys) == 4 + 4**2 + 4**3


def test_key_is_readable_and_round_trips() -> None:
    assert TINY.key(ARCH) == "k5-c8-d2-pmax-s1|k3-c8-d1-pnone-s1|k9-c4-d4-pavg-s0"
    assert TINY.validate(TINY.key(ARCH)) == ARCH


def test_neighbours_change_one_setting_or_the_depth() -> None:
    two = ARCH[:2]
    neighbours = TINY.neighbours(two)
    per_layer = 3 + 1 + 2 + 2 + 1
    assert len(neighbours) == 2 * per_layer + 1
    deeper = [n for n in neighbours if len(n) == 3]
    assert deeper == [two + [{"kernel": 3, "channels": 4, "dilation": 1, "pool": "none", "skip": False}]]
    assert any(len(n) == 2 for n in TINY.neighbours(ARCH))  # the last layer can be dropped


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda a: a[1].__setitem__("pool", "sum"),
         ["layer 1 pool", "'sum' is not an option", "allowed: none, max, avg"]),
        (lambda a: a[0].__setitem__("channels", 16), ["layer 0 channels", "16", "allowed: 4, 8"]),
        (lambda a: a[2].__setitem__("kernel", 4.0), ["layer 2 kernel", "expected an integer", "allowed: 3, 5, 7, 9"]),
        (lambda a: a[2].__setitem__("skip", "yes"), ["layer 2 skip", "true or false"]),
        (lambda a: a[0].pop("dilation"), ["layer 0", "missing dilation"]),
        (lambda a: a.append(dict(a[0])), ["2 to 3 layers", "got 4"]),
        (lambda a: a.__delitem__(slice(1, None)), ["2 to 3 layers", "got 1"]),
    ],
)
def test_validate_names_the_bad_field_and_the_allowed_values(edit: Any, fragments: list[str]) -> None:
    arch = json.loads(json.dumps(ARCH))
    edit(arch)
    with pytest.raises(InvalidArchitecture) as info:
        TINY.validate(arch)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_malformed_keys_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidArchitecture, match="layer 1: a conv1d key lists layers like"):
        TINY.validate("k5-c8-d2-pmax-s1|k3-c8")
    with pytest.raises(InvalidArchitecture, match="layer 0 skip: expected s0 or s1"):
        TINY.validate("k5-c8-d2-pmax-s2|k3-c8-d1-pnone-s1")
    with pytest.raises(InvalidArchitecture, match="layer 1 pool: 'sum' is not an option"):
        TINY.validate("k5-c8-d2-pmax-s1|k3-c8-d1-psum-s1")


def test_config_mistakes_are_explained() -> None:
    with pytest.raises(ValidationError, match="min_layers"):
        Conv1DConfig(min_layers=4, max_layers=3)
    with pytest.raises(ValidationError, match="kernels must be odd"):
        Conv1DConfig(kernels=[2, 3])
    with pytest.raises(ValidationError, match="pools"):
        Conv1DConfig(pools=["none", "mean"])


def test_network_follows_the_layer_settings() -> None:
    model = TINY.build(ARCH, (1, 40), 10)
    layers = [m for m in model.modules() if isinstance(m, ConvLayer)]
    assert [(m.conv.kernel_size, m.conv.dilation, m.conv.padding) for m in layers] == [
        ((5,), (2,), (4,)), ((3,), (1,), (1,)), ((9,), (4,), (16,))
    ]
    assert [type(m.pool).__name__ for m in layers] == ["MaxPool1d", "Identity", "AvgPool1d"]
    # Shortcuts: a 1x1 projection when the width changes (1 -> 8), identity when it does not.
    assert isinstance(layers[0].shortcut, torch.nn.Sequential)
    assert isinstance(layers[1].shortcut, torch.nn.Identity)
    assert layers[2].shortcut is None
    assert model.features(torch.randn(2, 1, 40)).shape == (2, 4, 10)  # two poolings: 40 -> 10


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40), (3, 1)], ids=["digits", "mnist1d", "length1"])
def test_builds_on_sequences_and_flattened_images(shape: tuple[int, ...]) -> None:
    deep = Conv1DSpace(Conv1DConfig(channels=[4]))
    arch = [{"kernel": 9, "channels": 4, "dilation": 4, "pool": "max", "skip": True}] * 6
    for space, a in ((TINY, ARCH), (deep, arch)):
        model = space.build(a, shape, 10)
        out = model(torch.randn(4, *shape))
        assert out.shape == (4, 10) and torch.isfinite(out).all()
        out.sum().backward()


def test_images_are_read_row_by_row() -> None:
    model = TINY.build(ARCH, (1, 8, 8), 10).eval()
    image = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model.classifier(
            model.pool(model.features(image.reshape(2, 1, 64))).flatten(1)
        ))


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
    space = Conv1DSpace(Conv1DConfig(max_layers=3, channels=[16, 32]))
    arch = [{"kernel": 5, "channels": 16, "dilation": 1, "pool": "max", "skip": False},
            {"kernel": 3, "channels": 32, "dilation": 2, "pool": "none", "skip": True},
            {"kernel": 3, "channels": 32, "dilation": 4, "pool": "max", "skip": True}]
    model = space.build(arch, data.input_shape, data.num_classes)
    result = train(model, data, epochs=1, batch_size=32, lr=0.05)
    assert result["val_acc"] > 30  # chance is 10%
