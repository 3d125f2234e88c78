"""/v1/jobs/{id}/trials/{n}/model and /architecture: take a trained network away.

Included in the jobs router (same prefix, same auth). The model route exports on the first
request for a format and serves the cached file after that; exporting runs torch *in the API
process* (imported on that first request, never at start-up), a few seconds for a small network.
The architecture route never needs torch.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from api.deps import MAX_ID, JobDep, SessionDep
from api.schemas import ArchitecturePublic
from scion.errors import NotFound
from storage import artifacts
from storage import repository as repo
from storage.models import Job, Trial

router = APIRouter()

Format = Literal["onnx", "torchscript", "state_dict"]
assert set(Format.__args__) == set(artifacts.FORMATS)  # type: ignore[attr-defined]
Number = Annotated[int, Path(ge=0, le=MAX_ID, description="The trial's number within the job.")]
FORMAT_HELP = "; ".join(f"{f.name}: {f.summary}" for f in artifacts.FORMATS.values())


def _trial_or_404(session: Session, job: Job, number: int) -> Trial:
    trial = repo.get_trial(session, job_id=job.id, number=number)
    if trial is None:
        raise NotFound(f"job {job.id} has no trial {number}")
    return trial


@router.get(
    "/{job_id}/trials/{number}/model",
    response_class=FileResponse,
    summary="Download a trained trial's network (ONNX, TorchScript or state_dict)",
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The model file."},
               404: {"description": "No such job or trial."},
               409: {"description": "The trial has no trained weights (not completed, or a tabular/proxy job)."}},
)
def download_model(
    job: JobDep, number: Number, session: SessionDep,
    format: Annotated[Format, Query(description=FORMAT_HELP)] = "onnx",
) -> FileResponse:
    trial = _trial_or_404(session, job, number)
    spec, arch, status = job.spec, trial.arch, trial.status
    session.commit()  # nothing to write: end the read transaction before the (seconds-long) export
    try:
        path = artifacts.export(spec, job.id, number, arch, status, format)
    except artifacts.NoWeights as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except artifacts.ArtifactError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return FileResponse(path, media_type=artifacts.FORMATS[format].media_type,
                        filename=artifacts.download_name(job.id, number, format))


@router.get("/{job_id}/trials/{number}/architecture", response_model=ArchitecturePublic,
            summary="A trial's architecture as JSON (any trial, any evaluator)")
def get_architecture(job: JobDep, number: Number, session: SessionDep) -> ArchitecturePublic:
    trial = _trial_or_404(session, job, number)
    info = artifacts.describe(job.spec, job.id, number, trial.arch, trial.arch_key)
    return ArchitecturePublic(
        **info, status=trial.status,
        weights=artifacts.has_weights(job.spec, job.id, number, trial.status),
    )
