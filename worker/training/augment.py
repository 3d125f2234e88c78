"""Light image augmentation applied per training batch, as tensor ops on the batch's own device.

Random crop with zero padding (padding = an eighth of the shorter side, 4 pixels on 32x32 images)
and a horizontal flip with probability 1/2, drawn independently for every example from a seeded
generator: the same seed gives the same augmented batches, so a resumed run matches an
uninterrupted one. Inputs are already standardised, so zero padding is padding with the mean.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def crop_padding(height: int, width: int) -> int:
    """Pixels of padding for the random crop: 4 on 32x32 images, at least 1."""
    return max(1, round(min(height, width) / 8))


def epoch_generator(device: torch.device | str, seed: int, epoch: int) -> torch.Generator:
    """The augmentation generator for one epoch of one run, on ``device``."""
    return torch.Generator(device=torch.device(device)).manual_seed((seed * 10_007 + epoch) ^ 0x5DEECE66D)


def augment_batch(x: Tensor, generator: torch.Generator, padding: int | None = None) -> Tensor:
    """A randomly cropped (after zero padding) and horizontally flipped copy of ``x`` (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"augmentation needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    p = crop_padding(h, w) if padding is None else padding
    dev = x.device
    offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    padded = F.pad(x, (p, p, p, p))
    rows = offsets[0][:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[1][:, None] + torch.arange(w, device=dev)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # reading the columns backwards flips
    return padded[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


__all__ = ["augment_batch", "crop_padding", "epoch_generator"]
