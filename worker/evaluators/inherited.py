"""Scoring a candidate with the weights it inherits from a trained supernet (phase ``search`` of
a one-shot job): no training, so each trial takes about as long as a validation pass.

Not a user-selectable evaluator (it is not in ``EVALUATORS``): ``worker/runner.py`` runs it for a
one-shot job's search trials, naming the supernet trial's checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scion.configs.evaluators import TrainConfig
from scion.configs.one_shot import OneShotConfig
from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator
from worker.evaluators.train import arch_seed
from worker.one_shot.epochs import supernet_weights
from worker.outcomes import TrialFailed
from worker.training.cost import measure_costs
from worker.training.datasets import load_dataset
from worker.training.trainer import Split, accuracy, device_tensors, run_oom_guarded

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
RECALIBRATION_SEED = 0  # which training batches re-estimate BatchNorm statistics: the same for every candidate

# The supernet this worker process last loaded, by (checkpoint path, its modification time and
# size, device): a search phase's trials all read the same one, and loading it per trial would
# cost more than scoring. One entry, so a worker moving on to another job frees the last.
_SUPERNETS: dict[tuple[str, int, int, str], nn.Module] = {}


def loaded_supernet(space: SearchSpace, checkpoint: Path, input_shape: tuple[int, ...], num_classes: int,
                    device: str) -> nn.Module:
    """The trained supernet in ``checkpoint``, loaded once per worker process (again when the file changes)."""
    try:
        stat = checkpoint.stat()
    except FileNotFoundError:
        raise TrialFailed(f"the supernet's checkpoint is missing: {checkpoint}") from None
    key = (str(checkpoint), stat.st_mtime_ns, stat.st_size, device)
    if key not in _SUPERNETS:
        _SUPERNETS.clear()
        supernet = space.supernet(input_shape, num_classes)
        supernet.load_state_dict(supernet_weights(checkpoint))
        _SUPERNETS[key] = supernet.to(device).eval()
    return _SUPERNETS[key]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, train: Split, batches: int, batch_size: int) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``batches``
    training batches forwarded in train mode (momentum None), as SPOS does before scoring a path:
    the supernet's statistics mix every path's. The model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    epoch = 0
    while batches > 0:
        epoch += 1
        for x, _ in train.batches(batch_size, RECALIBRATION_SEED, epoch):
            model(x)
            batches -= 1
            if batches == 0:
                break
    model.eval()


class InheritedEvaluator(Evaluator):
    """``evaluate`` returns val_acc (inherited weights, BatchNorm recalibrated), the costs the
    ``train`` evaluator measures (params, flops, latency_ms, latency_ms_batch) and train_seconds
    (the trial's wall time)."""

    def __init__(self, one_shot: OneShotConfig, train: TrainConfig, checkpoint: Path) -> None:
        super().__init__(train)
        self.one_shot, self.train, self.checkpoint = one_shot, train, checkpoint

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        started = time.perf_counter()
        train, method = self.train, self.one_shot.method
        data = load_dataset(train.dataset)
        device = torch.device(ctx.device)
        autocast = train.amp and device.type == "cuda"

        def run() -> dict[str, Any]:
            supernet = loaded_supernet(space, self.checkpoint, data.input_shape, data.num_classes, ctx.device)
            torch.manual_seed(arch_seed(space.key(arch)))
            model = space.build(arch, data.input_shape, data.num_classes).to(device)
            model.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
            costs = measure_costs(model, data.input_shape, train.batch_size, ctx.device, train.latency_repeats)
            ctx.check_costs(costs)
            x_train, y_train, x_val, y_val, _, _ = device_tensors(data, device)
            if method.recalibration_batches:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    recalibrate_batchnorm(model, Split(x_train, y_train), method.recalibration_batches,
                                          method.batch_size)
            return {**costs, "val_acc": accuracy(model, x_val, y_val, autocast)}

        metrics = run_oom_guarded(run)
        metrics["train_seconds"] = time.perf_counter() - started
        return metrics


__all__ = ["InheritedEvaluator", "loaded_supernet", "recalibrate_batchnorm"]
