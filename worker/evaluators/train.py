"""The ``train`` evaluator: build each candidate and train it briefly on a built-in dataset.

Costs (parameters, FLOPs, latency) are measured before training, so they are known even for a
candidate that is then stopped early.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch

from scion.budgets import network_over_limits
from scion.configs.evaluators import TrainConfig
from scion.settings import get_settings
from spaces.base import Arch, SearchSpace, training_settings
from worker.evaluators.base import EvalContext, Evaluator
from worker.outcomes import TrialFailed, blame
from worker.training.cost import measure_costs
from worker.training.datasets import DATASETS, load_dataset
from worker.training.trainer import run_oom_guarded, train

DatasetConfig = DATASETS.config_union()


def arch_seed(key: str) -> int:
    """A deterministic per-architecture seed (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


class TrainEvaluator(Evaluator):
    Config = TrainConfig
    config: TrainConfig

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        cfg = self.config.model_copy(update=training_settings(space, arch))  # this trial's own lr, batch size...
        with blame("evaluator.dataset: loading it"):
            data = load_dataset(cfg.dataset)
        if too_big := network_over_limits(space, arch, data.input_shape, data.num_classes, cfg.batch_size):
            raise TrialFailed(too_big)  # a file dataset's classes are known only now
        seed = arch_seed(space.key(arch))
        fidelity = ctx.fidelity or {}
        epochs = int(fidelity.get("epochs", cfg.epochs))
        resume = None
        if fidelity.get("resume_from") is not None:
            resume = ctx.artifact_path(int(fidelity["resume_from"]))
            if not resume.exists():
                raise TrialFailed(
                    f"checkpoint of trial {fidelity['resume_from']} to continue from is missing from the artifact store"
                )

        def run() -> dict[str, Any]:
            torch.manual_seed(seed)  # same initial weights for the same architecture
            with blame("space: building this architecture's network"):
                model = space.build(arch, data.input_shape, data.num_classes).to(ctx.device)
            with blame("space: running this architecture's network to measure its costs"):
                costs = measure_costs(model, data.input_shape, cfg.batch_size, ctx.device, cfg.latency_repeats)
            ctx.check_costs(costs)
            result = train(
                model,
                data,
                epochs=epochs,
                schedule_epochs=int(fidelity.get("schedule_epochs", epochs)),
                resume=resume,
                checkpoint=ctx.artifact_path(ctx.number),
                continue_checkpoint=ctx.attempt > 1,  # an earlier attempt's worker died: go on from its state
                checkpoint_seconds=get_settings().checkpoint_seconds,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                nesterov=cfg.nesterov,
                device=ctx.device,
                amp=cfg.amp,
                seed=seed,
                on_epoch=ctx.report,
            )
            return {**costs, **result}

        with blame("evaluator: training this architecture's network"):  # where build and costs say nothing
            return run_oom_guarded(run)


__all__ = ["TrainEvaluator", "arch_seed"]
