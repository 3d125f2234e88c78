"""Repository functions: every read and write the API, scheduler and workers make.

Each takes the session first and keyword arguments after; state changes that two processes
could race on are single conditional UPDATEs, so they are safe on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    String,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, defer

from scion.configs.one_shot import SUPERNET
from scion.errors import Conflict, NotFound
from storage.db import utcnow
from storage.models import (
    TERMINAL_JOB_STATUSES,
    TERMINAL_TRIAL_STATUSES,
    IdempotencyKey,
    Job,
    JobEvent,
    StrategyCall,
    ToldCount,
    Trial,
    TrialMetric,
    Worker,
)

IN_FLIGHT = ("pending", "queued", "running")


def _core(db: Session | Connection) -> Connection:
    """The connection under a session, for a statement that neither reads nor writes ORM objects:
    it then skips the ORM's per-statement work (its compile state, syncing the identity map),
    which a scheduler pass would pay several times. Pending ORM changes are flushed first, as the
    session's own ``execute`` would."""
    if isinstance(db, Connection):
        return db
    db.flush()
    return db.connection()


# ---------------------------------------------------------------- jobs


def create_job(session: Session, *, name: str, spec: dict[str, Any], owner: str | None = None,
               idempotency: tuple[str, str] | None = None) -> Job:
    """``idempotency``: the submission's Idempotency-Key and its request's hash, kept with the job;
    raises IntegrityError when the owner's key is already taken (a submission racing this one)."""
    job = Job(name=name, spec=spec, status="pending", created_at=utcnow(), trials_created=0, owner=owner)
    session.add(job)
    session.flush()
    if idempotency:
        key, request_hash = idempotency
        session.add(IdempotencyKey(owner=owner or "", key=key, request_hash=request_hash, job_id=job.id,
                                   created_at=job.created_at))
        session.flush()
    add_event(session, job_id=job.id, kind="submitted", message=f"job {name!r} submitted")
    return job


def idempotency_key(session: Session, *, owner: str | None, key: str) -> IdempotencyKey | None:
    """The submission an owner sent with this Idempotency-Key (``create_job``), if any."""
    return session.get(IdempotencyKey, (owner or "", key))


# What the API reads of a job: all but its strategy state, which grows with the job's history and
# is read only by a scheduler taking the job over.
WITHOUT_STATE = defer(Job.strategy_state)


def get_job(session: Session, *, job_id: int) -> Job | None:
    return session.get(Job, job_id, options=[WITHOUT_STATE])


# What a page of jobs reads of each job's spec: the parts its summary shows, picked out in SQL, so a
# listing costs the same whatever the specs hold (a declared space, warm-start architectures).
SPEC_HEAD = {"objectives": ("objectives",), "budget": ("budget",), "one_shot": ("one_shot",),
             "space": ("space", "type"), "strategy": ("strategy", "type"), "evaluator": ("evaluator", "type")}


def spec_head(spec: dict[str, Any]) -> dict[str, Any]:
    """The parts of a whole stored spec that ``list_jobs`` reads: one shape for the listing and a job."""
    return {"objectives": spec["objectives"], "budget": spec["budget"], "one_shot": spec.get("one_shot"),
            **{part: spec[part]["type"] for part in ("space", "strategy", "evaluator")}}


def list_jobs(
    session: Session, *, status: str | None, limit: int, offset: int, owner: str | None = None, all_owners: bool = True
) -> tuple[list[tuple[Job, dict[str, Any]]], int]:
    """Newest first, each job with its ``spec_head`` (its spec itself is not read); ``all_owners=False``
    keeps only ``owner``'s jobs."""
    query = select(Job, *(Job.spec[path] for path in SPEC_HEAD.values())).options(WITHOUT_STATE, defer(Job.spec))
    count = select(func.count(Job.id))
    if status:
        query, count = query.where(Job.status == status), count.where(Job.status == status)
    if not all_owners:
        query, count = query.where(Job.owner == owner), count.where(Job.owner == owner)
    rows = session.execute(query.order_by(Job.id.desc()).limit(limit).offset(offset)).all()
    return [(row[0], dict(zip(SPEC_HEAD, row[1:]))) for row in rows], session.scalar(count) or 0


