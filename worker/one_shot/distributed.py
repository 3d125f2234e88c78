"""Training one supernet on several devices of a worker: DistributedDataParallel, one process
per device of ``SCION_SUPERNET_DEVICES``. ``Parallel()`` is the plain path: one process.

The trial's own process is rank 0: it alone reports epochs and writes the checkpoint. The other
ranks run in processes started with ``python -m worker.one_shot.distributed`` (a Celery pool
process is daemonic and may not fork children of its own), rendezvous through a file, train the
same method on their shard of every batch and exit with it; if rank 0 ends early (a stop
request, a failure) they are killed. Every rank draws the same paths (same seed), so DDP only has
to average the weights' gradients; what DDP does not see (DARTS' architecture gradients) goes
through ``average``, and ENAS' controller is trained identically on every rank. At the end the
ranks check that their weights agree.
"""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from scion.settings import get_settings
from worker.training.trainer import pick_device

T = TypeVar("T")
# How long a rank waits in a collective for the others (a rank that died leaves the rest waiting).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
HELPERS_EXIT_SECONDS = 60.0  # after rank 0 finished, for the others to leave


class Parallel:
    """One process training alone: its model is the supernet, its shard every batch whole."""

    rank, processes = 0, 1

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.processes

    def wrap(self, supernet: nn.Module) -> nn.Module:
        return supernet

    def average(self, tensors: list[Tensor]) -> list[Tensor]:
        """Gradients computed outside DistributedDataParallel, averaged over the processes."""
        return tensors

    def check_agree(self, tensors: Iterable[Tensor]) -> None:
        """Raise if the processes' copies of ``tensors`` differ."""


class DataParallel(Parallel):
    """Rank ``rank`` of ``len(devices)`` processes, joined through the file ``rendezvous``."""

    def __init__(self, rank: int, devices: list[str], rendezvous: Path) -> None:
        self.rank, self.processes = rank, len(devices)
        self.device = torch.device(devices[rank])
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init_process_group(
            "nccl" if self.device.type == "cuda" else "gloo", init_method=rendezvous.resolve().as_uri(),
            rank=rank, world_size=self.processes, timeout=COLLECTIVE_TIMEOUT,
        )

    def wrap(self, supernet: nn.Module) -> nn.Module:
        # a path leaves most of the supernet unused; every rank takes the same path
        return DistributedDataParallel(
            supernet, device_ids=[self.device] if self.device.type == "cuda" else None, find_unused_parameters=True
        )

    def average(self, tensors: list[Tensor]) -> list[Tensor]:
        for tensor in tensors:
            dist.all_reduce(tensor)
            tensor.div_(self.processes)
        return tensors

    def check_agree(self, tensors: Iterable[Tensor]) -> None:
        sums = torch.stack([t.detach().double().sum().to(self.device) for t in tensors])  # NCCL: on the device
        gathered = [torch.empty_like(sums) for _ in range(self.processes)]
        dist.all_gather(gathered, sums)
        if not all(torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError("the supernet's replicas diverged across its devices")

    def close(self, finished: bool) -> None:
        """Leave the group: after a finished training only once every rank has (a rank tearing its
        connections down while another still uses them aborts that one), after a failure at once
        (the other ranks are killed, or time out)."""
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def supernet_devices(own: str) -> list[str]:
    """The devices a supernet trial trains on: ``SCION_SUPERNET_DEVICES``, else the worker's own."""
    named = [d.strip() for d in get_settings().supernet_devices.split(",") if d.strip()]
    return [pick_device(d) for d in named] or [own]


Train = Callable[..., T]  # train(device, parallel, ctx, *args): one rank's training


def run_parallel(devices: list[str], train: Train[T], ctx: Any, *args: Any) -> T:
    """``train(device, parallel, ctx, *args)`` on every device, DistributedDataParallel when there
    are several; rank 0's result. ``train`` must be a module-level function and ``args``
    picklable: the other ranks run in processes of their own, with ``ctx`` None."""
    if len(devices) == 1:
        return train(devices[0], Parallel(), ctx, *args)
    folder = Path(tempfile.mkdtemp(prefix="scion-ddp-"))
    rendezvous = folder / "rendezvous"
    helpers = []
    try:
        for rank in range(1, len(devices)):
            job = folder / f"rank{rank}.pickle"
            job.write_bytes(pickle.dumps((train, rank, devices, rendezvous, torch.get_num_threads(), args)))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            helpers.append(subprocess.Popen([sys.executable, "-m", __name__, str(job)], env=env))
        parallel, finished = DataParallel(0, devices, rendezvous), False
        try:
            result = train(devices[0], parallel, ctx, *args)
            finished = True
        finally:
            parallel.close(finished)
        for helper in helpers:
            if helper.wait(HELPERS_EXIT_SECONDS) != 0:
                raise RuntimeError(f"a supernet training process exited with {helper.returncode}")
        return result
    finally:
        for helper in helpers:
            if helper.poll() is None:
                helper.kill()
                helper.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _rank_main(job: Path) -> None:
    train, rank, devices, rendezvous, threads, args = pickle.loads(job.read_bytes())
    torch.set_num_threads(threads)
    parallel, finished = DataParallel(rank, devices, rendezvous), False
    try:
        train(devices[rank], parallel, None, *args)
        finished = True
    finally:
        parallel.close(finished)


__all__ = ["DataParallel", "Parallel", "run_parallel", "supernet_devices"]


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
