"""The ``proxy`` evaluator: score each candidate untrained, with zero-cost proxies.

Builds the network with the same seeded initial weights the ``train`` evaluator would use, measures
its costs (parameters, FLOPs, latency: the same functions as ``train``, so constraints apply before
anything else is spent), then computes the chosen proxies (worker.training.proxies) on one fixed
batch of the dataset's training split: the same examples for every candidate, so that scores are
comparable. A fraction of a second per small network; no training, no checkpoint. Torch is
imported inside ``evaluate`` only.

How well each proxy ranks trained accuracy is measured by ``python -m bench.proxies`` (see
docs/benchmarks.md, "Zero-cost proxies").
"""
from __future__ import annotations

import math
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator, Metric
from worker.evaluators.train import arch_seed
from worker.training.datasets import DATASETS, dataset_by_name

DatasetConfig = DATASETS.config_union()
ProxyName = Literal["naswot", "synflow", "grad_norm", "jacob_cov"]
PROXIES = ProxyName.__args__
BATCH_SEED = 0  # which training examples make the proxy batch: fixed, never the job's seed


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["proxy"] = Field("proxy", description="Score untrained candidates with zero-cost proxies.")
    dataset: DatasetConfig = Field(  # type: ignore[valid-type]
        default_factory=lambda: DATASETS["digits"].config(),
        description=(
            "Dataset whose inputs and classes the networks are built for and scored on, as an object with its "
            f"'type' and settings, or just its name ({', '.join(DATASETS.names())})."
        ),
    )
    batch_size: int = Field(64, ge=2, le=1024, description="Examples in the one batch the proxies see.")
    proxies: list[ProxyName] = Field(
        default_factory=lambda: list(PROXIES),
        min_length=1,
        description="Proxies to compute; an objective must be one of them (or a cost).",
    )
    latency_repeats: int = Field(
        10, ge=1, le=1000, description="Timed forward passes per latency measurement (median kept)."
    )

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_by_name(cls, value: Any) -> Any:
        return dataset_by_name(value)

    @field_validator("proxies")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ProxyEvaluator(Evaluator):
    Config = ProxyConfig
    queue = "gpu"
    objectives = (
        Metric("naswot", "max", "NASWOT: log-determinant of the ReLU activation-pattern kernel on one batch."),
        Metric("synflow", "max", "SynFlow: sum of |weight x gradient| of the all-ones output, BatchNorm removed."),
        Metric("grad_norm", "max", "Sum of per-layer gradient norms of the loss on one batch, untrained."),
        Metric("jacob_cov", "max", "Jacobian covariance score: inputs told apart by their input gradients."),
        Metric("params", "min", "Number of parameters."),
        Metric("flops", "min", "Forward FLOPs for one example."),
        Metric("latency_ms", "min", "Median eval-mode forward time (ms) for one example."),
        Metric("train_seconds", "min", "Wall time of the whole evaluation (s): costs and proxies, no training."),
    )
    recorded = ("latency_ms_batch", "proxy_seconds")

    @classmethod
    def reported_objectives(cls, config: ProxyConfig) -> tuple[Metric, ...]:
        """A proxy left out of ``config.proxies`` is never computed, so it cannot be an objective."""
        return tuple(m for m in cls.objectives if m.name in config.proxies or m.name not in PROXIES)
    constraint_metrics = ("params", "flops", "latency_ms", "latency_ms_batch")

    config: ProxyConfig

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        import torch

        from worker.training.cost import count_flops, count_params, measure_latency_ms
        from worker.training.datasets import load_dataset
        from worker.training.proxies import compute
        from worker.training.trainer import run_oom_guarded

        started = time.perf_counter()
        cfg = self.config
        data = load_dataset(cfg.dataset)
        seed = arch_seed(space.key(arch))

        def run() -> dict[str, Any]:
            torch.manual_seed(seed)  # the initial weights the train evaluator would start from
            model = space.build(arch, data.input_shape, data.num_classes).to(ctx.device)
            shape, reps = data.input_shape, cfg.latency_repeats
            costs = {
                "params": count_params(model),
                "flops": count_flops(model, shape, ctx.device),
                "latency_ms": measure_latency_ms(model, shape, 1, ctx.device, repeats=reps),
                "latency_ms_batch": measure_latency_ms(model, shape, cfg.batch_size, ctx.device, repeats=reps),
            }
            ctx.check_costs(costs)
            x, y = proxy_batch(data, cfg.batch_size, ctx.device)
            torch.manual_seed(seed)
            scores, seconds = compute(model, x, y, cfg.proxies)
            return {**costs, **scores, "proxy_seconds": sum(seconds.values())}

        metrics = run_oom_guarded(run)
        metrics["train_seconds"] = time.perf_counter() - started
        ctx.report(1, {name: metrics[name] for name in cfg.proxies if math.isfinite(metrics[name])})
        return metrics


def proxy_batch(data: Any, batch_size: int, device: str) -> tuple[Any, Any]:
    """The fixed proxy batch: ``batch_size`` training examples drawn with BATCH_SEED (all of them when
    the split is smaller), as tensors on ``device``."""
    import numpy as np
    import torch

    order = np.random.default_rng(BATCH_SEED).permutation(len(data.y_train))[:batch_size]
    index = np.sort(order)
    x = torch.from_numpy(data.x_train[index]).float().to(device)
    y = torch.from_numpy(data.y_train[index]).long().to(device)
    return x, y


__all__ = ["ProxyConfig", "ProxyEvaluator", "proxy_batch"]