# The statements the API sends on every poll of a job are built once, with bound parameters:
# building one costs more CPU than sending it (docs/benchmarks.md), and its SQL
# is then the same string each time, which psycopg prepares on the server after a few uses.
JOB_ID = bindparam("job_id")


def _trial_counts_statement() -> Select:
    told = select(ToldCount.status, ToldCount.trials.label("n")).where(ToldCount.job_id == JOB_ID)
    untold = (select(Trial.status, func.count().label("n")).where(Trial.job_id == JOB_ID, Trial.told.is_(False))
              .group_by(Trial.status))
    both = union_all(told, untold).subquery()
    return select(both.c.status, func.sum(both.c.n)).group_by(both.c.status)


TRIAL_COUNTS = _trial_counts_statement()
BEST_TRIAL = (select(Trial).where(Trial.job_id == JOB_ID, Trial.status == "completed", Trial.score.is_not(None))
              .order_by(Trial.score.desc(), Trial.number).limit(1))
BEST_OF_PHASE = BEST_TRIAL.where(Trial.phase == bindparam("phase"))


QUEUE_WAIT_WINDOW = 100  # a job's latest sent trials its queue waits are taken over: a page of rows
QUEUE_WAITS = (select(Trial.status, Trial.queued_at, Trial.started_at, Trial.finished_at)
               .where(Trial.job_id == JOB_ID, Trial.queued_at.is_not(None))
               .order_by(Trial.number.desc()).limit(QUEUE_WAIT_WINDOW))


def queue_waits(session: Session, *, job_id: int) -> list[Row]:
    """What the job's queue waits are computed from: rows (status, queued_at, started_at, finished_at)
    of its latest ``QUEUE_WAIT_WINDOW`` trials that were sent to the workers, newest first, read
    through ix_trials_job_number at a cost that does not grow with the job. The queue is first come,
    first served, so the trials waiting now are among them."""
    return session.execute(QUEUE_WAITS, {"job_id": job_id}).all()


def trial_counts(session: Session, *, job_id: int) -> dict[str, int]:
    """The job's trials per status, at a cost that does not grow with the job: the tallies of trials
    its scheduler told (``take_finished``; final, they never change again) plus a live count of those
    not told yet (in flight or finished since the last pass: a handful, found through
    ix_trials_job_told). One statement, so one snapshot: a pass committing meanwhile cannot make a
    trial counted twice or not at all."""
    rows = session.execute(TRIAL_COUNTS, {"job_id": job_id}).all()
    return {status: int(n) for status, n in rows if n}


def best_trial(session: Session, *, job_id: int, phase: str | None = None) -> Trial | None:
    """The job's best completed trial; of one phase only, when given (a one-shot job's answer is
    its best retrained network, not an inherited-weight score)."""
    if phase is None:
        return session.scalars(BEST_TRIAL, {"job_id": job_id}).first()
    return session.scalars(BEST_OF_PHASE, {"job_id": job_id, "phase": phase}).first()


def trained_supernets(session: Session, *, limit: int = 200) -> list[Job]:
    """The newest jobs whose supernet trial (a one-shot job's trial 0) completed."""
    return list(session.scalars(
        select(Job).join(Trial, (Trial.job_id == Job.id) & (Trial.number == 0))
        .where(Trial.phase == SUPERNET, Trial.status == "completed").order_by(Job.id.desc()).limit(limit)))


def phase_trials(session: Session, *, job_id: int) -> list[Row]:
    """A one-shot job's trials in number order (number, phase, status, arch, score, metrics,
    error): what its scheduler plans the next phase from, when it loads the job and when a phase
    ends."""
    return list(session.execute(
        select(Trial.number, Trial.phase, Trial.status, Trial.arch, Trial.score, Trial.metrics, Trial.error)
        .where(Trial.job_id == job_id).order_by(Trial.number)))


def kth_best_score(session: Session, *, job_id: int, k: int) -> float | None:
    """The k-th best score among completed trials (None while fewer than k completed)."""
    return session.scalar(
        select(Trial.score)
        .where(Trial.job_id == job_id, Trial.status == "completed", Trial.score.is_not(None))
        .order_by(Trial.score.desc())
        .limit(1)
        .offset(k - 1)
    )


