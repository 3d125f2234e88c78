"""The artifact store: files that workers write and the API serves, named by job, trial and kind.

One directory (``SCION_ARTIFACTS``, default ``SCION_HOME/artifacts``) that every worker and the API
see, on a shared filesystem in production::

    job-{id}/trial-{n}/checkpoint.pt                   the worker's checkpoint: model, optimizer, epoch
    job-{id}/trial-{n}/export-{stamp}.onnx             exports, written by a worker on first request
    job-{id}/trial-{n}/export-{stamp}.torchscript.pt   and reused after; the stamp is the checkpoint's
    job-{id}/trial-{n}/export-{stamp}.state_dict.pt    (mtime, size), so a re-run trial's new weights
                                                       get new exports (no clock comparison across
                                                       machines)
    job-{id}/trial-{n}/export-failed.{format}.json     why the last export request failed
    job-{id}/trial-{n}/export.json                     the architecture the exports were built from

This module knows where things are and writes them whole (a temporary name, then an atomic
rename, so a reader never sees half a file); it never builds a network: that is the worker's
``worker/export.py``. It imports only the core.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scion.errors import Conflict
from scion.settings import get_settings

ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # of the stored file and of the download's file name
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


# ---------------------------------------------------------------- where things are


def artifact_root() -> Path:
    return get_settings().artifact_root


def trial_dir(job_id: int, number: int, root: Path | None = None) -> Path:
    return (root or artifact_root()) / f"job-{job_id}" / f"trial-{number}"


def checkpoint_path(job_id: int, number: int, root: Path | None = None) -> Path:
    """Where a worker keeps trial ``number``'s weights: the one name every reader and writer uses."""
    return trial_dir(job_id, number, root) / "checkpoint.pt"


def checkpoint_stamp(job_id: int, number: int, root: Path | None = None) -> str | None:
    """The version of the trial's checkpoint (modification time and size), None when there is none."""
    try:
        stat = checkpoint_path(job_id, number, root).stat()
    except FileNotFoundError:
        return None
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"


class NotStored(Conflict):
    """A completed trial whose weights are not in this process's artifact store."""


def stored_checkpoint(job_id: int, number: int, root: Path | None = None) -> str:
    """The version of the trial's checkpoint; NotStored, saying what to check, when the store has none."""
    stamp = checkpoint_stamp(job_id, number, root)
    if stamp is None:
        raise NotStored(f"the weights of trial {number} of job {job_id} are not in the artifact store "
                        f"({checkpoint_path(job_id, number, root)}); the API and the workers must share the "
                        "directory the workers write to (SCION_ARTIFACTS)")
    return stamp


def export_path(job_id: int, number: int, fmt: str, stamp: str, root: Path | None = None) -> Path:
    """The export in ``fmt`` of the checkpoint version ``stamp``."""
    return trial_dir(job_id, number, root) / f"export-{stamp}{FORMATS[fmt].suffix}"


def stale_exports(job_id: int, number: int, fmt: str, stamp: str, root: Path | None = None) -> list[Path]:
    """Exports in ``fmt`` of checkpoint versions other than ``stamp`` (a re-run trial's old weights)."""
    current = export_path(job_id, number, fmt, stamp, root)
    return [p for p in trial_dir(job_id, number, root).glob(f"export-*{FORMATS[fmt].suffix}") if p != current]


def record_path(job_id: int, number: int, root: Path | None = None) -> Path:
    """The architecture record a worker writes beside its exports (see ``scion.spec.architecture_record``)."""
    return trial_dir(job_id, number, root) / "export.json"


def failure_path(job_id: int, number: int, fmt: str, root: Path | None = None) -> Path:
    return trial_dir(job_id, number, root) / f"export-failed.{fmt}.json"


def download_name(job_id: int, number: int, fmt: str) -> str:
    return f"scion-job{job_id}-trial{number}{FORMATS[fmt].suffix}"


# ---------------------------------------------------------------- writing and reading


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a temporary file beside ``path``, which then replaces ``path`` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(value, indent=2)))


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or unreadable (a store is read while written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def record_failure(job_id: int, number: int, fmt: str, request: str, reason: str, root: Path | None = None) -> None:
    """Why the export that ``request`` asked for failed."""
    write_json(failure_path(job_id, number, fmt, root), {"request": request, "reason": reason})


def recorded_failure(job_id: int, number: int, fmt: str, request: str, root: Path | None = None) -> str | None:
    """The reason recorded for ``request``, or None (none yet, or that of another request)."""
    failure = read_json(failure_path(job_id, number, fmt, root))
    if isinstance(failure, dict) and failure.get("request") == request and isinstance(failure.get("reason"), str):
        return failure["reason"]
    return None


def has_weights(job_id: int, number: int, status: str, root: Path | None = None) -> bool:
    """A completed trial whose evaluator kept its weights: only those leave a checkpoint."""
    return status == "completed" and checkpoint_path(job_id, number, root).exists()


# ---------------------------------------------------------------- what a trial's network is


def recorded_signature(job_id: int, number: int, root: Path | None = None) -> tuple[tuple[int, ...], int] | None:
    """(input_shape, num_classes) as a worker's export recorded them, None before a first export."""
    record = read_json(record_path(job_id, number, root))
    try:
        return tuple(record["input_shape"]), int(record["num_classes"])
    except (KeyError, TypeError, ValueError):
        return None


__all__ = [
    "FORMATS", "NotStored", "stored_checkpoint", "ONNX_OPSET", "ExportFormat", "artifact_root", "checkpoint_path",
    "checkpoint_stamp", "download_name", "export_path", "failure_path", "has_weights",
    "read_json", "record_failure", "record_path", "recorded_failure", "recorded_signature", "stale_exports",
    "trial_dir", "write_atomic", "write_json",
]
