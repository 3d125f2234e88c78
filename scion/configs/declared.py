"""The job-spec side of a declared space (``spaces.declared``): its layer choices, conditions
and hyperparameters, checked as written, before any input shape is known: operations and
parameters from the vocabulary (``scion.configs.declared_ops``), distinct names, conditions that name an
earlier choice and one of its operations. Every message says which choice is wrong and what is
allowed.
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from scion.configs.declared_ops import ALIASES, MAX_OPTIONS, Option, expand, vocabulary

HYPERPARAMETERS = ("lr", "batch_size", "weight_decay", "epochs")
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,39}$"


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False)]
Count = Annotated[int, BeforeValidator(_not_bool)]


class Hyperparameters(BaseModel):
    """Options for train-evaluator settings, searched with the network; one left out keeps the
    evaluator's value. The evaluator's own bounds apply (checked when the job is submitted)."""

    model_config = ConfigDict(extra="forbid")
    lr: list[Number] | None = Field(
        None, min_length=1, max_length=32, description="Options for the peak learning rate."
    )
    batch_size: list[Count] | None = Field(
        None, min_length=1, max_length=32, description="Options for the batch size."
    )
    weight_decay: list[Number] | None = Field(
        None, min_length=1, max_length=32, description="Options for the L2 weight decay."
    )
    epochs: list[Count] | None = Field(
        None, min_length=1, max_length=32, description="Options for the training epochs per candidate."
    )

    @model_validator(mode="after")
    def _distinct(self) -> Hyperparameters:
        for name, values in self.options().items():
            if len(set(values)) != len(values):
                raise ValueError(f"hyperparameters.{name} has repeated options: {list(values)}")
        return self

    def options(self) -> dict[str, tuple[Any, ...]]:
        return {name: tuple(getattr(self, name)) for name in HYPERPARAMETERS if getattr(self, name) is not None}


class LayerChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="The choice's name in architectures and conditions; default layer<i>."
    )
    ops: list[str | dict[str, Any]] = Field(
        ..., min_length=1, max_length=64,
        description="The operations this layer may be: a name ('relu') or an object ({op: conv2d, channels: "
        "[8, 16]}) whose list-valued parameters give options. Vocabulary: " + vocabulary() + ".",
    )
    when: dict[str, list[str]] | None = Field(
        None,
        description="This choice exists only when each named earlier choice took one of these operations "
        "(by name, e.g. conv2d, or by full label); otherwise the layer is left out.",
    )


DEFAULT_LAYERS: list[dict[str, Any]] = [
    {"name": "norm", "ops": ["identity", "batchnorm"]},
    {"name": "pool", "ops": ["identity", {"op": "max_pool", "kernel": 2}]},
    {"name": "flat", "ops": ["flatten"]},
    {"name": "hidden1", "ops": [{"op": "linear", "units": [32, 64, 128]}]},
    {"name": "act1", "ops": ["relu", "gelu", "tanh"]},
    {"name": "drop1", "ops": ["identity", {"op": "dropout", "p": 0.2}]},
    {"name": "hidden2", "ops": ["identity", {"op": "linear", "units": [32, 64]}]},
    {"name": "act2", "ops": ["relu", "gelu"], "when": {"hidden2": ["linear"]}},
]


class DeclaredConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["declared"] = "declared"
    layers: list[LayerChoice] = Field(
        default_factory=lambda: [LayerChoice(**layer) for layer in DEFAULT_LAYERS], min_length=1, max_length=64,
        description="The layer choices, in network order; a flatten and a linear classifier follow the last.",
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=lambda: Hyperparameters(lr=[0.02, 0.05, 0.1], batch_size=[32, 64]),
        description="Training settings searched with the network (train evaluator): lr, batch_size, weight_decay, "
        "epochs, each a list of options.",
    )

    @model_validator(mode="after")
    def _check(self) -> DeclaredConfig:
        names: list[str] = []
        for i, layer in enumerate(self.layers):
            layer.name = layer.name or f"layer{i}"
            where = f"layers[{i}] {layer.name!r}"
            if layer.name in names or layer.name in HYPERPARAMETERS:
                raise ValueError(f"{where}: the name is already taken (choice names must differ from each other "
                                 f"and from {', '.join(HYPERPARAMETERS)})")
            layer_options(layer, where)
            for ref, accepted in (layer.when or {}).items():
                if ref not in names:
                    raise ValueError(f"{where}.when: {ref!r} is not an earlier choice; "
                                     f"allowed: {', '.join(names) or 'none (this is the first choice)'}")
                matching(layer_options(self.layers[names.index(ref)], ref), accepted, f"{where}.when.{ref}")
            names.append(layer.name)
        return self


def layer_options(layer: LayerChoice, where: str) -> list[Option]:
    """The concrete options of a choice, in declared order; ValueError naming the bad operation."""
    options: list[Option] = []
    for j, spec in enumerate(layer.ops):
        try:
            options += expand(spec, MAX_OPTIONS - len(options))
        except ValueError as exc:
            raise ValueError(f"{where}: ops[{j}]: {exc}") from None
    repeated = sorted(label for label, n in Counter(o.label for o in options).items() if n > 1)
    if repeated:
        raise ValueError(f"{where}: {', '.join(repeated)} offered more than once")
    return options


def matching(options: list[Option], accepted: list[str], where: str) -> frozenset[int]:
    """Indices of the options named in a condition, by operation name or full label."""
    if not accepted:
        raise ValueError(f"{where}: an empty list never holds; name at least one operation")
    allowed = list(dict.fromkeys([o.op for o in options] + [o.label for o in options]))
    for value in accepted:
        if ALIASES.get(value, value) not in allowed:
            raise ValueError(f"{where}: {value!r} is not an option of that choice; allowed: {', '.join(allowed)}")
    wanted = {ALIASES.get(v, v) for v in accepted}
    return frozenset(i for i, o in enumerate(options) if o.op in wanted or o.label in wanted)
