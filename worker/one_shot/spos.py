"""Single Path One-Shot (Guo et al., ECCV 2020), with FairNAS' strict fairness as an option
(Chu et al., ICCV 2021): see ``scion.configs.one_shot.SPOSConfig``."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scion.configs.one_shot import SPOSConfig
from spaces.base import Arch
from worker.one_shot.method import EpochTally, Method


class SPOS(Method):
    """Each step trains one path drawn uniformly (every decision's option uniformly), or with
    ``fair`` m = the largest decision's option count paths on the same batch, decision d of path i
    taking option perm_d[i mod n_d] of a fresh permutation perm_d (so with equal option counts
    every option of every decision trains exactly once), their gradients summed into one step.
    SGD with momentum, the learning rate decayed linearly to 0 over all steps."""

    config: SPOSConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        total = cfg.epochs * self.data.train.steps(cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: max(0.0, 1.0 - step / total))

    def paths(self) -> list[list[int]]:
        """The choices of the paths one step trains."""
        if not self.config.fair:
            return [[int(self.rng.integers(n)) for n in self.sizes]]
        perms = [self.rng.permutation(n) for n in self.sizes]
        return [[int(perm[i % len(perm)]) for perm in perms] for i in range(max(self.sizes))]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        tally = EpochTally(self.device)
        for x, y in self.batches(self.data.train, epoch):
            self.optimizer.zero_grad(set_to_none=True)
            for choices in self.paths():
                loss, logits = self.loss(x, y, arch=self.arch_of(choices))
                loss.backward()
                tally.add(loss, logits, y)
            self.weight_step()
        return tally.metrics()

    def epoch_arch(self, epoch: int) -> Arch:
        """A uniformly drawn path, the same for the same epoch whatever was trained before."""
        rng = np.random.default_rng((self.seed, epoch))
        return self.arch_of([int(rng.integers(n)) for n in self.sizes])


__all__ = ["SPOS"]
