"""The conv1d network: layers of dilated Conv1d + BatchNorm + ReLU with optional residual
shortcuts and pooling, then global average pooling and a linear classifier.

Kept apart from ``spaces.conv1d`` so that only workers import torch. Images ``(C, H, W)`` are
flattened to ``(C, H * W)``. Pooling uses ``ceil_mode`` so that a length-1 sequence stays length 1
however many layers pool. Every structural choice is fixed at construction, so
``torch.jit.trace`` records the network exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn


def make_pool(name: str) -> nn.Module:
    """The pooling after a layer: size 2, stride 2, or none."""
    if name == "max":
        return nn.MaxPool1d(2, 2, ceil_mode=True)
    if name == "avg":
        return nn.AvgPool1d(2, 2, ceil_mode=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling {name!r}; allowed: none, max, avg")


def check_io(input_shape: tuple[int, ...], num_classes: int) -> None:
    """Refuse inputs and class counts no conv1d network (nor the supernet) is built for."""
    if len(input_shape) not in (2, 3) or any(d < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (channels, H, W) or (channels, L), got {input_shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")


class ConvLayer(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, kernel: int, dilation: int, pool: str, skip: bool
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel // 2), bias=False
        )
        self.bn = nn.BatchNorm1d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if skip:
            self.shortcut = (
                nn.Identity() if c_in == c_out
                else nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out))
            )
        self.pool = make_pool(pool)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn(self.conv(x))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.pool(self.act(out))


class Conv1DNetwork(nn.Module):
    def __init__(
        self, layers: Sequence[dict[str, Any]], input_shape: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        check_io(input_shape, num_classes)
        if not layers:
            raise ValueError("a conv1d network needs at least one layer")
        self.input_shape = tuple(input_shape)
        self.image = len(input_shape) == 3
        c = input_shape[0]
        blocks = []
        for layer in layers:
            blocks.append(
                ConvLayer(c, layer["channels"], layer["kernel"], layer["dilation"], layer["pool"],
                          layer["skip"])
            )
            c = layer["channels"]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.image:
            x = x.flatten(2)  # (B, C, H, W) -> (B, C, H * W)
        return self.classifier(self.pool(self.features(x)).flatten(1))
