"""What a candidate network costs to run: parameters, forward FLOPs and measured latency.

Measured before training so that a failed or stopped trial still tells how big the network was.
Each function leaves the model in the train/eval mode it found it in.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def count_flops(
    model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device | None = None
) -> int:
    """Forward FLOPs for one example (batch 1) in eval mode, as torch's FlopCounterMode counts
    them: a multiply-add is 2 FLOPs; element-wise ops, pooling and normalisation count 0."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, *input_shape), device=_device_of(model, device))
    counter = FlopCounterMode(display=False)
    with _eval_mode(model), torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    device: str | torch.device | None = None,
    warmup: int = 3,
    repeats: int = 10,
) -> float:
    """Median wall time (ms) of one eval-mode forward pass on a batch of ``batch_size``."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    dev = _device_of(model, device)
    x = torch.randn((batch_size, *input_shape), device=dev)
    times: list[float] = []
    with _eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            _sync(dev)
            start = time.perf_counter()
            model(x)
            _sync(dev)
            times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def measure_costs(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: str, repeats: int
) -> dict[str, float]:
    """The cost metrics a job's constraints may name (``scion.configs.evaluators.COST_METRICS``),
    measured the same way by every evaluator that builds a candidate."""
    return {
        "params": count_params(model),
        "flops": count_flops(model, input_shape, device),
        "latency_ms": measure_latency_ms(model, input_shape, 1, device, repeats=repeats),
        "latency_ms_batch": measure_latency_ms(model, input_shape, batch_size, device, repeats=repeats),
    }


__all__ = ["count_flops", "count_params", "measure_costs", "measure_latency_ms"]