def cancel_job(session: Session, *, job_id: int) -> Job:
    """Cancel a job: queued trials are withdrawn now, running ones stop at their next epoch.
    NotFound without such a job, Conflict when it has already ended. One conditional UPDATE (the
    job still unfinished), so a scheduler finishing the job at the same moment is never
    overwritten: whichever commits first decides."""
    now = utcnow()
    cancelled = session.execute(
        update(Job).where(Job.id == job_id, Job.status.not_in(TERMINAL_JOB_STATUSES))
        .values(status="cancelled", finished_at=now).returning(Job.id)
    ).first()
    if cancelled is None:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status is None:
            raise NotFound(f"job {job_id} not found")
        raise Conflict(f"job {job_id} is already {status}; only pending or running jobs can be cancelled")
    session.execute(
        update(Trial)
        .where(Trial.job_id == job_id, Trial.status.in_(IN_FLIGHT))
        .values(status="cancelled", finished_at=now, error="job cancelled")
    )
    add_event(session, job_id=job_id, kind="cancelled", message="job cancelled by the user")
    return session.get(Job, job_id, populate_existing=True)


def add_event(session: Session, *, job_id: int, kind: str, message: str) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, message=message, created_at=utcnow()))


def list_events(session: Session, *, job_id: int, limit: int, offset: int) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id).limit(limit).offset(offset)
        )
    )


# ---------------------------------------------------------------- trials (read side)


@functools.cache
def _trials_page(sort: str, descending: bool, by_status: bool, by_phase: bool = False) -> Select:
    """The statement for one kind of page, built once (see TRIAL_COUNTS)."""
    query = select(Trial).where(Trial.job_id == JOB_ID)
    if by_status:
        query = query.where(Trial.status == bindparam("status"))
    if by_phase:
        query = query.where(Trial.phase == bindparam("phase"))
    column = Trial.score if sort == "objective" else Trial.number
    order = column.desc().nulls_last() if descending else column.asc().nulls_last()
    return query.order_by(order, Trial.number).limit(bindparam("limit")).offset(bindparam("offset"))


def list_trials(
    session: Session, *, job_id: int, status: str | None, sort: str, descending: bool, limit: int, offset: int,
    phase: str | None = None,
) -> tuple[list[Trial], int]:
    """A page of the job's trials (of one one-shot phase, when given) and how many there are in all.
    Best first by objective is read off ix_trials_job_best (number order off the unique key), the
    total off ``trial_counts``; a phase's (a one-shot job has a few hundred trials) by counting them."""
    page = _trials_page(sort, descending, status is not None, phase is not None)
    values = {"job_id": job_id, "status": status, "phase": phase, "limit": limit, "offset": offset}
    trials = list(session.scalars(page, values).all())
    if phase is not None:
        counted = select(func.count()).select_from(Trial).where(Trial.job_id == job_id, Trial.phase == phase)
        return trials, session.scalar(counted.where(Trial.status == status) if status else counted)
    counts = trial_counts(session, job_id=job_id)
    return trials, counts.get(status, 0) if status else sum(counts.values())


def get_trial(session: Session, *, job_id: int, number: int) -> Trial | None:
    return session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.number == number)).first()


def trial_history(session: Session, *, trial_id: int, attempt: int) -> list[TrialMetric]:
    """A trial's epochs up to ``attempt``, the newest report of each: an attempt continues from the
    last one's checkpoint (training, a supernet's too), so the epochs before it are an earlier attempt's."""
    rows = session.scalars(
        select(TrialMetric)
        .where(TrialMetric.trial_id == trial_id, TrialMetric.attempt <= attempt)
        .order_by(TrialMetric.step, TrialMetric.attempt)
    )
    return list({row.step: row for row in rows}.values())


# ---------------------------------------------------------------- scheduler side


