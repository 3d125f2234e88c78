"""Running one attempt of each trial of a message: claim them, evaluate them, write back what happened.

Called by the Celery task with nothing but trial ids, so a duplicate or late message is
harmless: the claim is a conditional UPDATE and only one attempt can hold a trial. Every write
(claim, epoch, result) is retried while the database is unreachable, so a database restart
delays a trial but neither fails it nor loses its result.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import torch
from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError

from broker.nudge import nudger
from scion.configs.one_shot import SUPERNET
from scion.settings import get_settings
from scion.spec import Constraint, JobSpec, load_spec
from spaces import SearchSpace, make_space
from storage import artifacts
from storage import repository as repo
from storage.db import autocommit, retry_unreachable, session_scope, utcnow
from worker.evaluators import job_evaluators
from worker.evaluators.base import Evaluator
from worker.outcomes import TrialFailed, TrialStopped, what_failed
from worker.stopping import STOPPER, killed_note
from worker.training import datasets

log = logging.getLogger(__name__)

_ERROR_LIMIT = 4000
T = TypeVar("T")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeats:
    """The one thread per worker process that touches its running trials every
    ``heartbeat_seconds`` (a trial that falls silent is re-run elsewhere), and tells a trial to stop
    when the database says so (cancelled, stopped, superseded). One long-lived thread rather than
    one per trial: starting and joining a thread cost more than a cheap trial's own work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: set[TrialContext] = set()
        self._thread: threading.Thread | None = None

    def watch(self, ctx: TrialContext) -> None:
        with self._lock:
            self._watched.add(ctx)
            if self._thread is None or not self._thread.is_alive():  # also the first trial after a fork
                self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)
                self._thread.start()

    def release(self, ctx: TrialContext) -> None:
        with self._lock:
            self._watched.discard(ctx)

    def _loop(self) -> None:
        while True:
            time.sleep(get_settings().heartbeat_seconds)
            with self._lock:
                watched = list(self._watched)
            for ctx in watched:
                try:
                    with autocommit(durable=False) as connection:
                        if not repo.heartbeat(connection, trial_id=ctx.trial_id, attempt=ctx.attempt):
                            ctx.stop("stop requested")
                except Exception:  # a database blip must not kill the trial; the next beat retries
                    log.warning("heartbeat for trial %s failed", ctx.trial_id, exc_info=True)
            self._forget_ended_jobs({ctx.job_id for ctx in watched})

    @staticmethod
    def _forget_ended_jobs(running: set[int]) -> None:
        """Give back the memory of the datasets of jobs that ended (cancelled, finished) since this
        process loaded them: one query, only while it keeps data of jobs it is not running now."""
        idle = datasets.cached_jobs() - running
        if not idle:
            return
        try:
            with autocommit(durable=False) as connection:
                datasets.forget_jobs(repo.ended_jobs(connection, job_ids=idle))
        except Exception:  # the next beat asks again
            log.warning("checking whether jobs %s ended failed", sorted(idle), exc_info=True)


_HEARTBEATS = _Heartbeats()


