"""The network of a declared space: its active choices in order, then a flatten and a linear
classifier.

Kept apart from ``spaces.declared`` so that only workers import torch. Each module is built for
the shape ``scion.configs.declared_ops.output_shape`` says its input has, so a space that fits the data
at submission builds exactly as checked, and one that does not (a file dataset, whose shape is
known only from its files) fails here with the same message. Every structural choice is fixed
at construction: ``torch.jit.trace`` and ONNX export record the network exactly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from scion.configs.declared_ops import Option, Shape, output_shape

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
}


def make_module(option: Option, shape: Shape) -> nn.Module:
    """The torch module of ``option`` for inputs of ``shape`` (one already checked to fit)."""
    p = option.settings()
    op, channels = option.op, shape[0]
    if op in _ACTIVATIONS:
        return _ACTIVATIONS[op]()
    if op == "identity":
        return nn.Identity()
    if op == "flatten":
        return nn.Flatten() if len(shape) > 1 else nn.Identity()
    if op == "linear":
        return nn.Linear(channels, int(p["units"]))
    if op == "dropout":
        return nn.Dropout(float(p["p"]))
    if op == "batchnorm":
        return nn.BatchNorm2d(channels) if len(shape) == 3 else nn.BatchNorm1d(channels)
    if op == "global_avg_pool":
        pool = nn.AdaptiveAvgPool2d(1) if len(shape) == 3 else nn.AdaptiveAvgPool1d(1)
        return nn.Sequential(pool, nn.Flatten())
    if op in ("conv1d", "conv2d"):
        conv = nn.Conv1d if op == "conv1d" else nn.Conv2d
        kernel, dilation = int(p["kernel"]), int(p["dilation"])
        return conv(channels, int(p["channels"]), kernel, stride=int(p["stride"]), dilation=dilation,
                    padding=dilation * (kernel - 1) // 2)
    if op in ("max_pool", "avg_pool"):
        pools = {("max_pool", 2): nn.MaxPool1d, ("max_pool", 3): nn.MaxPool2d,
                 ("avg_pool", 2): nn.AvgPool1d, ("avg_pool", 3): nn.AvgPool2d}
        return pools[op, len(shape)](int(p["kernel"]))
    raise ValueError(f"operation {op!r} has no module")  # the vocabulary and this function disagree


class DeclaredNetwork(nn.Module):
    def __init__(self, chosen: Sequence[tuple[str, Option]], input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) not in (1, 2, 3) or any(d < 1 for d in input_shape):
            raise ValueError(f"input_shape must be (features,), (channels, length) or (channels, H, W), "
                             f"got {input_shape}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        shape: Shape = tuple(input_shape)
        modules = []
        for name, option in chosen:
            try:
                out = output_shape(option, shape)
            except ValueError as exc:
                raise ValueError(f"choice {name!r}: {exc}") from None
            modules.append(make_module(option, shape))
            shape = out
        self.features = nn.Sequential(*modules)
        self.output_shape = shape
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
