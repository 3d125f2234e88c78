"""The one-shot methods' data: the dataset's splits as tensors on the device, batched per epoch
as the trainer batches them (``worker.training.trainer.Split``), so that a resumed run sees the
batches an uninterrupted one would have."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from worker.training.datasets import Dataset
from worker.training.trainer import Split, device_tensors


@dataclass(frozen=True)
class SupernetData:
    """``train``: what the supernet's weights train on; ``arch``: what DARTS trains the
    architecture weights on (None for the other methods); ``val``: the validation split, for the
    per-epoch accuracy and ENAS' controller rewards; ``augment``: the dataset's own setting."""

    train: Split
    arch: Split | None
    val: Split
    augment: bool


def supernet_data(data: Dataset, device: torch.device, *, halves: bool) -> SupernetData:
    """The splits; with ``halves`` the training split is cut in two, the first half for the
    weights and the second for the architecture weights, as DARTS splits CIFAR-10's training set
    (the split is already shuffled, seeded, by ``worker.training.datasets``)."""
    x_train, y_train, x_val, y_val, _, _ = device_tensors(data, device)
    val = Split(x_val, y_val)
    if not halves:
        return SupernetData(Split(x_train, y_train), None, val, data.augment)
    half = len(y_train) // 2
    return SupernetData(
        Split(x_train[:half], y_train[:half]), Split(x_train[half:], y_train[half:]), val, data.augment
    )


__all__ = ["SupernetData", "supernet_data"]
