"""The chain network: a stem, stages of inverted-residual blocks (MobileNetV2 / MnasNet), global
pooling and a linear classifier.

Kept apart from ``spaces.chain`` so that only workers import torch. 1-D inputs ``(C, L)`` run as
``(C, 1, L)`` maps with ``1 x k`` kernels and ``1 x s`` strides, so the sequence network is a true
1-D network (no parameters spent on padding rows). Every structural choice is fixed at
construction, so ``torch.jit.trace`` records the network exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from scion.configs.spaces import scaled_channels


def _k(size: int, sequence: bool) -> tuple[int, int]:
    return (1, size) if sequence else (size, size)


def _pad(size: int, sequence: bool) -> tuple[int, int]:
    return (0, size) if sequence else (size, size)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): global pool, bottleneck of a quarter of the block's
    input channels, sigmoid gate."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """1x1 expansion (left out for ratio 1), depthwise k x k (strided), optional SE, 1x1 linear
    projection; a residual connection when the input and output shapes match."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, se: bool, sequence: bool
    ) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        layers += [
            nn.Conv2d(
                hidden, hidden, _k(kernel, sequence), stride=(1, stride) if sequence else stride,
                padding=_pad(kernel // 2, sequence), groups=hidden, bias=False,
            ),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        ]
        if se:
            layers.append(SqueezeExcite(hidden, max(1, c_in // 4)))
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class ChainNetwork(nn.Module):
    def __init__(
        self,
        stages: Sequence[dict[str, Any]],
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: Sequence[int],
        strides: Sequence[int],
        stem_channels: int = 16,
        head_channels: int = 0,
    ) -> None:
        super().__init__()
        if len(input_shape) not in (2, 3) or any(d < 1 for d in input_shape):
            raise ValueError(
                f"input_shape must be (channels, H, W) or (channels, L), got {input_shape}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.input_shape = tuple(input_shape)
        self.sequence = seq = len(input_shape) == 2

        c = stem_channels
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], c, _k(3, seq), padding=_pad(1, seq), bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        ]
        for stage, base, stride in zip(stages, channels, strides, strict=True):
            c_out = scaled_channels(base, stage["width"])
            for block in range(stage["depth"]):
                layers.append(
                    InvertedResidual(
                        c, c_out, stage["kernel"], stride if block == 0 else 1, stage["expand"],
                        stage["se"], seq,
                    )
                )
                c = c_out
        if head_channels:
            layers += [nn.Conv2d(c, head_channels, 1, bias=False), nn.BatchNorm2d(head_channels),
                       nn.ReLU(inplace=True)]
            c = head_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.sequence:
            x = x.unsqueeze(2)  # (B, C, L) -> (B, C, 1, L)
        return self.classifier(self.pool(self.features(x)).flatten(1))
