"""The ``train`` evaluator: build each candidate and train it briefly on a built-in dataset.

Costs (parameters, FLOPs, latency) are measured before training, so they are known even for a
candidate that is then stopped early. Torch is imported inside ``evaluate`` only.
"""
from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spaces.base import Arch, SearchSpace, training_settings
from worker.evaluators.base import EvalContext, Evaluator, Metric, TrialFailed
from worker.training.datasets import DATASETS, dataset_by_name

DatasetConfig = DATASETS.config_union()


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["train"] = Field("train", description="Train every candidate from scratch.")
    dataset: DatasetConfig = Field(  # type: ignore[valid-type]
        default_factory=lambda: DATASETS["digits"].config(),
        description=(
            "Built-in dataset to train on, as an object with its 'type' and settings, or just its "
            f"name ({', '.join(DATASETS.names())})."
        ),
    )
    epochs: int = Field(4, ge=1, le=1000, description="Training epochs per candidate.")
    batch_size: int = Field(64, ge=1, le=4096, description="Examples per SGD step.")
    lr: float = Field(
        0.05, gt=0, le=10, description="Peak SGD learning rate, annealed to 0 by cosine."
    )
    momentum: float = Field(0.9, ge=0, le=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay.")
    nesterov: bool = Field(True, description="Nesterov momentum (ignored when momentum is 0).")
    amp: bool = Field(True, description="bf16 autocast; applies on CUDA only.")
    latency_repeats: int = Field(
        10, ge=1, le=1000, description="Timed forward passes per latency measurement (median kept)."
    )

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_by_name(cls, value: Any) -> Any:
        return dataset_by_name(value)


def arch_seed(key: str) -> int:
    """A deterministic per-architecture seed (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


class TrainEvaluator(Evaluator):
    Config = TrainConfig
    queue = "gpu"
    keeps_weights = True
    objectives = (
        Metric("val_acc", "max", "Validation accuracy (%) after the last epoch."),
        Metric("params", "min", "Number of parameters."),
        Metric("flops", "min", "Forward FLOPs for one example."),
        Metric("latency_ms", "min", "Median eval-mode forward time (ms) for one example."),
        Metric("train_seconds", "min", "Wall time of training and evaluation (s)."),
    )
    recorded = ("test_acc", "train_loss", "latency_ms_batch")
    constraint_metrics = ("params", "flops", "latency_ms", "latency_ms_batch")
    tunable = ("lr", "batch_size", "weight_decay", "epochs")

    config: TrainConfig

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        import torch

        from worker.training.cost import count_flops, count_params, measure_latency_ms
        from worker.training.datasets import load_dataset
        from worker.training.trainer import run_oom_guarded, train

        cfg = self.config.model_copy(update=training_settings(space, arch))  # this trial's own lr, batch size...
        data = load_dataset(cfg.dataset)
        seed = arch_seed(space.key(arch))
        fidelity = ctx.fidelity or {}
        epochs = int(fidelity.get("epochs", cfg.epochs))
        resume = None
        if fidelity.get("resume_from") is not None:
            resume = ctx.artifact_path(int(fidelity["resume_from"]))
            if not resume.exists():
                raise TrialFailed(
                    f"checkpoint of trial {fidelity['resume_from']} to continue from is missing: {resume}"
                )

        def run() -> dict[str, Any]:
            torch.manual_seed(seed)  # same initial weights for the same architecture
            model = space.build(arch, data.input_shape, data.num_classes).to(ctx.device)
            shape, reps = data.input_shape, cfg.latency_repeats
            costs = {
                "params": count_params(model),
                "flops": count_flops(model, shape, ctx.device),
                "latency_ms": measure_latency_ms(model, shape, 1, ctx.device, repeats=reps),
                "latency_ms_batch": measure_latency_ms(
                    model, shape, cfg.batch_size, ctx.device, repeats=reps
                ),
            }
            ctx.check_costs(costs)
            result = train(
                model,
                data,
                epochs=epochs,
                schedule_epochs=int(fidelity.get("schedule_epochs", epochs)),
                resume=resume,
                checkpoint=ctx.artifact_path(ctx.number),
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

        return run_oom_guarded(run)


__all__ = ["TrainConfig", "TrainEvaluator", "arch_seed"]
