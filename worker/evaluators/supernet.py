"""The supernet trial of a one-shot job (phase ``supernet``): train the space's supernet with
the job's method, checkpointing every epoch, and hand the search phase its candidates.

Not a user-selectable evaluator (it is not in ``EVALUATORS``): ``worker/runner.py`` runs it for a
one-shot job's supernet trial, with the job's ``train`` evaluator config naming the dataset.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scion.configs.evaluators import TrainConfig
from scion.configs.one_shot import OneShotConfig
from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator
from worker.one_shot import METHODS
from worker.one_shot.data import supernet_data
from worker.one_shot.distributed import Parallel, run_parallel, supernet_devices
from worker.one_shot.epochs import run_epochs
from worker.training.datasets import load_dataset
from worker.training.trainer import run_oom_guarded


def train_supernet(
    device: str, parallel: Parallel, ctx: EvalContext | None,
    space: SearchSpace, one_shot: OneShotConfig, train: TrainConfig, checkpoint: Path, seed: int,
) -> dict[str, Any]:
    """One process's share of training the supernet on ``device`` (all of it with ``Parallel()``).
    ``seed`` (the job's) fixes the initial weights and the paths drawn, so an attempt resumed or
    repeated matches, and jobs of other seeds train other supernets."""
    method, data, dev = one_shot.method, load_dataset(train.dataset), torch.device(device)
    torch.manual_seed(seed)
    supernet = space.supernet(data.input_shape, data.num_classes).to(dev)
    kind = METHODS[method.type]
    trainer = kind(
        space, supernet, supernet_data(data, dev, halves=kind.halves), method,
        autocast=train.amp and dev.type == "cuda", seed=seed, parallel=parallel,
    )
    result = run_epochs(trainer, ctx, checkpoint, method.epochs)
    return {**result, "supernet_params": space.supernet_params(data.input_shape, data.num_classes)}


class SupernetEvaluator(Evaluator):
    """``evaluate`` returns val_acc (the last epoch's path), train_seconds, epochs_trained (fewer
    than the method's epochs when it stopped early: DARTS-ES), supernet_params and candidates
    (the architectures the method proposes: DARTS its derived one, ENAS its controller's most
    likely ones, SPOS none: the job's strategy searches). It trains on
    ``ctx.device``, or on every device of ``SCION_SUPERNET_DEVICES`` together."""

    def __init__(self, one_shot: OneShotConfig, train: TrainConfig, seed: int) -> None:
        super().__init__(train)
        self.one_shot, self.train, self.seed = one_shot, train, seed

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        return run_oom_guarded(
            run_parallel, supernet_devices(ctx.device), train_supernet, ctx,
            space, self.one_shot, self.train, ctx.artifact_path(ctx.number), self.seed,
        )


__all__ = ["SupernetEvaluator", "train_supernet"]
