"""What the three one-shot methods share: the supernet's weight step, per-epoch tallies, the
validation accuracy of one path, and the state a checkpoint keeps (``worker/one_shot/epochs.py``
runs the epochs)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scion.configs.one_shot import MethodConfig
from spaces.base import Arch, SearchSpace
from worker.one_shot.data import SupernetData
from worker.one_shot.distributed import Parallel
from worker.training.trainer import GRAD_CLIP, Split, accuracy


class Bound(nn.Module):
    """The supernet with its path (or mixture) fixed, as a plain network ``model(x)``; train/eval
    mode passes through, so ``worker.training.trainer.accuracy`` can score a path."""

    def __init__(self, supernet: nn.Module, **path: Any) -> None:
        super().__init__()
        self.supernet, self.path = supernet, path

    def forward(self, x: Tensor) -> Tensor:
        return self.supernet(x, **self.path)


@contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Forwards inside leave the BatchNorm running statistics (every buffer) as they were: for
    passes that are not training steps (ENAS' rewards with batch statistics, DARTS' look-ahead)."""
    saved = [b.detach().clone() for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved):
                buffer.copy_(value)


class EpochTally:
    """An epoch's loss and accuracy, summed on the device (no host sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float32, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        self.loss += loss.detach() * len(y)
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += len(y)

    def metrics(self) -> dict[str, float]:
        seen = max(self.seen, 1)
        return {"train_loss": float(self.loss) / seen, "train_acc": 100.0 * int(self.correct) / seen}


class Method(ABC):
    """One method training one supernet. Subclasses set ``optimizer`` and ``scheduler`` (the
    weights', stepped per batch) and train an epoch; the base keeps the rest of the state a
    checkpoint needs (its path-sampling generator) and the weight step all three take.

    ``model`` is what weight steps forward through: the supernet, or its DistributedDataParallel
    wrapper when ``parallel`` trains it on several devices (``worker/one_shot/distributed.py``);
    each process then takes its shard of every batch, and gradients computed outside ``model``
    (DARTS' architecture weights) are averaged with ``parallel.average``.
    """

    halves: ClassVar[bool] = False  # the training split cut in two (weights, architecture weights)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def __init__(
        self, space: SearchSpace, supernet: nn.Module, data: SupernetData, config: MethodConfig, *,
        autocast: bool, seed: int, parallel: Parallel | None = None,
    ) -> None:
        self.space, self.supernet, self.data, self.config = space, supernet, data, config
        self.parallel = parallel if parallel is not None else Parallel()
        self.model = self.parallel.wrap(supernet)
        self.device = data.val.y.device
        self.autocast, self.seed = autocast, seed
        self.rng = np.random.default_rng(seed)
        self.sizes = [len(options) for _, options in space.decisions()]

    # -- what each method does -------------------------------------------------------------------

    @abstractmethod
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (1-based); its train_loss and train_acc, and any metrics of its own."""

    @abstractmethod
    def epoch_arch(self, epoch: int) -> Arch:
        """The path whose validation accuracy the epoch reports (sampled, derived or most likely)."""

    def epoch_metrics(self, epoch: int) -> dict[str, Any]:
        """Further per-epoch metrics, measured after the epoch's training."""
        return {}

    def candidates(self) -> list[Arch]:
        """The architectures the trained method proposes for the search phase."""
        return []

    def done(self) -> bool:
        """Whether the method has decided, after the last epoch it trained, to train no more
        (DARTS-ES' stopping rule): ``run_epochs`` then ends there, that epoch saved and reported,
        and a resumed attempt whose checkpoint says so trains nothing. Part of the state a
        checkpoint keeps; it must come out alike on every process training the supernet together.
        By default a method trains every planned epoch."""
        return False

    # -- shared steps ----------------------------------------------------------------------------

    def batches(self, split: Split, epoch: int, offset: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """This process's shard of each of the epoch's training batches of ``split`` (``offset``
        seeds a second split's order apart from the first's)."""
        return split.batches(self.config.batch_size, self.seed + offset, epoch, self.data.augment, self.parallel.shard)

    def loss(self, x: Tensor, y: Tensor, *, model: nn.Module | None = None, **path: Any) -> tuple[Tensor, Tensor]:
        """Cross entropy and logits on one batch through ``path`` (arch=... or mix=...), forwarded
        through ``model`` (by default the weight steps' ``self.model``)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = (self.model if model is None else model)(x, **path)
            return F.cross_entropy(logits.float(), y), logits

    def weight_step(self) -> None:
        """Apply the accumulated gradients: clipped at the trainer's norm, one scheduler step."""
        nn.utils.clip_grad_norm_(self.supernet.parameters(), GRAD_CLIP)
        self.optimizer.step()
        self.scheduler.step()

    def arch_of(self, choices: list[int]) -> Arch:
        return self.space.from_choices(choices)

    def val_acc(self, arch: Arch) -> float:
        """Top-1 accuracy (%) of ``arch``'s path on the validation split, in eval mode."""
        return accuracy(Bound(self.supernet, arch=arch), self.data.val.x, self.data.val.y, self.autocast)

    def replicated(self) -> list[Tensor]:
        """What every process training this supernet together must hold alike: the weights (not
        the BatchNorm statistics, which each process gathers on its own shard)."""
        return list(self.supernet.parameters())

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["rng"]


__all__ = ["Bound", "EpochTally", "Method", "preserved_buffers"]