def take_leases(session: Session, *, owner: str, seconds: float) -> dict[int, bool]:
    """Claim every job no live scheduler holds and renew ``owner``'s, in two statements whatever
    the number of jobs. Returns the jobs now held, in id order, each with whether ``owner`` held
    it unexpired before (False: newly taken, or a lapsed lease that another scheduler may have
    used meanwhile)."""
    now = utcnow()
    claimable = (Job.status.in_(("pending", "running")),
                 Job.lease_owner.is_(None) | (Job.lease_expires_at < now) | (Job.lease_owner == owner))
    before = session.execute(select(Job.id, Job.lease_owner, Job.lease_expires_at).where(*claimable)
                             .order_by(Job.id)).all()
    if not before:
        return {}
    taken = set(session.scalars(
        update(Job).where(Job.id.in_([row.id for row in before]), *claimable)
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds)).returning(Job.id)
    ))
    return {row.id: row.lease_owner == owner and row.lease_expires_at is not None and row.lease_expires_at > now
            for row in before if row.id in taken}


def release_lease(session: Session, *, job_id: int, owner: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(lease_owner=None, lease_expires_at=None)
    )


def job_activity(db: Session | Connection, *, job_ids: list[int]) -> dict[int, Row]:
    """For each job that exists, what a scheduler pass starts from, in one query for all jobs:
    the job row's ``status``, ``lease_owner``, ``lease_expires_at``, ``trials_created`` and
    ``started_at``, and, from its trials not yet told (those in flight and those finished since),
    ``untold`` finished trials, ``pending`` ones (to send), ``in_flight`` ones, of which
    ``running``, and the ``oldest_beat`` / ``oldest_start`` of its running trials (0 and None
    without such trials)."""
    if not job_ids:
        return {}
    return {row.job_id: row for row in _core(db).execute(JOB_ACTIVITY, {"job_ids": job_ids})}


def holds_lease(activity: Row, *, owner: str) -> bool:
    """Whether a job's ``job_activity`` row says ``owner`` may drive it now."""
    return (activity.status in ("pending", "running") and activity.lease_owner == owner
            and activity.lease_expires_at is not None and activity.lease_expires_at > utcnow())


def update_held_job(db: Session | Connection, *, job_id: int, owner: str, **values: Any) -> None:
    """Write the job row from the scheduler holding it, in one conditional statement: raises
    Conflict (and the caller's transaction is to be rolled back) when the job is no longer
    running under ``owner``'s lease, e.g. cancelled by a user since the pass began."""
    held = _core(db).execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                                               Job.status.in_(("pending", "running"))).values(**values))
    if held.rowcount != 1:
        raise Conflict(f"job {job_id} is no longer held by {owner}")


def job_plan(session: Session, *, job_id: int) -> Row:
    """What a scheduler taking a job over loads once: its ``spec`` and saved ``strategy_state``."""
    return session.execute(select(Job.spec, Job.strategy_state).where(Job.id == job_id)).one()


# The statements of a scheduler pass, built once (see TRIAL_COUNTS): a pass runs each of them.
_RUNNING = Trial.status == "running"
_UNTOLD = (
    select(
        Trial.job_id,
        func.count(case((Trial.status.in_(TERMINAL_TRIAL_STATUSES), 1))).label("untold"),
        func.count(case((Trial.status == "pending", 1))).label("pending"),
        func.count(case((Trial.status.in_(IN_FLIGHT), 1))).label("in_flight"),
        func.count(case((_RUNNING, 1))).label("running"),
        func.min(case((_RUNNING, Trial.heartbeat_at))).label("oldest_beat"),
        func.min(case((_RUNNING, Trial.started_at))).label("oldest_start"),
    )
    .where(Trial.job_id.in_(bindparam("job_ids", expanding=True)), Trial.told.is_(False))
    .group_by(Trial.job_id)
    .subquery()
)
JOB_ACTIVITY = (
    select(
        Job.id.label("job_id"), Job.status, Job.lease_owner, Job.lease_expires_at, Job.trials_created,
        Job.started_at, Job.queue,
        func.coalesce(_UNTOLD.c.untold, 0).label("untold"),
        func.coalesce(_UNTOLD.c.pending, 0).label("pending"),
        func.coalesce(_UNTOLD.c.in_flight, 0).label("in_flight"),
        func.coalesce(_UNTOLD.c.running, 0).label("running"),
        _UNTOLD.c.oldest_beat, _UNTOLD.c.oldest_start,
    )
    .outerjoin(_UNTOLD, _UNTOLD.c.job_id == Job.id)
    .where(Job.id.in_(bindparam("job_ids", expanding=True)))
)
TALLY = (update(ToldCount).where(ToldCount.job_id == bindparam("of_job"), ToldCount.status == bindparam("tallied"))
         .values(trials=ToldCount.trials + bindparam("more")))
