"""Training efficiency: Scion's trainer against a minimal hand-written PyTorch loop.

Both train the same network (same initial weights) on the same in-memory data with the same
batch size, optimiser, schedule and gradient clipping, and evaluate validation accuracy once
per epoch, in the same process, alternating runs so that machine noise hits both alike. The
ratio of samples per second is what the train evaluator costs on top of the bare loop.
"""
from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spaces import SPACES, make_space
from worker.training.datasets import load_dataset
from worker.training.trainer import GRAD_CLIP, pick_device, train

ARCH = ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "skip_connect", "nor_conv_3x3"]


def minimal_loop(model: nn.Module, data, *, epochs: int, batch_size: int, lr: float, device: str) -> float:
    """The loop a person writes by hand: tensors on the device, index slices, SGD + cosine."""
    dev = torch.device(device)
    x, y = torch.from_numpy(data.x_train.copy()).to(dev), torch.from_numpy(data.y_train.copy()).long().to(dev)
    xv, yv = torch.from_numpy(data.x_val.copy()).to(dev), torch.from_numpy(data.y_val.copy()).long().to(dev)
    steps = (len(y) + batch_size - 1) // batch_size
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch)).to(dev)
        for i in range(0, len(y), batch_size):
            index = order[i:i + batch_size]
            if len(index) < 2:
                continue
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.inference_mode():
            (model(xv).argmax(1) == yv).float().mean().item()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - started


def scion_loop(model: nn.Module, data, *, epochs: int, batch_size: int, lr: float, device: str) -> float:
    started = time.perf_counter()
    train(model, data, epochs=epochs, batch_size=batch_size, lr=lr, device=device, amp=device != "cpu", seed=0)
    return time.perf_counter() - started


def measure(dataset: str, channels: int, cells: int, *, epochs: int, batch_size: int, repeats: int,
            device: str) -> dict[str, Any]:
    data = load_dataset(dataset)
    space = make_space(SPACES["nb201"].config(channels=channels, cells_per_stage=cells))
    torch.manual_seed(0)
    initial = space.build(ARCH, data.input_shape, data.num_classes).to(device)
    samples = epochs * len(data.y_train)
    times: dict[str, list[float]] = {"scion": [], "minimal": []}
    for _ in range(repeats + 1):  # the first round warms both up and is discarded
        for name, loop in (("minimal", minimal_loop), ("scion", scion_loop)):
            times[name].append(loop(copy.deepcopy(initial), data, epochs=epochs, batch_size=batch_size,
                                    lr=0.05, device=device))
    rates = {name: samples / statistics.median(ts[1:]) for name, ts in times.items()}
    return {
        "dataset": dataset, "channels": channels, "cells_per_stage": cells, "epochs": epochs,
        "batch_size": batch_size, "device": device, "samples_per_s_scion": round(rates["scion"], 1),
        "samples_per_s_minimal": round(rates["minimal"], 1), "ratio": round(rates["scion"] / rates["minimal"], 3),
    }


def run(*, epochs: int = 2, repeats: int = 3, device: str = "auto", batch_size: int = 64) -> dict[str, Any]:
    device = pick_device(device)
    cases = [("digits", 8, 1), ("digits", 16, 1), ("mnist1d", 8, 1)]
    results = [measure(d, c, n, epochs=epochs, batch_size=batch_size, repeats=repeats, device=device)
               for d, c, n in cases]
    return {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "results": results,
            "min_ratio": min(r["ratio"] for r in results)}


def write(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
