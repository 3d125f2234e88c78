"""The artifact store: trained weights of ``train``-evaluator trials and their exports.

One directory (``SCION_ARTIFACTS``, default ``SCION_HOME/artifacts``) that every worker and the API
see, on a shared filesystem in production::

    job-{id}/trial-{n}/checkpoint.pt           the worker's checkpoint: model, optimizer, scheduler, epoch
    job-{id}/trial-{n}/export-{stamp}.onnx     exports, made on first download and reused after; the
    job-{id}/trial-{n}/export-{stamp}.torchscript.pt   stamp is the checkpoint's (mtime, size), so a
    job-{id}/trial-{n}/export-{stamp}.state_dict.pt    re-run trial's new weights get new exports (no
                                                       clock comparison across machines)
    job-{id}/trial-{n}/export.json             what the exports were built from (``describe``)

Exporting rebuilds the network from the job's space config and the trial's architecture
(``space.build`` with the dataset's input shape and class count), loads the weights on the CPU
and writes the format through a temporary file and an atomic rename, so a reader never sees
half a file and concurrent exports of the same trial only duplicate work. Torch is imported
inside the functions that need it: importing this module (the API does) costs nothing.
"""
from __future__ import annotations

import inspect
import json
import os
import threading
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scion.configs.datasets import DATASETS
from scion.settings import get_settings

ONNX_OPSET = 17
WEIGHT_EVALUATORS = ("train",)  # evaluators whose completed trials leave a checkpoint


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # of the cached file and of the download's file name
    media_type: str
    summary: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", ".onnx", "application/octet-stream",
                     f"ONNX (opset {ONNX_OPSET}), input 'input', output 'logits', dynamic batch axis"),
        ExportFormat("torchscript", ".torchscript.pt", "application/octet-stream",
                     "TorchScript (traced in eval mode); torch.jit.load(path)"),
        ExportFormat("state_dict", ".state_dict.pt", "application/octet-stream",
                     "the model's weights only; load into space.build(arch, input_shape, num_classes)"),
    )
}


class ArtifactError(Exception):
    """A trial's model cannot be exported; the message says why and what is available instead."""


class NoWeights(ArtifactError):
    """The trial has no trained weights (its evaluator keeps none, or it did not complete)."""


# ---------------------------------------------------------------- where things are


def artifact_root() -> Path:
    return get_settings().artifact_root


def trial_dir(job_id: int, number: int, root: Path | None = None) -> Path:
    return (root or artifact_root()) / f"job-{job_id}" / f"trial-{number}"


def checkpoint_path(job_id: int, number: int, root: Path | None = None) -> Path:
    """Where the worker leaves a trial's checkpoint (``TrialContext.artifact_path``)."""
    return trial_dir(job_id, number, root) / "checkpoint.pt"


def export_path(checkpoint: Path, fmt: str) -> Path:
    """The cached export of this version of the checkpoint (its modification time and size)."""
    stat = checkpoint.stat()
    return checkpoint.with_name(f"export-{stat.st_mtime_ns:x}-{stat.st_size:x}{FORMATS[fmt].suffix}")


def download_name(job_id: int, number: int, fmt: str) -> str:
    return f"scion-job{job_id}-trial{number}{FORMATS[fmt].suffix}"


# ---------------------------------------------------------------- what a trial's network is


