"""Efficient NAS via parameter sharing (Pham et al., ICML 2018), its controller the REINFORCE
policy of ``scion.policy``: see ``scion.configs.one_shot.ENASConfig``."""
from __future__ import annotations

import itertools
from typing import Any

import torch

from scion.configs.one_shot import ENASConfig
from scion.policy import CategoricalPolicy
from spaces.base import Arch
from worker.one_shot.method import EpochTally, Method, preserved_buffers

CANDIDATE_WALK = 1000  # choice vectors looked at per candidate wanted, before giving up on more distinct ones


class ENAS(Method):
    """Each epoch first trains the shared weights, one path sampled from the controller per step
    (SGD with Nesterov momentum, cosine-annealed), then takes ``controller_steps`` controller
    updates, each over ``controller_aggregate`` sampled paths rewarded by their accuracy (a
    fraction) on one validation batch with the shared weights. The rewards are measured with
    batch statistics, as ENAS does (the supernet's running statistics mix every path's), leaving
    the running statistics as they were."""

    config: ENASConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
            nesterov=cfg.momentum > 0,
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs * self.data.train.steps(cfg.batch_size), eta_min=cfg.lr_min
        )
        self.policy = CategoricalPolicy(
            self.sizes, learning_rate=cfg.controller_lr, baseline_decay=cfg.baseline_decay,
            entropy_weight=cfg.entropy_weight,
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        tally = EpochTally(self.device)
        for x, y in self.batches(self.data.train, epoch):
            self.optimizer.zero_grad(set_to_none=True)
            loss, logits = self.loss(x, y, arch=self.arch_of(self.policy.sample(self.rng)))
            loss.backward()
            self.weight_step()
            tally.add(loss, logits, y)
        return {**tally.metrics(), "controller_reward": self.train_controller(epoch)}

    def train_controller(self, epoch: int) -> float:
        """The epoch's controller updates; their mean reward (accuracy, %)."""
        cfg = self.config
        val = itertools.cycle(list(self.data.val.batches(cfg.batch_size, self.seed + 2, epoch)))
        rewards: list[float] = []
        for _ in range(cfg.controller_steps):
            x, y = next(val)
            samples = []
            for _ in range(cfg.controller_aggregate):
                choices = self.policy.sample(self.rng)
                samples.append((choices, self.batch_accuracy(self.arch_of(choices), x, y)))
            self.policy.update(samples)
            rewards += [reward for _, reward in samples]
        return 100.0 * sum(rewards) / len(rewards)

    @torch.no_grad()
    def batch_accuracy(self, arch: Arch, x: torch.Tensor, y: torch.Tensor) -> float:
        with preserved_buffers(self.supernet), torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.autocast
        ):
            logits = self.supernet(x, arch=arch)
        return float((logits.argmax(1) == y).float().mean())

    def most_likely(self, count: int) -> list[Arch]:
        """The controller's ``count`` most likely distinct architectures (fewer when the space has fewer)."""
        found: dict[str, Arch] = {}
        for choices in itertools.islice(self.policy.most_likely(), count * CANDIDATE_WALK):
            arch = self.arch_of(choices)
            found.setdefault(self.space.key(arch), arch)
            if len(found) == count:
                break
        return list(found.values())

    def epoch_arch(self, epoch: int) -> Arch:
        return self.most_likely(1)[0]

    def candidates(self) -> list[Arch]:
        return self.most_likely(self.config.samples)

    def replicated(self) -> list[torch.Tensor]:
        return [*super().replicated(), *(torch.from_numpy(logits) for logits in self.policy.logits)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "policy": self.policy.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state(state["policy"])


__all__ = ["ENAS"]
