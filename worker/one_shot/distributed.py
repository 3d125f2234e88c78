"""Training one supernet on several devices of a worker: DistributedDataParallel, one process
per device (``SCION_SUPERNET_DEVICES``). ``Parallel()`` is the plain path, one process."""
from __future__ import annotations

from torch import Tensor, nn


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


__all__ = ["Parallel"]
