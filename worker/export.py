"""Exporting a trained trial's network as ONNX, TorchScript or a bare state_dict.

The network is rebuilt from the job's space config and the trial's architecture (``space.build``
with the dataset's input shape and class count), the checkpoint's weights are loaded on the CPU
and the format is written into the artifact store (``storage.artifacts``) through a temporary
name and an atomic rename, so a reader never sees half a file and two workers exporting the same
trial only duplicate work.

This runs in a worker, never in the API, which imports no torch: the API serves an export that is
already in the store and otherwise sends the ``scion.export_model`` task (``export_trial``) and
waits a bounded time for the file, or for the failure this module records in its place (no
weights, a network that cannot be rebuilt); see ``api/routes/artifacts.py``.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scion.configs.datasets import declared_signature, stored_dataset
from scion.errors import Conflict
from scion.spec import architecture_record, weightless
from spaces import make_space
from storage import artifacts
from storage import repository as repo
from storage.db import session_scope
from worker.outcomes import TrialFailed
from worker.training.datasets import DATASETS, load_dataset

log = logging.getLogger(__name__)


class ExportFailed(Conflict):
    """A trial's network cannot be exported; the message says why and what is available instead."""


class NoWeights(ExportFailed):
    """The trial has no trained weights (its evaluator keeps none, or they are not in the store)."""


# ---------------------------------------------------------------- what a trial's network is


def signature(spec: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """(input_shape, num_classes) the network was built for. A file dataset knows them only from
    its files, which this worker must then be able to read (below one of its data roots)."""
    known = declared_signature(spec)
    if known is not None:
        return known
    raw = stored_dataset(spec)
    if raw is None:
        raise NoWeights(f"evaluator {spec['evaluator']['type']!r} names no dataset to build the network for")
    try:
        data = load_dataset(DATASETS[raw["type"]].config.model_validate(raw))
    except (TrialFailed, ValidationError, KeyError) as exc:
        raise ExportFailed(f"cannot tell the network's input shape: {exc} (the dataset's files must be "
                           "readable by the worker that exports a network trained on them)") from None
    return tuple(data.input_shape), int(data.num_classes)


@dataclass(frozen=True)
class Trained:
    model: Any  # torch.nn.Module on the CPU, in eval mode
    arch: Any
    arch_key: str
    input_shape: tuple[int, ...]
    num_classes: int


def build(spec: dict[str, Any], arch: Any) -> Trained:
    """The job's network for ``arch``, freshly initialised (on the CPU, in eval mode)."""
    space = make_space(spec["space"])
    arch = space.validate(arch)
    shape, classes = signature(spec)
    return Trained(space.build(arch, shape, classes).eval(), arch, space.key(arch), shape, classes)


def load_trained(spec: dict[str, Any], arch: Any, checkpoint: Path) -> Trained:
    """The job's network for ``arch`` with the checkpoint's weights (on the CPU, in eval mode)."""
    import torch

    trained = build(spec, arch)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    trained.model.load_state_dict(state.get("model", state))  # a worker's checkpoint, or bare weights
    return trained


# ---------------------------------------------------------------- writing the formats


def _example(shape: tuple[int, ...], batch: int = 2) -> Any:
    import torch

    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))


def _write_state_dict(model: Any, shape: tuple[int, ...], path: Path) -> None:
    import torch

    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)


def _write_torchscript(model: Any, shape: tuple[int, ...], path: Path) -> None:
    import torch

    with torch.no_grad():
        traced = torch.jit.trace(model, _example(shape), check_trace=False)
    torch.jit.save(traced, str(path))


def _write_onnx(model: Any, shape: tuple[int, ...], path: Path) -> None:
    import torch

    kwargs: dict[str, Any] = dict(
        input_names=["input"], output_names=["logits"], opset_version=artifacts.ONNX_OPSET, do_constant_folding=True,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: no onnxscript needed, dynamic_axes honoured
    with torch.no_grad():
        torch.onnx.export(model, (_example(shape),), str(path), **kwargs)


_WRITERS: dict[str, Callable[[Any, tuple[int, ...], Path], None]] = {
    "onnx": _write_onnx, "torchscript": _write_torchscript, "state_dict": _write_state_dict,
}
assert set(_WRITERS) == set(artifacts.FORMATS)


def check_exportable(spec: dict[str, Any], job_id: int, number: int, root: Path | None = None) -> str:
    """The version stamp of the completed trial's checkpoint; NoWeights or artifacts.NotStored saying
    why there is none."""
    if (reason := weightless(spec, job_id, number)) is not None:
        raise NoWeights(reason)
    return artifacts.stored_checkpoint(job_id, number, root)


def export(spec: dict[str, Any], job_id: int, number: int, arch: Any, fmt: str, root: Path | None = None) -> Path:
    """The completed trial's network in format ``fmt``: exported now, or found in the store.

    Raises NoWeights when the trial has none, ExportFailed when the network cannot be rebuilt,
    KeyError for an unknown format."""
    if fmt not in artifacts.FORMATS:
        raise KeyError(f"unknown format {fmt!r}; allowed: {', '.join(artifacts.FORMATS)}")
    stamp = check_exportable(spec, job_id, number, root)
    target = artifacts.export_path(job_id, number, fmt, stamp, root)
    if target.exists():
        return target
    for stale in artifacts.stale_exports(job_id, number, fmt, stamp, root):  # of weights since replaced
        stale.unlink(missing_ok=True)
    trained = load_trained(spec, arch, artifacts.checkpoint_path(job_id, number, root))
    record = architecture_record(spec, job_id, number, trained.arch, trained.arch_key,
                                           (trained.input_shape, trained.num_classes))
    artifacts.write_json(artifacts.record_path(job_id, number, root), record)
    with warnings.catch_warnings():  # torch.jit and the TorchScript ONNX exporter are deprecated, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # last: the API answers as soon as this file appears, and finds the store as it should be
        artifacts.write_atomic(target, lambda p: _WRITERS[fmt](trained.model, trained.input_shape, p))
    return target


def export_trial(job_id: int, number: int, fmt: str, request: str) -> Path | None:
    """What the ``scion.export_model`` task does: export a completed trial's network into the store,
    or record there, for ``request``, why it cannot be (the API that sent it waits for either).
    Idempotent: an export already in the store is returned as it is. Does nothing for a trial that
    is missing or not completed: the API answers those itself from the database."""
    with session_scope() as session:
        trial = repo.get_trial(session, job_id=job_id, number=number)
        if trial is None or trial.status != "completed":
            return None
        arch, spec = trial.arch, repo.job_spec(session, job_id=job_id)
    try:
        return export(spec, job_id, number, arch, fmt)
    except ExportFailed as exc:
        reason = str(exc)
    except Exception as exc:  # a network that builds but does not load or trace: the user learns why
        log.exception("exporting trial %s of job %s as %s failed", number, job_id, fmt)
        reason = f"trial {number} of job {job_id} cannot be exported as {fmt}: {type(exc).__name__}: {exc}"
    artifacts.record_failure(job_id, number, fmt, request, reason)
    return None


__all__ = [
    "ExportFailed", "NoWeights", "Trained", "build", "check_exportable", "export", "export_trial", "load_trained",
    "signature",
]