ADD_TRIALS = insert(Trial).returning(Trial.id, sort_by_parameter_order=True)
MARK_QUEUED = (update(Trial).where(Trial.id.in_(bindparam("trial_ids", expanding=True)), Trial.status == "pending")
               .values(status="queued", queued_at=bindparam("now")))
TAKE_FINISHED = (
    update(Trial)
    .where(Trial.job_id == bindparam("of_job"), Trial.told.is_(False), Trial.status.in_(TERMINAL_TRIAL_STATUSES))
    .values(told=True)
    .returning(Trial.id, Trial.number, Trial.arch, Trial.status, Trial.score, Trial.metrics, Trial.fidelity,
               Trial.error, Trial.worker, Trial.started_at, Trial.finished_at, Trial.phase)
)


def take_finished(session: Session, *, job_id: int) -> list[Row]:
    """The job's trials finished since they were last taken, oldest first, marked told and tallied
    by status for ``trial_counts`` in the same transaction: what a pass tells its strategy. One
    conditional statement marks and returns them, so of two schedulers racing (a lease that
    lapsed) only one takes each trial, and a trial is told and tallied once (a tally row both
    create at once fails one pass, which is retried). Rows, not entities: nothing in them is
    changed through the ORM."""
    db = _core(session)
    rows = sorted(db.execute(TAKE_FINISHED, {"of_job": job_id}),
                  key=lambda row: (row.finished_at.timestamp() if row.finished_at else 0.0, row.number))
    for status, n in Counter(row.status for row in rows).items():
        if db.execute(TALLY, {"of_job": job_id, "tallied": status, "more": n}).rowcount == 0:
            db.execute(insert(ToldCount), {"job_id": job_id, "status": status, "trials": n})
    return rows


def add_trials(session: Session, *, job_id: int, first_number: int, trials: list[dict[str, Any]]) -> list[int]:
    """Write trials (arch, arch_key, fidelity, phase) as the job's next numbers, pending, in one statement;
    returns their ids in the same order."""
    if not trials:
        return []
    now = utcnow()
    rows = [{**trial, "job_id": job_id, "number": first_number + i, "status": "pending", "attempts": 0,
             "told": False, "created_at": now} for i, trial in enumerate(trials)]
    return list(_core(session).scalars(ADD_TRIALS, rows))


def pending_trial_ids(session: Session, *, job_id: int) -> list[int]:
    """Trials written but not (known to be) sent, oldest first."""
    return list(session.scalars(select(Trial.id).where(Trial.job_id == job_id, Trial.status == "pending")
                                .order_by(Trial.number)))


_SILENT_TRIAL = (Trial.id, Trial.number, Trial.worker, Trial.attempts)


def reap_silent(session: Session, *, job_id: int, older_than_s: float,
                max_attempts: int) -> tuple[list[Row], list[Row]]:
    """Running trials whose heartbeat is older than ``older_than_s`` (their worker went silent):
    back to pending while attempts remain, else failed. Conditional statements (still running,
    still silent), so a result committed while the pass runs is kept, never overwritten. Returns
    (put back, failed), rows of id, number, worker, attempts."""
    db = _core(session)
    silent = (Trial.job_id == job_id, Trial.status == "running",
              Trial.heartbeat_at < utcnow() - timedelta(seconds=older_than_s))
    put_back = db.execute(update(Trial).where(*silent, Trial.attempts < max_attempts).values(status="pending")
                          .returning(*_SILENT_TRIAL)).all()
    error = (literal("worker lost ") + cast(Trial.attempts, String) + " times (last: "
             + func.coalesce(Trial.worker, "unknown") + "); no attempts left")
    failed = db.execute(update(Trial).where(*silent, Trial.attempts >= max_attempts)
                        .values(status="failed", finished_at=utcnow(), error=error)
                        .returning(*_SILENT_TRIAL, Trial.error)).all()
    return put_back, failed


