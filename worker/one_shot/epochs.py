"""The epoch loop every one-shot method runs, with its checkpoint after every epoch.

A supernet trains for hours, so a killed attempt must not start over: after each epoch the
supernet's weights, the method's state (optimisers, learning-rate schedule, architecture weights
or controller, path-sampling generator), torch's generators, the epoch and the time spent are
written atomically to the trial's checkpoint, before the epoch is reported. A later attempt
finds it and continues from the next epoch, so the epochs trained in total exceed the planned
ones by at most the one interrupted; on CPU the result is the uninterrupted run's, bit for bit.
A method may end training before its planned epochs (``Method.done``, DARTS-ES): the trial's
history then ends at the epoch it stopped after, and so does any later attempt's.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from worker.evaluators.base import EvalContext
from worker.one_shot.method import Method
from worker.outcomes import TrialFailed
from worker.training.checkpoint import rng_state, save_checkpoint, set_rng_state


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A supernet trial's checkpoint (tensors on ``device``): ``supernet`` (its state_dict),
    ``epoch``, ``method``, ``rng``, ``seconds`` and ``metrics`` (the last epoch's)."""
    return torch.load(path, map_location=device, weights_only=True)


def supernet_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """The trained supernet's state_dict from a supernet trial's checkpoint."""
    return load_checkpoint(path, device)["supernet"]


def run_epochs(method: Method, ctx: EvalContext | None, checkpoint: Path, epochs: int) -> dict[str, Any]:
    """Train ``method`` for ``epochs``, resuming from ``checkpoint`` when an earlier attempt left
    one, or earlier once ``method.done()``; return val_acc (the last epoch's), train_seconds (all
    attempts), epochs_trained (the last epoch trained, fewer than ``epochs`` when the method
    stopped early) and candidates.

    ``ctx.report`` is called after every epoch with train_loss, train_acc, val_acc, epoch_seconds
    and the method's own metrics; a non-finite loss raises TrialFailed before anything is saved.
    When several processes train one supernet, those other than the trial's own (``ctx`` None)
    neither save nor report.
    """
    started = time.perf_counter()
    trained, earlier, metrics = 0, 0.0, {}
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, method.device)
        method.supernet.load_state_dict(state["supernet"])
        method.load_state_dict(state["method"])
        set_rng_state(state["rng"])
        trained, earlier, metrics = int(state["epoch"]), float(state["seconds"]), dict(state["metrics"])
    method.model.train()
    for epoch in range(trained + 1, epochs + 1):
        if method.done():
            break
        epoch_started = time.perf_counter()
        epoch_metrics = method.train_epoch(epoch)
        if not math.isfinite(epoch_metrics["train_loss"]):
            raise TrialFailed(f"supernet loss became NaN at epoch {epoch}")
        metrics = {**epoch_metrics, "val_acc": method.val_acc(method.epoch_arch(epoch)), **method.epoch_metrics(epoch)}
        metrics["epoch_seconds"] = time.perf_counter() - epoch_started
        if ctx is not None:
            save_checkpoint(checkpoint, {
                "supernet": method.supernet.state_dict(), "method": method.state_dict(), "rng": rng_state(),
                "epoch": epoch, "seconds": earlier + time.perf_counter() - started, "metrics": metrics,
            })
            ctx.report(epoch, metrics)
        trained = epoch
    method.parallel.check_agree(method.replicated())
    return {
        "val_acc": float(metrics.get("val_acc", 0.0)),
        "train_seconds": earlier + time.perf_counter() - started,
        "epochs_trained": trained,
        "candidates": method.candidates(),
    }


__all__ = ["load_checkpoint", "run_epochs", "supernet_weights"]