def _dataset(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The job's dataset config as stored (not validated again: for a file dataset that would
    read its files), or None when its evaluator has none."""
    raw = (spec.get("evaluator") or {}).get("dataset")
    return {"type": raw} if isinstance(raw, str) else raw


def static_signature(spec: dict[str, Any]) -> tuple[tuple[int, ...], int] | None:
    """(input_shape, num_classes) when the dataset declares them (built-ins), without loading it."""
    raw = _dataset(spec)
    if raw is None or raw.get("type") not in DATASETS:
        return None
    config = DATASETS[raw["type"]].config
    if config.input_shape is None or config.num_classes is None:
        return None
    return tuple(config.input_shape), int(config.num_classes)


def signature(spec: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """(input_shape, num_classes) the network was built for. A file dataset knows them only from
    its files, which this process must then be able to read (below one of its data roots)."""
    known = static_signature(spec)
    if known is not None:
        return known
    raw = _dataset(spec)
    if raw is None:
        raise NoWeights(f"evaluator {spec['evaluator']['type']!r} names no dataset to build the network for")
    from pydantic import ValidationError

    from worker.evaluators.base import TrialFailed
    from worker.training.datasets import load_dataset

    try:
        data = load_dataset(DATASETS[raw["type"]].config.model_validate(raw))
    except (TrialFailed, ValidationError, KeyError) as exc:
        raise ArtifactError(f"cannot tell the network's input shape: {exc} (the dataset's files must be "
                            "readable by the API to export a network trained on them)") from None
    return tuple(data.input_shape), int(data.num_classes)


def describe(spec: dict[str, Any], job_id: int, number: int, arch: Any, arch_key: str,
             root: Path | None = None) -> dict[str, Any]:
    """The architecture as JSON: enough to rebuild the network with ``spaces.make_space(space)
    .build(arch, input_shape, num_classes)``. Never loads data: the input shape is null for a
    file dataset until a first export has recorded it."""
    sidecar = trial_dir(job_id, number, root) / "export.json"
    shape: tuple[int, ...] | None = None
    classes: int | None = None
    if (known := static_signature(spec)) is not None:
        shape, classes = known
    elif sidecar.exists():
        try:
            recorded = json.loads(sidecar.read_text())
            shape, classes = tuple(recorded["input_shape"]), int(recorded["num_classes"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return {
        "job_id": job_id,
        "trial": number,
        "space": spec["space"],
        "arch": arch,
        "arch_key": arch_key,
        "evaluator": spec["evaluator"]["type"],
        "dataset": _dataset(spec),
        "input_shape": list(shape) if shape is not None else None,
        "num_classes": classes,
    }


def has_weights(spec: dict[str, Any], job_id: int, number: int, status: str, root: Path | None = None) -> bool:
    return (spec["evaluator"]["type"] in WEIGHT_EVALUATORS and status == "completed"
            and checkpoint_path(job_id, number, root).exists())


def check_exportable(spec: dict[str, Any], job_id: int, number: int, status: str,
                     root: Path | None = None) -> Path:
    """The trial's checkpoint, or NoWeights saying why there is none."""
    evaluator = spec["evaluator"]["type"]
    architecture = f"GET /v1/jobs/{job_id}/trials/{number}/architecture"
    if evaluator not in WEIGHT_EVALUATORS:
        raise NoWeights(f"trial {number} of job {job_id} was scored by the {evaluator!r} evaluator, which trains no "
                        f"weights; only its architecture can be exported ({architecture}), or trained: submit a "
                        f"retrain job with retrain.from_job {job_id}")
    if status != "completed":
        raise NoWeights(f"trial {number} of job {job_id} is {status}; only a completed trial has trained weights "
                        f"to export (its architecture is at {architecture})")
    checkpoint = checkpoint_path(job_id, number, root)
    if not checkpoint.exists():
        raise NoWeights(f"the weights of trial {number} of job {job_id} are not in the artifact store "
                        f"({checkpoint}); the API must see the directory the workers write to (SCION_ARTIFACTS)")
    return checkpoint


# ---------------------------------------------------------------- building and exporting


@dataclass(frozen=True)
class Trained:
    model: Any  # torch.nn.Module on the CPU, in eval mode
    arch: Any
    arch_key: str
    input_shape: tuple[int, ...]
    num_classes: int


def build(spec: dict[str, Any], arch: Any) -> Trained:
    """The job's network for ``arch``, freshly initialised (on the CPU, in eval mode)."""
    from spaces import SPACES, make_space

    space = make_space(SPACES[spec["space"]["type"]].config.model_validate(spec["space"]))
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
        input_names=["input"], output_names=["logits"], opset_version=ONNX_OPSET, do_constant_folding=True,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: no onnxscript needed, dynamic_axes honoured
    with torch.no_grad():
        torch.onnx.export(model, (_example(shape),), str(path), **kwargs)


_WRITERS: dict[str, Callable[[Any, tuple[int, ...], Path], None]] = {
    "onnx": _write_onnx, "torchscript": _write_torchscript, "state_dict": _write_state_dict,
}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.Lock())


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def export(spec: dict[str, Any], job_id: int, number: int, arch: Any, status: str, fmt: str,
           root: Path | None = None) -> Path:
    """The trial's model in format ``fmt``, exported now or taken from the cache.

    Raises NoWeights when the trial has none, ArtifactError when the network cannot be rebuilt,
    KeyError for an unknown format."""
    if fmt not in FORMATS:
        raise KeyError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    checkpoint = check_exportable(spec, job_id, number, status, root)
    target = export_path(checkpoint, fmt)
    with _lock(target):
        if target.exists():
            return target
        trained = load_trained(spec, arch, checkpoint)
        with warnings.catch_warnings():  # torch.jit and the TorchScript ONNX exporter are deprecated, not gone
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            _atomic_write(target, lambda p: _WRITERS[fmt](trained.model, trained.input_shape, p))
        info = describe(spec, job_id, number, trained.arch, trained.arch_key, root)
        info |= {"input_shape": list(trained.input_shape), "num_classes": trained.num_classes}
        _atomic_write(target.with_name("export.json"), lambda p: p.write_text(json.dumps(info, indent=2)))
        for stale in target.parent.glob(f"export-*{FORMATS[fmt].suffix}"):  # exports of earlier weights
            if stale != target:
                stale.unlink(missing_ok=True)
    return target


__all__ = [
    "FORMATS", "ONNX_OPSET", "WEIGHT_EVALUATORS", "ArtifactError", "ExportFormat", "NoWeights", "Trained", "build",
    "check_exportable", "checkpoint_path", "describe", "download_name", "export", "export_path", "has_weights",
    "load_trained", "signature",
]
