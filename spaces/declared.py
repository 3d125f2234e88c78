"""A space the user declares in the job spec: an ordered list of layer choices, each a set of
operations from the vocabulary in ``scion.configs.declared_ops``, optional conditions, and training
hyperparameters searched jointly with the network.

::

    layers:
      - {name: conv, ops: [{op: conv2d, channels: [8, 16], kernel: [3, 5]}, identity]}
      - {name: act, ops: [relu, gelu], when: {conv: [conv2d]}}   # only when conv is a conv2d
      - {name: head, ops: [flatten, global_avg_pool]}
    hyperparameters: {lr: [0.02, 0.05], batch_size: [32, 64]}

A list-valued parameter expands into one option per value (every combination), so each choice
is one categorical decision over concrete options such as ``conv2d(channels=8,kernel=3,stride=1,
dilation=1)`` (its *label*). A choice with ``when`` exists only while every named earlier choice
took one of the given operations (by name, or by full label). The network is the active choices
in order, then a flatten and a linear classifier. An architecture is::

    {"layers": {"conv": "conv2d(...)", "act": "relu", "head": "flatten"},
     "hyperparameters": {"lr": 0.05, "batch_size": 32}}

with inactive choices left out (``validate`` also takes an operation object such as ``{"op":
"conv2d", "channels": 8}`` for a label); the key is ``conv=conv2d(...)|act=relu|...|lr=0.05``.
``decisions()`` lists every choice and then every hyperparameter; an inactive choice is written
as its first option by ``to_choices`` and ignored by ``from_choices``, as conv1d does with unused
layers. Every network of the space must fit the data: ``check_input`` walks every reachable
input shape, so a space with, say, a conv2d that may follow a flatten is refused at submission.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scion.configs.declared import DeclaredConfig, layer_options, matching
from scion.configs.declared_ops import ACTIVATIONS, Option, Shape, ShapeError, expand, output_shape
from scion.space import COST_NAMES
from spaces.base import (
    Costs,
    InvalidArchitecture,
    InvalidSpace,
    Largest,
    conv_costs,
    layer_costs,
    linear_costs,
)
from spaces.categorical import CategoricalSpace

MAX_STEPS = 100_000  # (state, option) pairs walked in all, which bounds the states too: under a second

Picks = tuple[int | None, ...]  # per choice, the option index (None: inactive)
# Per cost: (the most it reaches, the largest share one choice adds on that way, that choice's index)
Heaviest = tuple[tuple[int, int, int], ...]
NOTHING: Heaviest = ((0, 0, -1),) * len(COST_NAMES)
# (shape, picks) -> (networks, example path, costs)
Walk = dict[tuple[Any, Picks], tuple[int, tuple[str, ...], Heaviest]]


def _representatives(options: int, reads: list[frozenset[int]]) -> list[int | None]:
    """Per option, the first option that every condition in ``reads`` treats alike (None for
    all when no condition reads the choice)."""
    first: dict[tuple[bool, ...], int] = {}
    signatures = [tuple(j in accepted for accepted in reads) for j in range(options)]
    return [first.setdefault(sig, j) if reads else None for j, sig in enumerate(signatures)]


def _add(into: Walk, state: tuple[Any, Picks], count: int, path: tuple[str, ...], heaviest: Heaviest) -> None:
    before = into.get(state)
    if before:
        count, path, heaviest = count + before[0], before[1], tuple(map(max, heaviest, before[2]))
    into[state] = (count, path, heaviest)


def _heavier(heaviest: Heaviest, costs: Costs, i: int) -> Heaviest:
    """``heaviest`` after choice ``i`` added ``costs``."""
    out = []
    for (total, top, at), added in zip(heaviest, (getattr(costs, name) for name in COST_NAMES)):
        out.append((total + added, *((added, i) if added > top else (top, at))))
    return tuple(out)


def option_costs(option: Option, shape: Shape) -> Costs:
    """What ``declared_net.make_module(option, shape)`` costs (an option that fits ``shape``)."""
    op, p = option.op, option.settings()
    channels, positions = shape[0], math.prod(shape[1:])
    if op in ("dropout", *ACTIVATIONS):
        return layer_costs(channels, positions)
    if op == "batchnorm":
        return layer_costs(channels, positions, norm=True)
    if op == "linear":
        return linear_costs(channels, int(p["units"]))
    if op == "global_avg_pool":
        return layer_costs(channels, 1)
    out = output_shape(option, shape)
    if op in ("conv1d", "conv2d"):
        area = int(p["kernel"]) ** (len(shape) - 1)
        return conv_costs(channels, out[0], area, math.prod(out[1:]), bias=True)
    if op in ("max_pool", "avg_pool"):
        return layer_costs(channels, math.prod(out[1:]))
    return Costs()  # identity, flatten: views of their input


def classifier_costs(shape: Shape, num_classes: int) -> Costs:
    return linear_costs(math.prod(shape), num_classes)


class DeclaredSpace(CategoricalSpace):
    """A user-declared space of layer choices and training hyperparameters."""

    def __init__(self, config: DeclaredConfig | None = None) -> None:
        self.config = config if config is not None else DeclaredConfig()
        self.names = [layer.name for layer in self.config.layers]
        self.options = [layer_options(layer, layer.name) for layer in self.config.layers]
        self.index = [{o.label: i for i, o in enumerate(opts)} for opts in self.options]
        self.conditions = [
            [(self.names.index(ref), matching(self.options[self.names.index(ref)], accepted, ref))
             for ref, accepted in (layer.when or {}).items()]
            for layer in self.config.layers
        ]
        self.settings = self.config.hyperparameters.options()
        # What a walk over the choices remembers of choice r (see _carry), and after which choice
        # nothing reads it any more.
        reads = [[acc for conds in self.conditions for ref, acc in conds if ref == r] for r in range(len(self.names))]
        self.kept = [_representatives(len(opts), reads[r]) for r, opts in enumerate(self.options)]
        last = {r: i for i, conds in enumerate(self.conditions) for r, _ in conds}
        self.forget = [[r for r, at in last.items() if at == i] for i in range(len(self.names))]
        self.networks = sum(count for count, _, _ in self._walk(None).values())  # raises if too many to walk

    # -- internal forms ------------------------------------------------------------------------

    def _active(self, i: int, picks: Sequence[int | None]) -> bool:
        """Whether choice ``i`` exists, given (at least) the picks of the choices before it."""
        return all(picks[r] in accepted for r, accepted in self.conditions[i])

    def _settle(self, picks: list[int | None]) -> tuple[int | None, ...]:
        """Picks with conditions applied in order: a choice that lost its condition is dropped, one
        that gained it takes its first option (as ``from_choices`` would)."""
        for i in range(len(picks)):
            if not self._active(i, picks):
                picks[i] = None
            elif picks[i] is None:
                picks[i] = 0
        return tuple(picks)

    def _layer_index(self, i: int, value: Any) -> int:
        name = self.names[i]
        label = value
        if isinstance(value, dict):
            try:
                expanded = expand(value)
            except ValueError as exc:
                raise InvalidArchitecture(f"layers.{name}: {exc}") from None
            label = expanded[0].label if len(expanded) == 1 else value
        if isinstance(label, str) and label in self.index[i]:
            return self.index[i][label]
        allowed = ", ".join(self.index[i])
        raise InvalidArchitecture(f"layers.{name}: {value!r} is not an option; allowed: {allowed}")

    def _setting_index(self, name: str, value: Any) -> int:
        options = self.settings[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in options:
            return options.index(value)
        allowed = ", ".join(json.dumps(v) for v in options)
        raise InvalidArchitecture(f"hyperparameters.{name}: {value!r} is not an option; allowed: {allowed}")

    def _parse(self, arch: Any) -> tuple[Picks, tuple[int, ...]]:
        if isinstance(arch, str):
            arch = self.from_key(arch)
        example = '{"layers": {"<choice>": "<option label>", ...}, "hyperparameters": {"lr": 0.05, ...}}'
        if not isinstance(arch, dict) or not isinstance(arch.get("layers"), dict):
            raise InvalidArchitecture(f"a declared architecture is an object like {example}, got {arch!r}"[:500])
        unexpected = sorted(str(k) for k in arch if k not in ("layers", "hyperparameters"))
        if unexpected:
            raise InvalidArchitecture(f"unexpected field {', '.join(unexpected)}; allowed: layers, hyperparameters")
        layers = arch["layers"]
        unknown = sorted(str(k) for k in layers if k not in self.names)
        if unknown:
            raise InvalidArchitecture(f"layers: unknown choice {', '.join(unknown)}; choices: {', '.join(self.names)}")
        picks: list[int | None] = []
        for i, name in enumerate(self.names):
            value = layers.get(name)
            if not self._active(i, picks):
                if value is not None:
                    raise InvalidArchitecture(f"layers.{name}: exists only when {self._condition(i)}; leave it out")
                picks.append(None)
            elif value is None:
                raise InvalidArchitecture(f"layers.{name}: missing; allowed: {', '.join(self.index[i])}")
            else:
                picks.append(self._layer_index(i, value))
        given = arch.get("hyperparameters", {})
        if not isinstance(given, dict):
            raise InvalidArchitecture(f"hyperparameters: expected an object like {{'lr': 0.05}}, got {given!r}")
        extra = sorted(str(k) for k in given if k not in self.settings)
        missing = [k for k in self.settings if k not in given]
        if extra or missing:
            raise InvalidArchitecture(f"hyperparameters: the searched ones are {', '.join(self.settings) or 'none'}"
                                      f" (missing: {', '.join(missing) or '-'}; unexpected: {', '.join(extra) or '-'})")
        return tuple(picks), tuple(self._setting_index(k, given[k]) for k in self.settings)

    def _condition(self, i: int) -> str:
        return " and ".join(
            f"{self.names[r]} is {' or '.join(sorted({self.options[r][j].op for j in accepted}))}"
            for r, accepted in self.conditions[i]
        )

    def _to_json(self, picks: Picks, settings: tuple[int, ...]) -> dict[str, Any]:
        return {
            "layers": {name: self.options[i][p].label for i, (name, p) in enumerate(zip(self.names, picks))
                       if p is not None},
            "hyperparameters": {name: self.settings[name][s] for name, s in zip(self.settings, settings)},
        }

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Every active choice and every hyperparameter uniform, in declared order."""
        picks: list[int | None] = []
        for i, options in enumerate(self.options):
            picks.append(int(rng.integers(len(options))) if self._active(i, picks) else None)
        settings = tuple(int(rng.integers(len(v))) for v in self.settings.values())
        return self._to_json(tuple(picks), settings)

    # -- categorical decisions -----------------------------------------------------------------

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        layers = [(name, tuple(self.index[i])) for i, name in enumerate(self.names)]
        return layers + [(name, tuple(json.dumps(v) for v in values)) for name, values in self.settings.items()]

    def _choices_of(self, arch: Any) -> list[int | None]:
        """Every layer choice (an inactive one does not apply), then every hyperparameter."""
        picks, settings = self._parse(arch)
        return [*picks, *settings]

    def _arch_of(self, choices: list[int]) -> dict[str, Any]:
        """Conditions settled in order: a choice that lost its condition is dropped, one that
        gained it keeps the option given."""
        n = len(self.names)
        picks: list[int | None] = list(choices[:n])
        return self._to_json(self._settle(picks), tuple(choices[n:]))

    # -- canonical forms -----------------------------------------------------------------------

    def key(self, arch: Any) -> str:
        canonical = self.validate(arch)
        return "|".join([*(f"{name}={label}" for name, label in canonical["layers"].items()),
                         *(f"{name}={json.dumps(v)}" for name, v in canonical["hyperparameters"].items())])

    def from_key(self, text: str) -> dict[str, Any]:
        layers: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for part in text.strip().split("|"):
            name, sep, value = part.partition("=")
            if not sep:
                raise InvalidArchitecture(f"a declared key lists 'choice=option' items separated by '|', like "
                                          f"'{self.names[0]}={next(iter(self.index[0]))}|...', got {part!r}"[:500])
            if name in self.settings:
                try:
                    settings[name] = json.loads(value)
                except ValueError:
                    raise InvalidArchitecture(f"hyperparameters.{name}: cannot read {value!r} as a number") from None
            else:
                layers[name] = value
        return {"layers": layers, "hyperparameters": settings}

    def validate(self, arch: Any) -> dict[str, Any]:
        return self._to_json(*self._parse(arch))

    def size(self) -> int:
        return self.networks * math.prod(len(v) for v in self.settings.values())

    # -- training settings and data shape ------------------------------------------------------

    def searched_settings(self) -> dict[str, tuple[Any, ...]]:
        return dict(self.settings)

    def training_settings(self, arch: Any) -> dict[str, Any]:
        return self.validate(arch)["hyperparameters"]

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        """Raise InvalidSpace unless every network of the space takes inputs of ``input_shape``."""
        self._walk(tuple(input_shape))

    def costs(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Costs:
        """What ``build(arch, ...)`` costs, counted layer by layer as ``declared_net`` builds it."""
        picks, _ = self._parse(arch)
        shape, total = tuple(input_shape), Costs()
        for i, p in enumerate(picks):
            if p is not None:
                total += option_costs(self.options[i][p], shape)
                shape = self._shape(i, self.options[i][p], shape, ())
        return total + classifier_costs(shape, num_classes)

    def largest_costs(self, input_shape: tuple[int, ...], num_classes: int) -> Largest:
        """Each cost's most over the networks, from the same walk as ``check_input`` (so exact), with
        the choice that adds the most of it on that network's way, to shrink."""
        most: Heaviest = NOTHING
        for (shape, _), (_, _, heaviest) in self._walk(tuple(input_shape)).items():
            most = tuple(map(max, most, _heavier(heaviest, classifier_costs(shape, num_classes), len(self.names))))
        shrink = {}
        for name, (_, _, at) in zip(COST_NAMES, most):
            if at == len(self.names):
                shrink[name] = ("layers", "the classifier after the last choice takes too many inputs; pool or "
                                          "stride more before it, or end with global_avg_pool")
            else:
                shrink[name] = (f"layers[{at}]", f"lower the units or channels of choice {self.names[at]!r}, or "
                                                 "pool or stride more before it")
        return Largest(Costs(*(total for total, _, _ in most)), shrink)

    def _walk(self, shape: Shape | None) -> Walk:
        """Every reachable (shape after the last choice, picks that conditions read), with how many
        networks reach it, one example of the shape-changing choices on the way and, with a shape,
        the most each cost reaches there (``Heaviest``). Without a shape it only counts; with one, an
        option that cannot take an input it may meet raises InvalidSpace naming the choice."""
        blank: Picks = (None,) * len(self.names)
        states: Walk = {(shape, blank): (1, (), NOTHING)}
        steps = 0
        for i, options in enumerate(self.options):
            steps += len(states) * len(options)
            if steps > MAX_STEPS:
                raise InvalidSpace(f"layers[{i}] {self.names[i]!r}: over {MAX_STEPS:,} combinations of shapes and "
                                   "conditions to check; offer fewer options per choice or fewer conditions")
            reached: Walk = {}
            for (now, picks), (count, path, heaviest) in states.items():
                if not self._active(i, picks):
                    _add(reached, (now, self._carry(i, picks, None)), count, path, heaviest)
                    continue
                for j, option in enumerate(options):
                    out = None if now is None else self._shape(i, option, now, path)
                    step = (f"{self.names[i]}={option.label}",) if out != now else ()
                    after = heaviest if now is None else _heavier(heaviest, option_costs(option, now), i)
                    _add(reached, (out, self._carry(i, picks, j)), count, path + step, after)
            states = reached
        return states

    def _carry(self, i: int, picks: Picks, j: int | None) -> Picks:
        """The picks a walk keeps once choice ``i`` took option ``j`` (None: inactive): only what
        later conditions read, as the first option they cannot tell from ``j``."""
        out = list(picks)
        out[i] = None if j is None else self.kept[i][j]
        for r in self.forget[i]:
            out[r] = None
        return tuple(out)

    def _shape(self, i: int, option: Option, shape: Shape, path: tuple[str, ...]) -> Shape:
        try:
            return output_shape(option, shape)
        except ShapeError as exc:
            after = f" (e.g. after {', '.join(path[-3:])})" if path else ""
            raise InvalidSpace(f"layers[{i}] {self.names[i]!r}: option {exc}{after}") from None

    # -- networks ------------------------------------------------------------------------------

    def build(self, arch: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
        picks, _ = self._parse(arch)
        from spaces.declared_net import DeclaredNetwork  # torch stays out of the API's import path

        chosen = [(self.names[i], self.options[i][p]) for i, p in enumerate(picks) if p is not None]
        return DeclaredNetwork(chosen, input_shape=tuple(input_shape), num_classes=num_classes)


__all__ = ["DeclaredConfig", "DeclaredSpace"]
