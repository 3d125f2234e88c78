"""What the API returns: plain pydantic models built from ORM rows, never the rows."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from scion.spec import JobRequest, planned_trials
from storage.db import utcnow
from storage.models import Job, JobEvent, Trial, TrialMetric
from storage.repository import spec_head

JobCreate = JobRequest


class ObjectivePublic(BaseModel):
    metric: str
    mode: str


WAITING = ("pending", "queued")  # a sent trial in these waits: queued, or put back to be sent again


def queue_wait_s(status: str, queued_at: datetime | None, started_at: datetime | None,
                 finished_at: datetime | None, now: datetime) -> float | None:
    """Seconds a trial waited for a worker: from its message's sending to its start; until now while
    it waits still (queued, or put back to be sent again); until its end for one withdrawn before it
    started (cancelled). None for a trial never sent. Its latest attempt's."""
    if queued_at is None:
        return None
    end = now if status in WAITING else started_at or finished_at or now
    return max(0.0, (end - queued_at).total_seconds())  # a worker may claim before the send is marked


class QueueWaitPublic(BaseModel):
    """How long a job's trials wait for a worker: the median and longest wait of its trials that were
    sent (its latest 100: ``repository.queue_waits``), and how many of them wait now."""

    median_s: float | None
    max_s: float | None
    waiting: int

    @classmethod
    def of(cls, rows: Sequence[Any]) -> QueueWaitPublic:
        now = utcnow()
        waits = [queue_wait_s(r.status, r.queued_at, r.started_at, r.finished_at, now) for r in rows]
        return cls(median_s=statistics.median(waits) if waits else None, max_s=max(waits, default=None),
                   waiting=sum(r.status in WAITING for r in rows))


class TrialSummary(BaseModel):
    number: int
    status: str
    phase: str | None = None  # a one-shot job's: supernet, search or retrain
    arch: Any
    arch_key: str
    objective: float | None
    metrics: dict[str, Any] | None
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    queue_wait_s: float | None  # from sent to started; until now for a trial still waiting

    @classmethod
    def of(cls, trial: Trial) -> TrialSummary:
        ran = trial.finished_at and trial.started_at
        duration = (trial.finished_at - trial.started_at).total_seconds() if ran else None
        return cls(
            number=trial.number, status=trial.status, phase=trial.phase, arch=trial.arch, arch_key=trial.arch_key,
            objective=trial.objective, metrics=trial.metrics, attempts=trial.attempts, error=trial.error,
            created_at=trial.created_at, started_at=trial.started_at, finished_at=trial.finished_at,
            duration_s=duration,
            queue_wait_s=queue_wait_s(trial.status, trial.queued_at, trial.started_at, trial.finished_at, utcnow()),
        )


class EpochPublic(BaseModel):
    step: int
    metrics: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, row: TrialMetric) -> EpochPublic:
        return cls(step=row.step, metrics=row.metrics, at=row.created_at)


class TrialPublic(TrialSummary):
    worker: str | None
    fidelity: dict[str, Any] | None
    history: list[EpochPublic]


class TrialsPublic(BaseModel):
    items: list[TrialSummary]
    total: int
    limit: int
    offset: int


class JobSummary(BaseModel):
    """A job as a listing shows it: its status and progress, and the types of its space, strategy and
    evaluator, without its spec (which may be large; ``JobPublic`` has it)."""

    id: int
    name: str
    status: str
    phase: str | None = None  # a one-shot job's current phase: supernet, search or retrain
    space: str
    strategy: str
    evaluator: str
    objective: ObjectivePublic
    counts: dict[str, int]
    trials_total: int
    max_trials: int
    trials_planned: int  # max_trials, plus a one-shot job's supernet and retrained trials
    best: TrialSummary | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None
    queue_wait: QueueWaitPublic
    error: str | None
    owner: str | None = None  # the submitting token's owner; None when submitted with auth off

    @classmethod
    def fields_of(cls, job: Job, head: dict[str, Any], counts: dict[str, int], best: Trial | None,
                  queue_wait: QueueWaitPublic) -> dict[str, Any]:
        """The summary's fields from the job's row and its spec's head (``repository.spec_head``)."""
        end = job.finished_at or utcnow()
        primary = head["objectives"][0]
        return dict(
            id=job.id, name=job.name, status=job.status, phase=job.phase,
            space=head["space"], strategy=head["strategy"], evaluator=head["evaluator"],
            objective=ObjectivePublic(metric=primary["metric"], mode=primary["mode"]),
            counts=counts, trials_total=sum(counts.values()), max_trials=head["budget"]["max_trials"],
            trials_planned=planned_trials(head),
            best=TrialSummary.of(best) if best else None,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            elapsed_s=(end - job.started_at).total_seconds() if job.started_at else None,
            queue_wait=queue_wait, error=job.error, owner=job.owner,
        )


class JobPublic(JobSummary):
    """One job, with the spec it was submitted with (as stored: normalised)."""

    spec: dict[str, Any]

    @classmethod
    def of(cls, job: Job, counts: dict[str, int], best: Trial | None, queue_wait: QueueWaitPublic) -> JobPublic:
        return cls(**cls.fields_of(job, spec_head(job.spec), counts, best, queue_wait), spec=job.spec)


class JobsPublic(BaseModel):
    """A page of jobs, newest first; ``GET /v1/jobs/{id}`` has one with its spec."""

    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class EventPublic(BaseModel):
    kind: str
    message: str
    at: datetime

    @classmethod
    def of(cls, event: JobEvent) -> EventPublic:
        return cls(kind=event.kind, message=event.message, at=event.created_at)


class ArchitecturePublic(BaseModel):
    """A trial's network as JSON: ``spaces.make_space(space).build(arch, input_shape, num_classes)``
    rebuilds it (input_shape is null for a file dataset until a first export has read it)."""

    job_id: int
    trial: int
    status: str
    space: dict[str, Any]
    arch: Any
    arch_key: str
    evaluator: str
    dataset: dict[str, Any] | None
    input_shape: list[int] | None
    num_classes: int | None
    weights: bool  # trained weights are stored: GET .../model works


class CatalogEntry(BaseModel):
    """One thing a job spec may name, with the JSON schema of its configuration."""

    name: str
    summary: str
    json_schema: dict[str, Any]
    details: dict[str, Any] = {}
