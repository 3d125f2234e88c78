"""GPU utilisation with one against several trials per GPU (docs/gpu.md explains the method).

Small trials (digits, MNIST-1D) leave a GPU mostly idle: kernel launches, Python and the
optimiser step dominate, so one process rarely keeps it busy. Running several worker processes on
the same GPU (``scion worker --concurrency``) should fill the gaps. For each number of trials per
GPU this runs a training job through ``bench.dispatch.run_job`` with every worker process pinned
to one GPU (``SCION_WORKER_DEVICE=cuda:N``) and samples that GPU with ``nvidia-smi`` every
``interval_ms`` while the measured job runs: mean and median utilisation (the share of time a
kernel was running), the most memory used, and trials per second.

It measures only where CUDA and ``nvidia-smi`` are there; elsewhere ``NoGpu`` says why and nothing
is reported as measured. By default the stack is embedded (SQLite, filesystem broker), so a GPU
machine needs no services; ``database_url`` / ``broker`` point it at PostgreSQL / Redis instead.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.dispatch import run_job
from client.stack import LocalStack

QUERY = "utilization.gpu,memory.used"


class NoGpu(RuntimeError):
    """This machine cannot run the GPU benchmark (no CUDA device, or no nvidia-smi)."""


def check_gpu(index: int) -> str:
    """The GPU's name, or NoGpu saying what is missing."""
    import torch

    if not torch.cuda.is_available():
        raise NoGpu(f"no CUDA GPU visible to torch {torch.__version__} here: nothing measured")
    if index >= torch.cuda.device_count():
        raise NoGpu(f"GPU {index} does not exist here ({torch.cuda.device_count()} visible): nothing measured")
    if shutil.which("nvidia-smi") is None:
        raise NoGpu("nvidia-smi is not on PATH, so utilisation cannot be sampled: nothing measured")
    return torch.cuda.get_device_name(index)


def parse_samples(lines: list[str]) -> list[tuple[float, float]]:
    """(utilisation %, memory used MiB) from ``nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv,noheader,nounits`` lines; lines a GPU reports as [N/A] or cut short are skipped."""
    samples = []
    for line in lines:
        try:
            utilisation, memory = (float(v) for v in line.split(","))
        except ValueError:
            continue
        samples.append((utilisation, memory))
    return samples


@contextmanager
def gpu_sampler(index: int, interval_ms: int) -> Iterator[dict[str, Any]]:
    """Samples GPU ``index`` while the block runs; yields a dict filled with the figures on exit."""
    figures: dict[str, Any] = {}
    sampler = subprocess.Popen(
        ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", f"--id={index}",
         f"--loop-ms={interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield figures
    finally:
        sampler.terminate()
        output, _ = sampler.communicate(timeout=10)
    samples = parse_samples(output.splitlines())
    utilisation = [u for u, _ in samples]
    figures.update(
        gpu_samples=len(samples),
        gpu_utilisation_mean=round(statistics.fmean(utilisation), 1) if samples else None,
        gpu_utilisation_median=round(statistics.median(utilisation), 1) if samples else None,
        gpu_memory_max_mib=max(m for _, m in samples) if samples else None,
    )


def training_spec(dataset: str, trials: int, parallel: int, epochs: int) -> dict[str, Any]:
    return {"name": f"gpu-{dataset}", "space": {"type": "nb201", "channels": 16, "cells_per_stage": 2},
            "strategy": {"type": "random"},
            "evaluator": {"type": "train", "dataset": dataset, "epochs": epochs, "batch_size": 128,
                          "latency_repeats": 1},
            "budget": {"max_trials": trials, "max_parallel": parallel}, "seed": 0}


@contextmanager
def pinned_workers(device: str) -> Iterator[None]:
    """Worker processes started meanwhile all train on ``device``."""
    saved = os.environ.get("SCION_WORKER_DEVICE")
    os.environ["SCION_WORKER_DEVICE"] = device
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SCION_WORKER_DEVICE")
        else:
            os.environ["SCION_WORKER_DEVICE"] = saved


def run(*, gpu: int = 0, per_gpu: tuple[int, ...] = (1, 2, 4), datasets: tuple[str, ...] = ("digits", "mnist1d"),
        trials_per_process: int = 6, epochs: int = 3, interval_ms: int = 100, database_url: str | None = None,
        broker: str | None = None) -> dict[str, Any]:
    name = check_gpu(gpu)

    def sample(stack: LocalStack):
        return gpu_sampler(gpu, interval_ms)

    results = []
    for dataset in datasets:
        for n in per_gpu:
            spec = training_spec(dataset, trials_per_process * n, 2 * n, epochs)
            with tempfile.TemporaryDirectory() as home, pinned_workers(f"cuda:{gpu}"):
                db_url = database_url or f"sqlite:///{home}/bench.db"
                figures = run_job(db_url, broker, spec, n, warmup=training_spec(dataset, n, n, 1), probe=sample)
            results.append({"dataset": dataset, "trials_per_gpu": n, **figures})
    for r in results:
        one = next(b for b in results if b["dataset"] == r["dataset"] and b["trials_per_gpu"] == per_gpu[0])
        r["throughput_vs_fewest"] = round(r["trials_per_s"] / one["trials_per_s"], 2)
        r["utilisation_vs_fewest"] = (round(r["gpu_utilisation_mean"] / one["gpu_utilisation_mean"], 2)
                                      if r["gpu_utilisation_mean"] and one["gpu_utilisation_mean"] else None)
    return {"measured": True, "gpu": name, "gpu_index": gpu, "results": results,
            "settings": {"per_gpu": list(per_gpu), "datasets": list(datasets), "epochs": epochs,
                         "trials_per_process": trials_per_process, "interval_ms": interval_ms,
                         "network": training_spec("digits", 0, 0, 0)["space"]}}
