"""ORM models: the database is the one source of truth for jobs, trials and their history.

Only Alembic creates these tables (migrations/); the API maps rows to schemas before they
leave the process.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
TRIAL_STATUSES = ("pending", "queued", "running", "completed", "failed", "stopped", "cancelled")
TERMINAL_TRIAL_STATUSES = ("completed", "failed", "stopped", "cancelled")
TERMINAL_JOB_STATUSES = ("completed", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_queue_status", "queue", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    strategy_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    trials_created: Mapped[int] = mapped_column(Integer, default=0)
    best_trial_number: Mapped[int | None] = mapped_column(Integer)
    best_objective: Mapped[float | None] = mapped_column(Float)
    owner: Mapped[str | None] = mapped_column(String(100), index=True)  # the submitting token's owner
    phase: Mapped[str | None] = mapped_column(String(16))  # a one-shot job's current phase (scion.configs.one_shot)
    queue: Mapped[str | None] = mapped_column(String(32))  # its evaluator's Celery queue, set by its scheduler


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
        Index("ix_trials_job_status", "job_id", "status"),
        Index("ix_trials_job_score", "job_id", "score"),
        Index("ix_trials_job_told", "job_id", "told"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    arch: Mapped[Any] = mapped_column(JSON)
    # Unbounded: a declared space's keys grow with its layers (migration 0007). Neither indexed nor
    # unique: trials are found by number, and a strategy may propose an architecture again.
    arch_key: Mapped[str] = mapped_column(Text)
    fidelity: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    phase: Mapped[str | None] = mapped_column(String(16))  # a one-shot job's phase the trial belongs to
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    objective: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)  # objective oriented so higher is better
    error: Mapped[str | None] = mapped_column(Text)
    told: Mapped[bool] = mapped_column(default=False)  # set only by repository.take_finished, which tallies it
    created_at: Mapped[datetime]
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


# A page of a job's trials best first (GET .../trials?sort=objective) is read straight off this
# index, however many trials the job has. (On SQLite, which has no NULLS LAST in an index
# definition, migration 0004 writes ``score DESC``: nulls sort last there already.)
Index("ix_trials_job_best", Trial.job_id, Trial.score.desc().nulls_last(), Trial.number)


class ToldCount(Base):
    """How many of a job's trials its scheduler has told the strategy, per final status. A told
    trial never changes again, so these tallies plus a live count of the few trials not yet told
    give the job's trial counts at a cost that does not grow with the job (repository.trial_counts)."""

    __tablename__ = "told_counts"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    trials: Mapped[int] = mapped_column(Integer)


class TrialMetric(Base):
    """One row per reported epoch: the learning curve."""

    __tablename__ = "trial_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "attempt", "step", name="uq_trial_metrics_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class StrategyCall(Base):
    """The calls one scheduler pass made to a job's strategy (versioned: see repository.strategy_calls)
    since its state was last saved whole (``Job.strategy_state``); a scheduler taking the job over
    loads that state and replays these in ``id`` order (scheduler/strategy_log.py)."""

    __tablename__ = "strategy_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    call: Mapped[list[dict[str, Any]] | dict[str, Any]] = mapped_column(JSON)


class JobEvent(Base):
    """What happened to a job and when, for users reading its history."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token for the API. Only the SHA-256 of the secret is stored: the secret is 256
    random bits, so a fast hash is enough, and a token is found by its hash in one index look-up."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    owner: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Worker(Base):
    """A live Celery worker (one ``celery worker`` process and its pool): which queues it serves with
    how many slots (pool processes), on what device. It writes its row at start, beats it every
    ``heartbeat_seconds`` and deletes it at shutdown; a row silent for ``heartbeat_timeout_seconds``
    is a worker gone without saying so, ignored by the schedulers (scheduler/fair_share.py) and
    deleted by the next worker to start."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # its Celery node name
    queues: Mapped[str] = mapped_column(String(200))  # comma-separated
    slots: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a submission carried, per owner (``""`` with auth off), with the hash of
    its request and the job it created: the same key and request answer that job again. Kept as long
    as the job; the primary key keeps two submissions racing with one key from making two jobs."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request as validated, canonical JSON
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