def stop_overdue(session: Session, *, job_id: int, seconds: float, reason: str) -> list[Row]:
    """Record running trials whose attempt started more than ``seconds`` ago as stopped, in one
    conditional statement (a result committed meanwhile is kept); returns their id and number."""
    return _core(session).execute(
        update(Trial)
        .where(Trial.job_id == job_id, Trial.status == "running",
               Trial.started_at < utcnow() - timedelta(seconds=seconds))
        .values(status="stopped", finished_at=utcnow(), error=reason)
        .returning(Trial.id, Trial.number)
    ).all()


def queued_longer_than(session: Session, *, job_id: int, seconds: float) -> list[Row]:
    """Queued trials whose message went out more than ``seconds`` ago, oldest first: rows of id and
    number (to put back with ``put_back_queued``, which checks they are still queued)."""
    cutoff = utcnow() - timedelta(seconds=seconds)
    return _core(session).execute(
        select(Trial.id, Trial.number)
        .where(Trial.job_id == job_id, Trial.status == "queued", Trial.queued_at < cutoff)
        .order_by(Trial.number)
    ).all()


def put_back_queued(session: Session, *, trial_ids: list[int]) -> set[int]:
    """Put queued trials back to pending (to be sent again) in one conditional statement; returns
    those it did. A trial a worker claimed since it was read as queued stays running."""
    return set(_core(session).scalars(
        update(Trial).where(Trial.id.in_(trial_ids), Trial.status == "queued").values(status="pending")
        .returning(Trial.id)))


def mark_queued(db: Session | Connection, *, trial_ids: list[int]) -> None:
    if trial_ids:
        _core(db).execute(MARK_QUEUED, {"trial_ids": trial_ids, "now": utcnow()})


def stop_in_flight(session: Session, *, job_id: int, reason: str) -> None:
    """Withdraw queued trials and ask running ones to stop (their workers see it next epoch)."""
    session.execute(
        update(Trial)
        .where(Trial.job_id == job_id, Trial.status.in_(IN_FLIGHT))
        .values(status="cancelled", finished_at=utcnow(), error=reason)
    )


def new_reports(session: Session, *, job_id: int, after_id: int) -> list[Row]:
    """Per-epoch reports of the job's running trials newer than ``after_id``, oldest first: rows of
    report_id, trial_id, number, arch, fidelity, attempt, step, metrics. Rows, not entities: a trial
    judged on them is stopped by ``stop_early``, never through the ORM."""
    return _core(session).execute(
        select(TrialMetric.id.label("report_id"), Trial.id.label("trial_id"), Trial.number, Trial.arch,
               Trial.fidelity, TrialMetric.attempt, TrialMetric.step, TrialMetric.metrics)
        .join(Trial, Trial.id == TrialMetric.trial_id)
        .where(Trial.job_id == job_id, Trial.status == "running", TrialMetric.attempt == Trial.attempts,
               TrialMetric.id > after_id)
        .order_by(TrialMetric.id)
    ).all()


def stop_early(session: Session, *, trial_id: int, attempt: int, metrics: dict[str, Any],
               objective: float | None, score: float | None) -> bool:
    """Record a trial as stopped early with the result of the report it was judged on, in one
    conditional statement (still running, the same attempt), so a result its worker committed
    since the report was read is kept; returns whether it was stopped."""
    return _core(session).execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.attempts == attempt, Trial.status == "running")
        .values(status="stopped", finished_at=utcnow(), metrics=_json_safe(metrics), objective=objective,
                score=score)
    ).rowcount == 1


CALL_LOG_VERSION = 2  # a row is {"version": 2, "calls": [...]}; version 1 rows are a list of calls, or one call


