"""The ``proxy`` evaluator: score each candidate untrained, with zero-cost proxies.

Builds the network with the same seeded initial weights the ``train`` evaluator would use, measures
its costs (parameters, FLOPs, latency: the same functions as ``train``, so constraints apply before
anything else is spent), then computes the chosen proxies (worker.training.proxies) on one fixed
batch of the dataset's training split: the same examples for every candidate, so that scores are
comparable. A fraction of a second per small network; no training, no checkpoint.

How well each proxy ranks trained accuracy is measured by ``python -m bench.proxies`` (see
docs/benchmarks.md, "Zero-cost proxies").
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from scion.budgets import network_over_limits
from scion.configs.evaluators import ProxyConfig
from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator
from worker.evaluators.train import arch_seed
from worker.outcomes import TrialFailed
from worker.training.cost import measure_costs
from worker.training.datasets import DATASETS, load_dataset
from worker.training.proxies import compute
from worker.training.trainer import run_oom_guarded

DatasetConfig = DATASETS.config_union()
BATCH_SEED = 0  # which training examples make the proxy batch: fixed, never the job's seed


class ProxyEvaluator(Evaluator):
    Config = ProxyConfig
    config: ProxyConfig

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        started = time.perf_counter()
        cfg = self.config
        data = load_dataset(cfg.dataset)
        if too_big := network_over_limits(space, arch, data.input_shape, data.num_classes, cfg.batch_size):
            raise TrialFailed(too_big)
        seed = arch_seed(space.key(arch))

        def run() -> dict[str, Any]:
            torch.manual_seed(seed)  # the initial weights the train evaluator would start from
            model = space.build(arch, data.input_shape, data.num_classes).to(ctx.device)
            costs = measure_costs(model, data.input_shape, cfg.batch_size, ctx.device, cfg.latency_repeats)
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
    order = np.random.default_rng(BATCH_SEED).permutation(len(data.y_train))[:batch_size]
    index = np.sort(order)
    x = torch.from_numpy(data.x_train[index]).float().to(device)
    y = torch.from_numpy(data.y_train[index]).long().to(device)
    return x, y


__all__ = ["ProxyEvaluator", "proxy_batch"]
