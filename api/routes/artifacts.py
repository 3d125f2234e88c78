"""/v1/jobs/{id}/trials/{n}/model and /architecture: take a trained network away.

Included in the jobs router (same prefix, same auth). The API never builds a network (it imports
no torch): workers export, the API serves what they wrote to the artifact store. A model request
finds the export of the trial's current checkpoint in the store, or sends the ``scion.export_model``
task (to the export queue every worker serves) and waits up to ``SCION_EXPORT_WAIT_SECONDS`` for
the file or for the reason the worker recorded instead (no weights, a network it cannot rebuild:
409); still waiting then, it answers 202 with Retry-After and the client asks again (the SDK and
``scion export`` do). A repeated request sends the task again, which costs a worker nothing once
the file is there. The architecture route needs no worker.
"""
from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, JSONResponse
from kombu.exceptions import OperationalError as BrokerUnreachable
from sqlalchemy.orm import Session

from api.deps import MAX_ID, JobDep, SessionDep
from api.schemas import ArchitecturePublic
from broker import app as broker
from scion.configs.datasets import declared_signature
from scion.errors import Conflict, NotFound, Unavailable
from scion.settings import get_settings
from scion.spec import architecture_record, weightless
from storage import artifacts
from storage import repository as repo
from storage.models import Job, Trial

router = APIRouter()

Format = Literal["onnx", "torchscript", "state_dict"]
assert set(Format.__args__) == set(artifacts.FORMATS)  # type: ignore[attr-defined]
Number = Annotated[int, Path(ge=0, le=MAX_ID, description="The trial's number within the job.")]
FORMAT_HELP = "; ".join(f"{f.name}: {f.summary}" for f in artifacts.FORMATS.values())
RETRY_AFTER_S = 2  # a 202's advice: the next request waits SCION_EXPORT_WAIT_SECONDS again anyway
POLL_S = 0.05  # the store is looked at this often while a worker exports: a stat, nothing more


def _trial_or_404(session: Session, job: Job, number: int) -> Trial:
    trial = repo.get_trial(session, job_id=job.id, number=number)
    if trial is None:
        raise NotFound(f"job {job.id} has no trial {number}")
    return trial


def _file(job_id: int, number: int, fmt: str) -> FileResponse | None:
    """The export of the trial's current checkpoint, when a worker has written it."""
    stamp = artifacts.checkpoint_stamp(job_id, number)
    path = artifacts.export_path(job_id, number, fmt, stamp) if stamp is not None else None
    if path is None or not path.exists():
        return None
    return FileResponse(path, media_type=artifacts.FORMATS[fmt].media_type,
                        filename=artifacts.download_name(job_id, number, fmt))


def _ask_a_worker(job_id: int, number: int, fmt: str) -> str:
    """Send the export task; returns the request's name, under which a failure is recorded."""
    request = uuid.uuid4().hex
    try:
        broker.celery_app.send_task(broker.EXPORT_TASK, args=[job_id, number, fmt, request],
                                    queue=broker.EXPORT_QUEUE, retry=False)
    except BrokerUnreachable as exc:
        raise Unavailable(f"cannot ask a worker to export the network: the broker is unreachable "
                          f"({type(exc).__name__})", retry_after_s=RETRY_AFTER_S) from None
    return request


@router.get(
    "/{job_id}/trials/{number}/model",
    response_class=FileResponse,
    summary="Download a trained trial's network (ONNX, TorchScript or state_dict)",
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The model file."},
               202: {"description": "A worker is exporting it: ask again after Retry-After seconds."},
               404: {"description": "No such job or trial."},
               409: {"description": "The trial has no trained weights (not completed, or a tabular/proxy job), "
                                    "or its network cannot be rebuilt."},
               503: {"description": "The broker is unreachable: no worker can be asked to export it."}},
)
def download_model(
    job: JobDep, number: Number, session: SessionDep,
    format: Annotated[Format, Query(description=FORMAT_HELP)] = "onnx",
) -> Any:
    trial = _trial_or_404(session, job, number)
    job_id, status, spec, phase = job.id, trial.status, job.spec, trial.phase
    session.commit()  # nothing to write: end the read transaction before waiting for a worker
    if (reason := weightless(spec, job_id, number, phase)) is not None:
        raise Conflict(reason)
    if status != "completed":
        raise Conflict(f"trial {number} of job {job_id} is {status}; only a completed trial has trained weights to "
                       f"export (its architecture is at GET /v1/jobs/{job_id}/trials/{number}/architecture)")
    artifacts.stored_checkpoint(job_id, number)  # no weights in the store: no worker could export them
    if (served := _file(job_id, number, format)) is not None:
        return served
    request = _ask_a_worker(job_id, number, format)
    deadline = time.monotonic() + get_settings().export_wait_seconds
    while True:
        if (served := _file(job_id, number, format)) is not None:
            return served
        if (reason := artifacts.recorded_failure(job_id, number, format, request)) is not None:
            raise Conflict(reason)
        if time.monotonic() >= deadline:
            return JSONResponse(status_code=202, headers={"Retry-After": str(RETRY_AFTER_S)}, content={
                "detail": f"trial {number} of job {job_id} is being exported as {format} by a worker; ask again"})
        time.sleep(POLL_S)


@router.get("/{job_id}/trials/{number}/architecture", response_model=ArchitecturePublic,
            summary="A trial's architecture as JSON (any trial, any evaluator)")
def get_architecture(job: JobDep, number: Number, session: SessionDep) -> ArchitecturePublic:
    trial = _trial_or_404(session, job, number)
    # a file dataset's shape is known once a worker's export has read its files and recorded it
    signature = declared_signature(job.spec) or artifacts.recorded_signature(job.id, number)
    info = architecture_record(job.spec, job.id, number, trial.arch, trial.arch_key, signature)
    return ArchitecturePublic(**info, status=trial.status, weights=artifacts.has_weights(job.id, number, trial.status))
