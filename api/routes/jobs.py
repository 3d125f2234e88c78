"""/v1/jobs: submit, list, inspect and cancel searches; read their trials."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import idempotency, one_shot, retrain
from api.deps import MAX_ID, JobDep, JobId, PageLimit, PrincipalDep, SessionDep, read_job
from api.routes import artifacts as artifact_routes
from api.schemas import (
    EpochPublic,
    EventPublic,
    JobCreate,
    JobPublic,
    JobsPublic,
    JobSummary,
    QueueWaitPublic,
    TrialPublic,
    TrialsPublic,
    TrialSummary,
)
from broker.nudge import JOB, nudger
from scion import budgets
from scion.configs.one_shot import PHASES
from scion.errors import NotFound
from scion.pareto import orient, pareto_mask
from scion.settings import get_settings
from scion.spec import JobSpec, answer_phase
from storage import repository as repo
from storage.models import JOB_STATUSES, TRIAL_STATUSES, Job, Trial

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
router.include_router(artifact_routes.router)  # .../trials/{n}/model and .../architecture

JobStatus = Literal[JOB_STATUSES]  # type: ignore[valid-type]
TrialStatus = Literal[TRIAL_STATUSES]  # type: ignore[valid-type]
Phase = Literal[PHASES]  # type: ignore[valid-type]
Offset = Query(0, ge=0, le=10_000_000)


def _best(session, job: Job, spec: dict[str, Any]) -> Trial | None:
    """The job's best trial; ``spec``: its spec, or the head of it a listing reads (``repo.spec_head``)."""
    return repo.best_trial(session, job_id=job.id, phase=answer_phase(spec))


def _public(session, job: Job) -> JobPublic:
    return JobPublic.of(job, repo.trial_counts(session, job_id=job.id), _best(session, job, job.spec),
                        QueueWaitPublic.of(repo.queue_waits(session, job_id=job.id)))


def _summary(session, job: Job, head: dict[str, Any]) -> JobSummary:
    return JobSummary(**JobSummary.fields_of(
        job, head, repo.trial_counts(session, job_id=job.id), _best(session, job, head),
        QueueWaitPublic.of(repo.queue_waits(session, job_id=job.id))))


def _check_caps(spec: JobSpec) -> None:
    """This server's limits on a job's size (settings), within the spec's absolute bounds."""
    settings = get_settings()
    errors = [
        {"type": "less_than_equal", "loc": ("body", "budget", field), "input": value, "ctx": {"le": cap},
         "msg": f"{value} is above this server's cap of {cap} ({field}_cap)"}
        for field, value, cap in (("max_trials", spec.budget.max_trials, settings.max_trials_cap),
                                  ("max_parallel", spec.budget.max_parallel, settings.max_parallel_cap))
        if value > cap
    ]
    if errors:
        raise RequestValidationError(errors)


def _answered_before(session, owner: str | None, keyed: tuple[str, str], response: Response) -> JobPublic | None:
    """The job an earlier submission with this Idempotency-Key and request hash created, answered
    with 200; None when the key is new."""
    job = idempotency.earlier_job(session, owner=owner, key=keyed[0], digest=keyed[1])
    if job is None:
        return None
    response.status_code = 200
    return _public(session, job)


@router.post("", status_code=201, response_model=JobPublic, summary="Submit a search job",
             responses={200: {"model": JobPublic, "description": "The job an earlier submission with the same "
                                                                  "Idempotency-Key and request created"}})
def submit_job(request: JobCreate, session: SessionDep, principal: PrincipalDep, response: Response,
               idempotency_key: idempotency.KeyHeader = None) -> JobPublic:
    keyed = (idempotency_key, idempotency.request_hash(request)) if idempotency_key else None
    if keyed and (earlier := _answered_before(session, principal.owner, keyed, response)):
        return earlier
    spec = JobSpec.of(retrain.resolve(session, request, visible=principal.may_see))  # a retrain job's from_job
    _check_caps(spec)
    budgets.check_job(spec)
    one_shot.check(session, spec, visible=principal.may_see)
    try:
        job = repo.create_job(session, name=spec.name, spec=spec.model_dump(mode="json"), owner=principal.owner,
                              idempotency=keyed)
        session.commit()
    except IntegrityError:  # a submission with the same key won the race
        session.rollback()
        if not keyed or not (earlier := _answered_before(session, principal.owner, keyed, response)):
            raise
        return earlier
    nudger().nudge(JOB)  # a scheduler picks the job up now, not at its next poll
    return _public(session, job)


