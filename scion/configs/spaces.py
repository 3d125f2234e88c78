"""The job-spec side of the built-in search spaces: what a job may set, checked as written.

The spaces themselves (sampling, mutation, building networks) live in ``spaces/`` and register
their implementations against these names."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

POOLS: tuple[str, ...] = ("none", "max", "avg")


def scaled_channels(base: int, width: float) -> int:
    """Stage channels for a width multiplier: the nearest integer (halves round up), at least 1."""
    return max(1, math.floor(base * width + 0.5))

class NB201Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["nb201"] = "nb201"
    channels: int = Field(
        16, ge=1, le=256, description="C: channels of the first stage (doubled at each reduction)."
    )
    cells_per_stage: int = Field(
        5, ge=1, le=20, description="N: cells in each of the three stages."
    )


class DARTSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["darts"] = "darts"
    channels: int = Field(
        16, ge=1, le=512,
        description="C: channels of each operation in the first cells (doubled at each reduction; "
        "a cell outputs 4C). DARTS uses 16 while searching and 36 for its CIFAR-10 networks.",
    )
    layers: int = Field(
        8, ge=3, le=40,
        description="Cells in the network; reduction cells sit at layers//3 and 2*layers//3 as in "
        "DARTS (8 while searching, 20 for CIFAR-10). At least 3, so that both cells are used.",
    )
    stem_multiplier: int = Field(
        3, ge=1, le=8, description="The stem convolution outputs stem_multiplier * channels."
    )


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["chain"] = "chain"
    channels: list[int] = Field(
        [16, 24, 40, 80, 160], min_length=1, max_length=12,
        description="Base output channels of each stage (one entry per stage), scaled by the "
        "stage's width multiplier.",
    )
    strides: list[int] = Field(
        [1, 2, 2, 2, 1], min_length=1, max_length=12,
        description="Stride of each stage's first block (1 or 2), one entry per stage.",
    )
    stem_channels: int = Field(16, ge=1, le=1024, description="Channels of the 3x3 stem convolution.")
    head_channels: int = Field(
        0, ge=0, le=4096,
        description="Channels of a 1x1 convolution before global pooling (MnasNet uses 1280); "
        "0 leaves it out.",
    )
    depths: list[int] = Field([1, 2, 3, 4], min_length=1, description="Options for blocks per stage.")
    kernels: list[int] = Field([3, 5, 7], min_length=1, description="Options for the depthwise kernel size (odd).")
    expansions: list[int] = Field([3, 6], min_length=1, description="Options for the expansion ratio.")
    widths: list[float] = Field(
        [0.75, 1.0, 1.25], min_length=1, description="Options for the stage width multiplier."
    )
    se: list[bool] = Field(
        [False, True], min_length=1, description="Options for squeeze-and-excitation."
    )

    @model_validator(mode="after")
    def _check(self) -> ChainConfig:
        if len(self.strides) != len(self.channels):
            raise ValueError(
                f"strides has {len(self.strides)} entries but channels has {len(self.channels)}; "
                "give one stride per stage"
            )
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides must each be 1 or 2, got {self.strides}")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must each be at least 1, got {self.channels}")
        checks = [
            ("depths", self.depths, lambda v: 1 <= v <= 16, "between 1 and 16"),
            ("kernels", self.kernels, lambda v: v >= 1 and v % 2 == 1 and v <= 15, "odd, 1 to 15"),
            ("expansions", self.expansions, lambda v: 1 <= v <= 16, "between 1 and 16"),
            ("widths", self.widths, lambda v: 0 < v <= 8, "in (0, 8]"),
        ]
        for name, values, ok, rule in checks:
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has repeated options: {values}")
            bad = [v for v in values if not ok(v)]
            if bad:
                raise ValueError(f"{name} must be {rule}; got {bad}")
        if len(set(self.se)) != len(self.se):
            raise ValueError(f"se has repeated options: {self.se}")
        for stage, base in enumerate(self.channels):
            widths = [scaled_channels(base, w) for w in self.widths]
            if len(set(widths)) != len(widths):
                raise ValueError(
                    f"stage {stage}: width multipliers {self.widths} give channels {widths} for base "
                    f"{base}, so two options build the same network; use wider base channels or "
                    "fewer widths"
                )
        return self


class Conv1DConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["conv1d"] = "conv1d"
    min_layers: int = Field(2, ge=1, le=32, description="Fewest convolutional layers.")
    max_layers: int = Field(6, ge=1, le=32, description="Most convolutional layers.")
    kernels: list[int] = Field([3, 5, 7, 9], min_length=1, description="Options for the kernel size (odd).")
    channels: list[int] = Field([16, 32, 64], min_length=1, description="Options for a layer's output channels.")
    dilations: list[int] = Field([1, 2, 4], min_length=1, description="Options for the dilation.")
    pools: list[Literal["none", "max", "avg"]] = Field(
        list(POOLS), min_length=1, description="Options for the pooling after a layer (size 2, stride 2)."
    )
    skips: list[bool] = Field([False, True], min_length=1, description="Options for the residual shortcut.")

    @model_validator(mode="after")
    def _check(self) -> Conv1DConfig:
        if self.min_layers > self.max_layers:
            raise ValueError(f"min_layers ({self.min_layers}) is larger than max_layers ({self.max_layers})")
        checks = [
            ("kernels", self.kernels, lambda v: 1 <= v <= 63 and v % 2 == 1, "odd, 1 to 63"),
            ("channels", self.channels, lambda v: 1 <= v <= 4096, "between 1 and 4096"),
            ("dilations", self.dilations, lambda v: 1 <= v <= 64, "between 1 and 64"),
        ]
        for name, values, ok, rule in checks:
            bad = [v for v in values if not ok(v)]
            if bad:
                raise ValueError(f"{name} must be {rule}; got {bad}")
        for name, values in (*[(n, v) for n, v, _, _ in checks], ("pools", self.pools), ("skips", self.skips)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has repeated options: {values}")
        return self
