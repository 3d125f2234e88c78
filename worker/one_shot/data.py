"""The one-shot methods' data: the dataset's splits as tensors on the device, and each epoch's
batches, seeded per epoch (as the trainer's) so that a resumed run sees the batches an
uninterrupted one would have."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from worker.training.augment import augment_batch, epoch_generator
from worker.training.datasets import Dataset
from worker.training.trainer import batch_bounds, device_tensors, epoch_order


@dataclass(frozen=True)
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def steps(self, batch_size: int) -> int:
        """Batches per epoch (a trailing batch of one is dropped, as the trainer drops it)."""
        return len(batch_bounds(len(self), batch_size))

    def batches(
        self, batch_size: int, seed: int, epoch: int, augment: bool = False, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's shuffled batches; images randomly cropped and flipped when ``augment``.
        ``shard`` (rank, processes): the part of every batch one of several processes takes."""
        order = epoch_order(len(self), seed, epoch, self.y.device)
        generator = epoch_generator(self.y.device, seed, epoch) if augment else None
        rank, processes = shard
        for start, stop in batch_bounds(len(self), batch_size):
            index = order[start:stop]
            x = self.x[index]
            x = augment_batch(x, generator) if generator is not None else x
            yield x[rank::processes], self.y[index][rank::processes]


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


__all__ = ["Split", "SupernetData", "supernet_data"]