@router.get("", response_model=JobsPublic, summary="List jobs, newest first")
def list_jobs(
    session: SessionDep, principal: PrincipalDep, limit: PageLimit, status: JobStatus | None = None,
    offset: int = Offset,
) -> JobsPublic:
    """Each job without its spec, which ``GET /v1/jobs/{id}`` returns."""
    jobs, total = repo.list_jobs(session, status=status, limit=limit, offset=offset, owner=principal.owner,
                                 all_owners=principal.sees_all)
    return JobsPublic(items=[_summary(session, job, head) for job, head in jobs], total=total, limit=limit,
                      offset=offset)


@router.get("/{job_id}", response_model=JobPublic, summary="A job's status, counts, best trial and spec")
async def get_job(job_id: JobId, principal: PrincipalDep) -> JobPublic:
    return await read_job(job_id, principal, _public)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job")
def cancel_job(job: JobDep, session: SessionDep) -> JobPublic:
    return _public(session, repo.cancel_job(session, job_id=job.id))


@router.get("/{job_id}/trials", response_model=TrialsPublic, summary="A page of a job's trials")
async def list_trials(
    job_id: JobId,
    principal: PrincipalDep,
    limit: PageLimit,
    status: TrialStatus | None = None,
    phase: Annotated[Phase | None, Query(description="A one-shot job's trials of this phase only.")] = None,
    sort: Literal["number", "objective"] = Query("number", description="'objective' sorts best first."),
    order: Literal["asc", "desc"] | None = Query(None, description="Default: ascending numbers, best objective first."),
    offset: int = Offset,
) -> TrialsPublic:
    descending = order == "desc" if order else sort == "objective"

    def page(session: Session, job: Job) -> TrialsPublic:
        trials, total = repo.list_trials(
            session, job_id=job.id, status=status, sort=sort, descending=descending, limit=limit, offset=offset,
            phase=phase,
        )
        return TrialsPublic(items=[TrialSummary.of(t) for t in trials], total=total, limit=limit, offset=offset)

    return await read_job(job_id, principal, page)


@router.get("/{job_id}/trials/{number}", response_model=TrialPublic, summary="One trial with its learning curve")
def get_trial(job: JobDep, number: Annotated[int, Path(ge=0, le=MAX_ID)], session: SessionDep) -> TrialPublic:
    trial = repo.get_trial(session, job_id=job.id, number=number)
    if trial is None:
        raise NotFound(f"job {job.id} has no trial {number}")
    history = repo.trial_history(session, trial_id=trial.id, attempt=trial.attempts)
    return TrialPublic(
        **TrialSummary.of(trial).model_dump(), worker=trial.worker, fidelity=trial.fidelity,
        history=[EpochPublic.of(h) for h in history],
    )


@router.get("/{job_id}/best", response_model=TrialSummary, summary="The best completed trial so far")
def get_best(job: JobDep, session: SessionDep) -> TrialSummary:
    best = _best(session, job, job.spec)
    if best is None:
        raise NotFound(f"job {job.id} has no completed trial yet")
    return TrialSummary.of(best)


@router.get("/{job_id}/pareto", response_model=list[TrialSummary],
            summary="The non-dominated completed trials over the job's objectives")
def get_pareto(job: JobDep, session: SessionDep) -> list[TrialSummary]:
    """Best-first by the primary objective (then the others, then number); with one objective
    the best trial(s). Trials missing an objective are left out. Only the objective values
    are read for every trial (a JSON extraction in SQL); the front is computed in numpy."""
    objectives = job.spec["objectives"]
    values = [Trial.metrics[o["metric"]].as_float() for o in objectives]
    rows = session.execute(
        select(Trial.number, *values).where(Trial.job_id == job.id, Trial.status == "completed")
    ).all()
    data = np.array([tuple(r) for r in rows], dtype=float).reshape(-1, 1 + len(values))  # null -> nan
    data = data[~np.isnan(data).any(axis=1)]
    if not len(data):
        return []
    points = orient(data[:, 1:], [o["mode"] for o in objectives])
    front = {int(data[i, 0]): tuple(-points[i]) for i in np.flatnonzero(pareto_mask(points))}
    trials = []
    numbers = sorted(front)
    for start in range(0, len(numbers), 500):  # bounded IN lists
        trials += session.scalars(
            select(Trial).where(Trial.job_id == job.id, Trial.number.in_(numbers[start:start + 500]))
        ).all()
    trials.sort(key=lambda t: (*front[t.number], t.number))
    return [TrialSummary.of(t) for t in trials]


@router.get("/{job_id}/events", response_model=list[EventPublic], summary="What happened to a job")
def list_events(job: JobDep, session: SessionDep, limit: PageLimit, offset: int = Offset) -> list[EventPublic]:
    return [EventPublic.of(e) for e in repo.list_events(session, job_id=job.id, limit=limit, offset=offset)]