def strategy_calls(session: Session, *, job_id: int) -> list[dict[str, Any]]:
    """The calls logged since the job's strategy state was last saved whole, oldest first, from rows
    of any version (a job taken over from an older scheduler replays what it logged)."""
    rows = session.scalars(select(StrategyCall.call).where(StrategyCall.job_id == job_id).order_by(StrategyCall.id))
    calls: list[dict[str, Any]] = []
    for row in rows:
        if isinstance(row, dict) and "version" in row:
            if row["version"] != CALL_LOG_VERSION:
                raise ValueError(f"job {job_id}'s strategy log has rows of version {row['version']!r}, newer than "
                                 f"this Scion reads ({CALL_LOG_VERSION}); upgrade it")
            calls += row["calls"]
        else:
            calls += row if isinstance(row, list) else [row]
    return calls


def log_strategy_calls(session: Session, *, job_id: int, calls: list[dict[str, Any]]) -> None:
    """One row for one pass's calls, however many."""
    if calls:
        _core(session).execute(insert(StrategyCall), {
            "job_id": job_id, "call": {"version": CALL_LOG_VERSION, "calls": _json_safe(calls)},
        })


def save_strategy_state(session: Session, *, job_id: int, state: dict[str, Any]) -> None:
    """Save the strategy's state whole; the calls logged before it are then part of it."""
    db = _core(session)
    db.execute(update(Job).where(Job.id == job_id).values(strategy_state=state))
    db.execute(delete(StrategyCall).where(StrategyCall.job_id == job_id))


# ---------------------------------------------------------------- the workers and their share of jobs


def beat_worker(db: Session | Connection, *, name: str, queues: list[str], slots: int, device: str,
                gone_after_s: float) -> None:
    """Say a worker is alive: touch its row, or write it (at its start, or after a scheduler or
    an outage missed its beats) and delete the rows of workers silent for ``gone_after_s``."""
    db, now = _core(db), utcnow()
    fields = {"queues": ",".join(queues), "slots": slots, "device": device, "heartbeat_at": now}
    if db.execute(update(Worker).where(Worker.name == name).values(**fields)).rowcount == 0:
        db.execute(delete(Worker).where(Worker.heartbeat_at < now - timedelta(seconds=gone_after_s)))
        db.execute(insert(Worker).values(name=name, started_at=now, **fields))


def drop_worker(db: Session | Connection, *, name: str) -> None:
    """A worker shutting down takes its slots away at once."""
    _core(db).execute(delete(Worker).where(Worker.name == name))


def live_workers(db: Session | Connection, *, fresh_s: float) -> list[Row]:
    """Workers that beat within ``fresh_s``: rows of name, queues (comma-separated), slots, device,
    started_at, heartbeat_at, by name."""
    return _core(db).execute(
        select(Worker.name, Worker.queues, Worker.slots, Worker.device, Worker.started_at, Worker.heartbeat_at)
        .where(Worker.heartbeat_at >= utcnow() - timedelta(seconds=fresh_s)).order_by(Worker.name)).all()


QUEUE_JOBS = (select(Trial.job_id, func.count().label("in_flight"))
              .join(Job, Job.id == Trial.job_id)
              .where(Job.queue == bindparam("queue"), Job.status.not_in(TERMINAL_JOB_STATUSES),
                     Trial.told.is_(False), Trial.status.in_(IN_FLIGHT))
              .group_by(Trial.job_id))


def queue_load(db: Session | Connection, *, queue: str, fresh_s: float) -> tuple[int, dict[int, int]]:
    """What jobs share on ``queue``: the slots of the workers serving it that beat within ``fresh_s``,
    and the trials in flight (pending, queued, running) of each unfinished job on it that has any."""
    slots = sum(w.slots for w in live_workers(db, fresh_s=fresh_s) if queue in w.queues.split(","))
    if not slots:
        return 0, {}
    return slots, {row.job_id: row.in_flight for row in _core(db).execute(QUEUE_JOBS, {"queue": queue})}


# ---------------------------------------------------------------- worker side


# A worker's claim and result, built once (see TRIAL_COUNTS): they run once per message each.
CLAIM = (update(Trial)
         .where(Trial.id.in_(bindparam("trial_ids", expanding=True)), Trial.status.in_(("pending", "queued")))
         .values(status="running", worker=bindparam("by"), attempts=Trial.attempts + 1,
                 started_at=bindparam("now"), heartbeat_at=bindparam("now"))
         .returning(Trial.id, Trial.job_id, Trial.number, Trial.arch, Trial.fidelity, Trial.attempts, Trial.phase))