class TrialContext:
    """The evaluator's line back to the database: epochs, heartbeats and stop requests."""

    def __init__(self, trial: Row, device: str) -> None:
        self.trial_id, self.job_id, self.number = trial.id, trial.job_id, trial.number
        self.attempt, self.device, self.fidelity = trial.attempts, device, trial.fidelity
        self.constraints: list[Constraint] = []  # the job's, once its plan is known
        self._stop = threading.Event()

    def __enter__(self) -> TrialContext:
        _HEARTBEATS.watch(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _HEARTBEATS.release(self)

    def stop(self, reason: str) -> None:
        """Stop at the next epoch, and sooner where the evaluation can be interrupted (worker/stopping.py)."""
        self._stop.set()
        STOPPER.request(self.trial_id, reason)

    def artifact_path(self, number: int) -> Path:
        return artifacts.checkpoint_path(self.job_id, number)

    def check_costs(self, costs: dict[str, float]) -> None:
        """Called once the candidate is built and measured, before it trains: a candidate outside
        the job's constraints fails here, and a trial stopped meanwhile (cancelled, out of time)
        ends here rather than after its first epoch."""
        broken = [v for c in self.constraints if c.metric in costs and (v := c.violation(costs[c.metric]))]
        if broken:
            raise TrialFailed(f"infeasible, not trained: {'; '.join(broken)}", metrics=costs)
        if self._stop.is_set():
            raise TrialStopped("stop requested before training")

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        def record() -> bool:
            with session_scope() as session:
                repo.record_step(session, trial_id=self.trial_id, attempt=self.attempt, step=epoch, metrics=metrics)
                return repo.heartbeat(session, trial_id=self.trial_id, attempt=self.attempt)

        with STOPPER.deferred():
            recorded = _persist(record, f"reporting epoch {epoch} of trial {self.trial_id}")
        if not recorded:
            self._stop.set()
        if self._stop.is_set():
            raise TrialStopped(f"stop requested after epoch {epoch}")


_PLANS: dict[tuple[str, int], tuple[JobSpec, SearchSpace, dict[str | None, Evaluator]]] = {}


def _job_plan(job_id: int, raw_spec: dict[str, Any] | None
              ) -> tuple[JobSpec, SearchSpace, dict[str | None, Evaluator]]:
    """A job's validated spec, space and evaluators (by phase), built once per worker process from its spec
    (``raw_spec``, read by the claim when this process had no plan for the job): a job's spec
    never changes, and validating it (file checks included) on every trial would dominate cheap
    trials."""
    key = (get_settings().db_url, job_id)
    if key not in _PLANS:
        if len(_PLANS) >= 64:
            _PLANS.pop(next(iter(_PLANS)))
        spec = load_spec(raw_spec)
        _PLANS[key] = (spec, make_space(spec.space), job_evaluators(job_id, spec))
    return _PLANS[key]


def _persist(work: Callable[[], T], what: str) -> T:
    return retry_unreachable(work, what=what, patience_s=get_settings().database_retry_seconds)


def _claim(trial_ids: list[int]) -> tuple[list[Row], dict[int, dict[str, Any]]]:
    """The trials claimed, and the specs of their jobs for which this process has no plan yet."""
    with autocommit(durable=False) as connection:  # a claim lost in a server crash is re-sent
        trials = repo.claim_trials(connection, trial_ids=trial_ids, worker=worker_name())
        unplanned = {t.job_id for t in trials if (get_settings().db_url, t.job_id) not in _PLANS}
        return trials, {job_id: repo.job_spec(connection, job_id=job_id) for job_id in unplanned}


def _evaluate(trial: Row, ctx: TrialContext, raw_spec: dict[str, Any] | None) -> dict[str, Any]:
    """One claimed trial's outcome, for ``repo.finish_trials``: whatever the candidate does
    (crashes, runs out of memory, produces NaN, overruns its time limit) ends up here as its own
    trial's status and error, never as an exception, except the database's own failures."""
    began = utcnow()
    outcome: dict[str, Any]
    try:
        spec, space, evaluators = _job_plan(trial.job_id, raw_spec)
        ctx.constraints = spec.constraints
        with (STOPPER.running(trial.id, spec.budget.trial_time_limit_s, lambda reason: _record_killed(trial, reason)),
              datasets.for_job(trial.job_id)):
            metrics = evaluators[trial.phase].evaluate(space, trial.arch, ctx)
        objective, score = spec.score(metrics)
        if trial.phase == SUPERNET:  # trained weights, not a candidate: never ranked with the networks
            outcome = dict(status="completed", metrics=metrics)
        elif objective is None:
            outcome = dict(status="failed", metrics=metrics,
                           error=f"objective {spec.primary.metric!r} is missing or NaN in the result")
        else:
            outcome = dict(status="completed", metrics=metrics, objective=objective, score=score)
    except TrialStopped as exc:
        outcome = dict(status="stopped", error=str(exc))
    except TrialFailed as exc:
        outcome = dict(status="failed", error=str(exc), metrics=exc.metrics)
    except DBAPIError:  # the service's failure, not the candidate's: the attempt is lost and run again
        raise
    except MemoryError:
        outcome = dict(status="failed", error="out of memory: the candidate did not fit in host memory")
    except torch.cuda.OutOfMemoryError as exc:
        # An accelerator's memory (torch.OutOfMemoryError itself from torch 2.5), from an evaluator
        # that does not turn it into TrialFailed as worker.training.trainer.run_oom_guarded does.
        outcome = dict(status="failed", error=f"out of memory: {exc}"[:_ERROR_LIMIT])
    except Exception as exc:  # a broken candidate fails alone; the worker lives on
        log.warning("trial %s (job %s, number %s) raised", trial.id, trial.job_id, trial.number, exc_info=True,
                    extra={"job_id": trial.job_id, "trial_id": trial.id, "trial_number": trial.number})
        outcome = dict(status="failed", error=what_failed(exc)[:_ERROR_LIMIT])  # the traceback stays in the log
    return {**outcome, "trial_id": trial.id, "attempt": trial.attempts, "began": began, "ended": utcnow()}


def _record_killed(trial: Row, reason: str) -> None:
    """The trial's record once its evaluation overstayed its grace and the process is about to end:
    stopped, its error saying so (worker/stopping.py). One attempt, no retries: the process must end."""
    with autocommit() as connection:
        repo.record_killed(connection, trial_id=trial.id, attempt=trial.attempts, reason=reason,
                           note=killed_note(get_settings().stop_grace_seconds))
    nudger().nudge()


def run_trials(trial_ids: list[int], device: str) -> dict[int, str]:
    """Evaluate, one after another, those of the trials that still wait for a worker; returns the
    outcome's status of each trial claimed. The trials of one message (several only where the
    scheduler found them cheap) are claimed in one statement and their outcomes written in one
    round trip; each keeps its own start and end, and all are kept alive by heartbeats from the
    claim on."""
    trials, specs = _persist(lambda: _claim(trial_ids), f"claiming trial(s) {trial_ids}")
    if not trials:
        return {}
    with ExitStack() as watching:
        contexts = [watching.enter_context(TrialContext(trial, device)) for trial in trials]
        outcomes = [_evaluate(trial, ctx, specs.get(trial.job_id)) for trial, ctx in zip(trials, contexts)]

    def finish() -> int:
        with autocommit() as connection:
            return repo.finish_trials(connection, outcomes=outcomes)

    recorded = _persist(finish, f"storing the result(s) of trial(s) {trial_ids}")
    nudger().nudge(count=len(outcomes))
    for trial, outcome in zip(trials, outcomes):
        _log_outcome(trial, outcome, device)
    if recorded < len(outcomes):
        log.info("%d of %d result(s) of trial(s) %s not recorded: the trial had moved on (stopped, cancelled or "
                 "re-run)", len(outcomes) - recorded, len(outcomes), [t.id for t in trials])
    return {trial.id: outcome["status"] for trial, outcome in zip(trials, outcomes)}


def _log_outcome(trial: Row, outcome: dict[str, Any], device: str) -> None:
    """One line per trial evaluated, for operators (the database has the rest): how it ended, on
    which device, how long it took, and its objective or its error's first line. The worker's
    node comes from the process's fields (scion/logs.py)."""
    status, seconds = outcome["status"], (outcome["ended"] - outcome["began"]).total_seconds()
    fields = {"job_id": trial.job_id, "trial_id": trial.id, "trial_number": trial.number, "device": device,
              "status": status, "duration_s": round(seconds, 3)}
    if outcome.get("objective") is not None:
        fields["objective"] = outcome["objective"]
        said = f": objective {outcome['objective']:.6g}"
    elif outcome.get("error"):
        fields["error"] = outcome["error"]
        said = f": {outcome['error'].splitlines()[0]}"
    else:
        said = ""
    log.log(logging.WARNING if status == "failed" else logging.INFO,
            "trial %s (job %s, number %s) %s in %.2f s%s", trial.id, trial.job_id, trial.number, status, seconds, said,
            extra=fields)
