"""A small, fast training loop for candidate networks on in-memory datasets.

The whole dataset lives on the device as tensors and batches are index slices, so that tiny
networks are not bottlenecked by a DataLoader. The schedule is SGD with cosine annealing stepped
once per batch (from ``lr`` down to 0 at the end of the last epoch), cross entropy, gradient
clipping at norm 5, and bf16 autocast on CUDA when ``amp`` is set.
"""
from __future__ import annotations

import gc
import math
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from worker.outcomes import TrialFailed
from worker.training.augment import augment_batch, epoch_generator
from worker.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from worker.training.datasets import Dataset

OnEpoch = Callable[[int, dict[str, float]], None]
GRAD_CLIP = 5.0
EVAL_BATCH = 1024


def pick_device(setting: str) -> str:
    """Turn the ``worker_device`` setting into a torch device string."""
    s = setting.strip().lower()
    if s == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if s in ("cpu", "cuda") or (s.startswith("cuda:") and s[5:].isdigit()):
        return s
    raise ValueError(f"unknown device {setting!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")


def run_oom_guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a CUDA out-of-memory error becomes TrialFailed after freeing the cache.

    The cache is emptied after the ``except`` block, once the traceback (which holds the failed
    step's tensors) has been released.
    """
    try:
        return fn(*args, **kwargs)
    except torch.cuda.OutOfMemoryError as exc:
        message = (str(exc).splitlines() or ["CUDA out of memory"])[0]
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    raise TrialFailed(f"out of memory: {message}")


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Slice bounds covering ``n``; a trailing batch of one is dropped (BatchNorm cannot train
    on a single example)."""
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


def _epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> Tensor:
    """The epoch's shuffled example indices, on ``device``: seeded per epoch, so a run resumed from a
    checkpoint sees the same batches as an uninterrupted one."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 10_007 + epoch)).to(device)


@dataclass(frozen=True)
class Split:
    """Examples and labels on one device, batched per epoch the one way every training loop here
    batches them (the trainer's, the one-shot methods', BatchNorm recalibration's)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def steps(self, batch_size: int) -> int:
        """Batches per epoch (a trailing batch of one is dropped: BatchNorm cannot train on it)."""
        return len(_batch_bounds(len(self), batch_size))

    def batches(
        self, batch_size: int, seed: int, epoch: int, augment: bool = False, shard: tuple[int, int] = (0, 1),
        *, generator: torch.Generator | None = None, start: int = 0,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's shuffled batches; images randomly cropped and flipped when ``augment`` (drawn from
        ``generator`` if given, else the epoch's own). ``shard`` (rank, processes): the part of every
        batch one of several processes takes. ``start``: the batches before it are left out (an epoch
        resumed part way, ``generator`` then in the state it had there)."""
        order = _epoch_order(len(self), seed, epoch, self.y.device)
        if augment and generator is None:
            generator = epoch_generator(self.y.device, seed, epoch)
        rank, processes = shard
        for first, end in _batch_bounds(len(self), batch_size)[start:]:
            index = order[first:end]
            x = self.x[index]
            x = augment_batch(x, generator) if augment else x
            yield x[rank::processes], self.y[index][rank::processes]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, autocast: bool) -> float:
    """Top-1 accuracy (%) in eval mode; the model is left in train mode."""
    model.eval()
    correct = 0
    try:
        for start in range(0, len(y), EVAL_BATCH):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(x[start : start + EVAL_BATCH])
            correct += int((logits.argmax(1) == y[start : start + EVAL_BATCH]).sum())
    finally:
        model.train()
    return 100.0 * correct / max(len(y), 1)


def train(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = True,
    device: str = "cpu",
    amp: bool = True,
    seed: int = 0,
    on_epoch: OnEpoch | None = None,
    schedule_epochs: int | None = None,
    resume: Path | None = None,
    checkpoint: Path | None = None,
    continue_checkpoint: bool = False,
    checkpoint_seconds: float = math.inf,
) -> dict[str, float]:
    """Train ``model`` (already on ``device``) and return train_loss, val_acc, test_acc (%) and
    train_seconds.

    ``on_epoch(epoch, metrics)`` is called after every epoch (1-based) with train_loss,
    train_acc, val_acc and epoch_seconds; whatever it raises (e.g. TrialStopped) propagates.
    A non-finite loss raises TrialFailed at once; CUDA out of memory raises TrialFailed.

    Multi-fidelity training continues rather than restarts: ``schedule_epochs`` fixes the cosine
    schedule's length (the largest budget), ``resume`` names a checkpoint written by an earlier,
    shorter run of the same network (training goes on from its epoch up to ``epochs``), and
    ``checkpoint`` is where this run leaves its own weights and optimiser state.

    A run outlives its process: its whole state (weights, optimiser, schedule, torch's generators,
    the epoch, and part way through an epoch the batches done, the epoch's sums and the augmentation
    generator) goes to ``checkpoint`` after every epoch, before the epoch is reported, and within an
    epoch once ``checkpoint_seconds`` have passed since the last save. With ``continue_checkpoint``
    (a later attempt of the same run) training goes on from the state there, so that on CPU the
    final weights are the uninterrupted run's, bit for bit.
    """
    return run_oom_guarded(
        _train, model, data, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
        weight_decay=weight_decay, nesterov=nesterov, device=device, amp=amp, seed=seed,
        on_epoch=on_epoch, schedule_epochs=schedule_epochs or epochs, resume=resume, checkpoint=checkpoint,
        continue_checkpoint=continue_checkpoint, checkpoint_seconds=checkpoint_seconds,
    )


def _train(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    device: str,
    amp: bool,
    seed: int,
    on_epoch: OnEpoch | None,
    schedule_epochs: int,
    resume: Path | None,
    checkpoint: Path | None,
    continue_checkpoint: bool,
    checkpoint_seconds: float,
) -> dict[str, float]:
    started = time.perf_counter()
    dev = torch.device(device)
    autocast = amp and dev.type == "cuda"

    x_train, y_train, x_val, y_val, x_test, y_test = device_tensors(data, dev)
    train_split = Split(x_train, y_train)

    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov and momentum > 0,
    )
    steps = schedule_epochs * train_split.steps(batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    criterion = nn.CrossEntropyLoss()
    augment = getattr(data, "augment", False)
    done, earlier, within = 0, 0.0, None
    train_loss, val_acc = math.nan, 0.0
    if continue_checkpoint and checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=dev, weights_only=True)
        set_rng_state(state["rng"])
        earlier, within = float(state["seconds"]), state["within"]
        train_loss, val_acc = state["last"]["train_loss"], state["last"]["val_acc"]
    elif resume is not None:
        state = torch.load(resume, map_location=dev, weights_only=True)
    else:
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        done = int(state["epoch"])
    saved_at = time.monotonic()

    def save(epoch: int, part: dict[str, Any] | None = None) -> None:
        nonlocal saved_at
        save_checkpoint(checkpoint, {  # type: ignore[arg-type]
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch, "rng": rng_state(), "seconds": earlier + time.perf_counter() - started,
            "last": {"train_loss": train_loss, "val_acc": val_acc}, "within": part,
        })
        saved_at = time.monotonic()

    model.train()
    for epoch in range(done + 1, epochs + 1):
        epoch_start = time.perf_counter()
        # summed on the device: no host sync per step; a NaN is caught at the end of the epoch
        loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        seen, skip = 0, 0
        # images are cropped and flipped at random per batch (worker.training.augment)
        generator = epoch_generator(dev, seed, epoch) if augment else None
        if within is not None:  # this epoch was saved part way
            skip, seen = int(within["batches"]), int(within["seen"])
            loss_sum, correct = within["loss_sum"].to(dev), within["correct"].to(dev)
            if generator is not None:
                generator.set_state(within["augment"])
            within = None
        batches = train_split.batches(batch_size, seed, epoch, augment, generator=generator, start=skip)
        for step, (xb, yb) in enumerate(batches, start=skip + 1):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(xb)
                loss = criterion(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
            if checkpoint is not None and time.monotonic() - saved_at >= checkpoint_seconds:
                save(epoch - 1, {"batches": step, "seen": seen, "loss_sum": loss_sum, "correct": correct,
                                 "augment": generator.get_state() if generator is not None else None})
        train_loss = float(loss_sum) / seen
        if not math.isfinite(train_loss):
            raise TrialFailed(f"loss became NaN at epoch {epoch}")
        val_acc = accuracy(model, x_val, y_val, autocast)
        _sync(dev)
        if checkpoint is not None:
            save(epoch)
        if on_epoch is not None:
            on_epoch(
                epoch,
                {
                    "train_loss": train_loss,
                    "train_acc": 100.0 * int(correct) / seen,
                    "val_acc": val_acc,
                    "epoch_seconds": time.perf_counter() - epoch_start,
                },
            )

    if checkpoint is not None and done >= epochs:  # nothing trained here: the weights continued from
        save(done)
    test_acc = accuracy(model, x_test, y_test, autocast)
    _sync(dev)
    return {
        "train_loss": train_loss,
        "val_acc": val_acc,
        "test_acc": test_acc,
        "train_seconds": earlier + time.perf_counter() - started,
    }


_DEVICE_DATA: dict[tuple[int, str], tuple[Tensor, ...]] = {}


def device_tensors(data: Dataset, device: torch.device) -> tuple[Tensor, ...]:
    """The dataset's six arrays as tensors on ``device``, copied once per worker process (through
    pinned memory on CUDA) and reused by every later trial on the same data, for as long as the
    dataset itself is kept (worker.training.datasets): its copies go with it."""
    key = (id(data), str(device))
    if key not in _DEVICE_DATA:
        arrays = (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
        tensors = []
        for array in arrays:
            host = torch.from_numpy(array.copy())  # the cached arrays are read-only
            host = host.float() if host.is_floating_point() else host.long()
            if device.type == "cuda":
                host = host.pin_memory()
            tensors.append(host.to(device, non_blocking=True))
        _DEVICE_DATA[key] = tuple(tensors)
        weakref.finalize(data, _DEVICE_DATA.pop, key, None)  # before its id can be reused
    return _DEVICE_DATA[key]


__all__ = [
    "GRAD_CLIP", "Split", "accuracy", "device_tensors", "pick_device", "run_oom_guarded", "train",
]