FINISH = (update(Trial)
          .where(Trial.id == bindparam("trial_id"), Trial.attempts == bindparam("attempt"), Trial.status == "running")
          .values(status=bindparam("outcome"), metrics=bindparam("result"), objective=bindparam("value"),
                  score=bindparam("signed"), error=bindparam("reason"),
                  started_at=func.coalesce(bindparam("began", type_=Trial.started_at.type), Trial.started_at),
                  finished_at=bindparam("ended")))


def claim_trials(db: Session | Connection, *, trial_ids: list[int], worker: str) -> list[Row]:
    """Move the given trials that wait for a worker to running, in one statement; returns what the
    worker needs of each (id, job_id, number, arch, fidelity, attempts: this attempt's number, phase) in
    the order of their numbers. A trial not runnable (running elsewhere, finished, cancelled) is
    left out: the idempotence guard."""
    rows = _core(db).execute(CLAIM, {"trial_ids": trial_ids, "by": worker, "now": utcnow()}).all()
    return sorted(rows, key=lambda row: (row.job_id, row.number))


def job_spec(db: Session | Connection, *, job_id: int) -> dict[str, Any]:
    return db.scalar(select(Job.spec).where(Job.id == job_id))


def heartbeat(db: Session | Connection, *, trial_id: int, attempt: int) -> bool:
    """Touch a running trial; False when this attempt should stop (cancelled, stopped, superseded)."""
    result = db.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.attempts == attempt, Trial.status == "running")
        .values(heartbeat_at=utcnow())
    )
    if result.rowcount != 1:
        return False
    job_status = db.scalar(select(Job.status).join(Trial, Trial.job_id == Job.id).where(Trial.id == trial_id))
    return job_status not in TERMINAL_JOB_STATUSES


def ended_jobs(db: Session | Connection, *, job_ids: set[int]) -> set[int]:
    """Those of ``job_ids`` that are no longer running (finished, failed, cancelled, or gone)."""
    live = set(db.scalars(select(Job.id).where(Job.id.in_(job_ids), Job.status.not_in(TERMINAL_JOB_STATUSES))))
    return job_ids - live


def record_killed(db: Session | Connection, *, trial_id: int, attempt: int, reason: str, note: str) -> bool:
    """An attempt whose worker process is ended because it did not stop in time: still running, it is
    stopped for ``reason``; already stopped or cancelled, its error keeps why. Either way ``note`` (what
    was done) is added. One conditional statement (the same attempt, not finished otherwise)."""
    running = Trial.status == "running"
    return _core(db).execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.attempts == attempt, Trial.status.in_(("running", "stopped", "cancelled")))
        .values(status=case((running, literal("stopped")), else_=Trial.status),
                error=case((running, literal(reason)), else_=func.coalesce(Trial.error, literal(reason))) + note,
                finished_at=func.coalesce(Trial.finished_at, utcnow()))
    ).rowcount == 1


def _json_safe(value: Any) -> Any:
    """NaN and ±inf become null: PostgreSQL's json rejects them and they are not valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def record_step(session: Session, *, trial_id: int, attempt: int, step: int, metrics: dict[str, Any]) -> None:
    session.add(
        TrialMetric(trial_id=trial_id, attempt=attempt, step=step, metrics=_json_safe(metrics), created_at=utcnow())
    )


def finish_trials(db: Session | Connection, *, outcomes: list[dict[str, Any]]) -> int:
    """Write attempts' outcomes in one round trip; returns how many were recorded (an outcome of a
    trial that moved on without it is ignored). Each outcome: trial_id, attempt, status and, where
    known, metrics, objective, score, error; began and ended (when its evaluation ran; now if not
    given: the claim's start is kept, the end is now)."""
    now = utcnow()
    result = _core(db).execute(FINISH, [{
        "trial_id": o["trial_id"], "attempt": o["attempt"], "outcome": o["status"],
        "result": _json_safe(o.get("metrics")), "value": o.get("objective"), "signed": o.get("score"),
        "reason": o.get("error"), "began": o.get("began"), "ended": o.get("ended", now),
    } for o in outcomes])
    return result.rowcount

