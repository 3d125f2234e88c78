"""BatchNorm in the once-for-all manner, shared by the supernets whose networks are slices of
their widest layers (``chain_supernet``, ``conv1d_supernet``): a network of width c uses the first
c entries of the widest BatchNorm's affine weights and running statistics, and in train mode
updates those statistics (and the batch count) in place exactly as ``nn.BatchNorm*d(c)`` updates
its own, momentum None being the cumulative average. Torch, so imported by the supernets only.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

_SLICED = ("weight", "bias", "running_mean", "running_var")


def sliced_batch_norm(bn: _BatchNorm, x: Tensor) -> Tensor:
    """``bn`` on the first ``x.shape[1]`` channels."""
    c, momentum = x.shape[1], bn.momentum
    if bn.training:
        bn.num_batches_tracked.add_(1)
        if momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(
        x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c], bn.training,
        momentum or 0.0, bn.eps,
    )


def bn_state(bn: _BatchNorm, channels: int) -> dict[str, Tensor]:
    """The state of a BatchNorm of ``channels`` cut from ``bn`` (views: the caller clones)."""
    return {**{name: getattr(bn, name)[:channels] for name in _SLICED}, "num_batches_tracked": bn.num_batches_tracked}


__all__ = ["bn_state", "sliced_batch_norm"]
