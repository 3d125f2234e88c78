"""One job as its scheduler sees it: the strategy in memory, the trials in the database.

Each ``step`` is one transaction that does what ``JobRun.reasons`` finds to do (the same list
tells the scheduler which jobs to skip): it reaps lost trials, tells the strategy every newly
finished trial, asks for new ones while slots are free and logs those calls to the strategy
(its whole state now and then) with the trial rows they produced, so a scheduler that dies at
any point is replaced by one that continues exactly where the database says the search stood.
A trial the pass read earlier is written only by conditional UPDATEs (still running, the same
attempt), so a worker's result committed meanwhile is never overwritten.
Messages to the workers go out only after that commit, for every trial still ``pending`` (cheap
new trials several to a message: ``scheduler.pace``), which then become ``queued``; a queued
trial whose message the broker lost is put back to ``pending`` and so sent again, and so is one
whose message could not be sent (broker down, scheduler died).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Row
from sqlalchemy.orm import Session

from scheduler import feedback
from scheduler.aside import Aside
from scheduler.dispatch import Send, Waiting, celery_waiting
from scheduler.fair_share import FairShare
from scheduler.pace import Pace
from scheduler.stages import SUPERNET_KEY, PhaseFailed, Stage, current_stage, next_stage
from scheduler.strategies import Proposal, make_strategy
from scheduler.strategy_log import LoggedStrategy
from scion.configs.one_shot import SEARCH, SUPERNET
from scion.settings import Settings
from scion.spec import JobSpec, load_spec
from spaces import InvalidArchitecture, SearchSpace, make_space
from storage import repository as repo
from storage.db import autocommit, session_scope, utcnow

log = logging.getLogger(__name__)


class Reason(StrEnum):
    """Something a scheduler pass must do for a job (``JobRun.reasons``), in the order it does it."""

    LOAD = "load"  # the strategy is not in memory: a job to start, take over or reload
    START = "start"  # the job is still pending: it starts now
    REAP_SILENT = "reap_silent"  # a running trial's worker has gone silent: put it back or fail it
    TRIAL_TIME_LIMIT = "trial_time_limit"  # a running trial is past the per-trial time limit: stop it
    CHECK_LOST_MESSAGES = "check_lost_messages"  # time to look for queued trials whose message the broker lost
    JOB_TIME_LIMIT = "job_time_limit"  # the job is past its time limit: stop what runs and end it
    RELAY_REPORTS = "relay_reports"  # the strategy or early stopping judges running trials by their epochs
    TELL = "tell"  # trials finished that the strategy has not been told of
    ASK = "ask"  # free slots within the budget: ask the strategy for new trials
    ASKED = "asked"  # asks that ran aside (scheduler/aside.py) have ended: write their trials
    NEXT_PHASE = "next_phase"  # a one-shot job's phase has created all its trials and none is in flight
    FINISH = "finish"  # every trial of the budget created and none in flight: the job is done
    SEND_PENDING = "send_pending"  # trials written but never sent (a failed send, a scheduler that died)


class JobRun:
    def __init__(self, job_id: int, owner: str, settings: Settings, send: Send,
                 waiting: Waiting = celery_waiting) -> None:
        self.job_id, self.owner, self.settings, self.send, self.waiting = job_id, owner, settings, send, waiting
        self.next_loss_check = time.monotonic() + settings.resend_after_seconds / 2
        self.spec: JobSpec | None = None
        self.space: SearchSpace | None = None
        self.strategy: LoggedStrategy | None = None
        self.stage: Stage | None = None  # which trials come next (scheduler.stages)
        self.next_checkpoint = 0.0  # monotonic time after which the strategy's state is next saved whole
        self.trials_created, self.started_at = 0, None  # the job's, from the pass's row as the pass changes them
        self.queue = "gpu"
        self.last_report_id = 0
        self.curves: dict[int, list[tuple[int, float]]] = {}  # running trial id -> (epoch, score) so far
        self.pace = Pace(settings.scheduler_batch_seconds)
        self.aside: Aside[tuple[list[Proposal], bool]] = Aside(settings.scheduler_aside_seconds, f"job-{job_id}-asks")
        self._said: list[tuple[int, str]] = []  # the pass's transitions, logged once it commits
        self.fair = FairShare(job_id, enabled=settings.scheduler_fair_share, fresh_s=settings.heartbeat_timeout_seconds)

    def step(self, activity: Row, reap_lost: bool = True) -> bool:
        """Advance the job; False once the job is finished (see ``_pass``). The job's transitions
        (started, phase, completed, failed) are logged once the pass has committed them."""
        self._said = []
        alive = self._pass(activity, reap_lost)
        self._say()
        return alive

    def give_up(self, activity: Row, reason: str) -> None:
        """Fail the job for ``reason`` without another pass: its passes keep failing (the scheduler
        counts them). What it is running is stopped, and the strategy held in memory, which may
        have seen what those passes rolled back, is neither asked nor saved."""
        self._said, self.strategy, self.stage = [], None, None
        with session_scope(durable=False) as session:
            self.trials_created, self.started_at = activity.trials_created, activity.started_at
            repo.stop_in_flight(session, job_id=self.job_id, reason="the job failed")
            self._finish(session, "failed", reason)
        self._say()

    def _say(self) -> None:
        for level, message in self._said:
            log.log(level, "job %s %s", self.job_id, message, extra={"job_id": self.job_id})

    def _pass(self, activity: Row, reap_lost: bool) -> bool:
        """One pass over the job, in one transaction. ``activity`` is the job's row of
        ``repo.job_activity``, read at the start of this scheduler pass, which found the job held
        by this scheduler; the pass writes the job row only if that is still so
        (``repo.update_held_job``, else a Conflict: lease lost). ``reap_lost=False`` spares trials with
        stale heartbeats: right after a database outage every heartbeat is stale, though the
        workers live. The pass does what ``reasons`` finds, and nothing else."""
        with session_scope(durable=False) as session:
            self.trials_created, self.started_at = activity.trials_created, activity.started_at
            reasons = self.reasons(activity, reap_lost)
            if Reason.LOAD in reasons:
                try:
                    self._load(session)
                except Exception as exc:  # a spec this version cannot run: fail the job, say why
                    self._finish(session, "failed", f"cannot start the job: {exc}")
                    return False
                reasons = self.reasons(activity, reap_lost)
            changed = {"queue": self.queue} if activity.queue != self.queue else {}  # what fair shares count by
            if Reason.START in reasons:
                self.started_at = changed["started_at"] = utcnow()
                changed["status"] = "running"
                if self.stage.phase is not None:
                    changed["phase"] = self.stage.phase
                self._event(session, "started", f"scheduler {self.owner} started the job",
                            said=f"started by scheduler {self.owner}")
            running, to_send = self._advance(session, activity, reasons)
            if self.trials_created != activity.trials_created:
                changed["trials_created"] = self.trials_created
            if running and changed:  # else _finish wrote the row
                repo.update_held_job(session, job_id=self.job_id, owner=self.owner, **changed)
        if to_send:
            self._send(to_send)
        return running

    def has_work(self, activity: Row, reap_lost: bool) -> bool:
        """Whether a pass would do anything. False lets the scheduler skip the pass, so that a job
        whose trials are all busy costs no more than its row of ``repo.job_activity``."""
        return bool(self.reasons(activity, reap_lost))

    def reasons(self, activity: Row, reap_lost: bool) -> list[Reason]:
        """What a pass must do for the job, judged from its row of ``repo.job_activity`` (read at the
        start of the pass: trials finishing since wait for the next one) and what this run holds in
        memory. The one place a pass's work is decided: ``has_work`` skips a job with none and
        ``step`` acts on each. Only ``LOAD`` while the spec is not loaded; while the strategy's asks
        run aside, nothing that needs the strategy."""
        if self.strategy is None:
            return [Reason.LOAD]
        asked, asking = self.aside.ready, self.aside.held
        budget, now, found = self.spec.budget, utcnow(), []
        if activity.status == "pending":
            found.append(Reason.START)
        if reap_lost and _past(now, activity.oldest_beat, self.settings.heartbeat_timeout_seconds):
            found.append(Reason.REAP_SILENT)
        if _past(now, activity.oldest_start, budget.trial_time_limit_s):
            found.append(Reason.TRIAL_TIME_LIMIT)
        # Trials the pass itself may end (reaped, overdue, stopped on their reports) are told in it too.
        ending = Reason.REAP_SILENT in found or Reason.TRIAL_TIME_LIMIT in found
        if time.monotonic() >= self.next_loss_check:
            found.append(Reason.CHECK_LOST_MESSAGES)
        if _past(now, activity.started_at, budget.time_limit_s):
            found.append(Reason.JOB_TIME_LIMIT)
        if self.strategy.reads_reports or self.spec.early_stopping is not None:
            found.append(Reason.RELAY_REPORTS)
            ending = True
        if activity.untold or ending:
            found.append(Reason.TELL)
        if activity.trials_created < self.stage.end and self.fair.may_ask(activity.in_flight, budget.max_parallel):
            found.append(Reason.ASK)
        if asked:
            found.append(Reason.ASKED)
        if activity.trials_created >= self.stage.end and activity.in_flight == 0:
            found.append(Reason.FINISH if self.stage.final else Reason.NEXT_PHASE)
        if activity.pending:
            found.append(Reason.SEND_PENDING)
        if asking and not asked:
            return [reason for reason in found if reason not in NEEDS_STRATEGY]
        return found

    def _load(self, session: Session) -> None:
        """The strategy as the database says it stands: its last whole state, then the calls logged since."""
        if self.strategy is not None:
            return
        plan = repo.job_plan(session, job_id=self.job_id)
        self.spec = load_spec(plan.spec)
        self.spec.check_runnable()
        self.space = make_space(self.spec.space)
        self.queue = self.spec.evaluator.queue
        strategy = make_strategy(self.spec.strategy, self.space, self.spec.seed)
        if plan.strategy_state:
            strategy.load_state_dict(plan.strategy_state)
        logged = LoggedStrategy(strategy, self.space)
        logged.replay(repo.strategy_calls(session, job_id=self.job_id))
        trials = repo.phase_trials(session, job_id=self.job_id) if self.spec.one_shot is not None else []
        self.stage = current_stage(self.spec, self.space, trials)
        self.strategy = logged
        self.next_checkpoint = time.monotonic() + self.settings.strategy_checkpoint_seconds

    def _advance(self, session: Session, activity: Row, reasons: list[Reason]) -> tuple[bool, list[list[int]]]:
        """Act on the pass's ``reasons``: whether the job goes on, and the messages to send once this
        pass commits, each the trials it carries: the pass's new trials (several to a message where
        they are cheap), those it put back to pending and any left pending before (one to a message)."""
        budget = self.spec.budget
        to_send = self._reap_lost(session) if Reason.REAP_SILENT in reasons else []
        if Reason.TRIAL_TIME_LIMIT in reasons:
            self._stop_overdue(session, budget.trial_time_limit_s)
        if Reason.CHECK_LOST_MESSAGES in reasons:
            to_send += self._resend_lost(session)
        if Reason.JOB_TIME_LIMIT in reasons:
            repo.stop_in_flight(session, job_id=self.job_id, reason="job time limit reached")
            self._tell_finished(session)
            self._finish(session, "completed", None, note=f"time limit of {budget.time_limit_s:g} s reached")
            return False, []

        if Reason.RELAY_REPORTS in reasons:
            self._relay_reports(session)
        if Reason.TELL in reasons:
            self._tell_finished(session)
        if Reason.ASKED in reasons:
            proposals, exhausted = self.aside.take()
            new = self._add_trials(session, proposals)
        else:
            new, exhausted = self._ask(session, activity) if Reason.ASK in reasons else ([], False)
        if Reason.NEXT_PHASE in reasons or (exhausted and not new and activity.in_flight == 0 and not self.stage.final):
            try:
                self._next_phase(session)
            except PhaseFailed as exc:
                self._finish(session, "failed", str(exc))
                return False, []
            new, exhausted = self._ask(session, activity)
        if self.aside.held:  # its calls are logged with the trials they make, by the pass that writes them
            return True, self._to_send(session, reasons, to_send, new)
        self._save_strategy(session)

        if Reason.FINISH in reasons or (exhausted and not new and activity.in_flight == 0):
            note = "budget spent" if Reason.FINISH in reasons else "no more candidates to propose"
            self._finish(session, "completed", None, note=note)
            return False, []
        return True, self._to_send(session, reasons, to_send, new)

    def _to_send(self, session: Session, reasons: list[Reason], to_send: list[int],
                 new: list[int]) -> list[list[int]]:
        if Reason.SEND_PENDING in reasons:
            to_send += repo.pending_trial_ids(session, job_id=self.job_id)
        again = sorted(set(to_send) - set(new))  # pending_trial_ids reads the new trials too
        return [[trial_id] for trial_id in again] + self.pace.messages(new, self.spec.budget.max_parallel)

    def _ask(self, session: Session, activity: Row) -> tuple[list[int], bool]:
        """Ask the strategy for trials while slots are free (within max_parallel and the job's fair
        share of its queue's workers: scheduler.fair_share), and write them; returns their ids and
        whether the strategy had nothing more to propose. Asks that take longer than
        ``scheduler_aside_seconds`` go on aside (nothing written now: a later pass writes them)."""
        budget = self.spec.budget
        # As of the pass's start: trials finishing since only free slots, so this never overfills.
        room = min(self.stage.end - self.trials_created,
                   self.fair.room(session, queue=self.queue, in_flight=activity.in_flight,
                                  max_parallel=budget.max_parallel,
                                  per_message=self.pace.per_message(budget.max_parallel)))
        first, told = self.trials_created, self.strategy.take_unsaved()
        answer = self.aside.run(lambda: self._proposals(first, room))
        if answer is None:  # this pass marked those trials told: its calls so far are logged with it
            repo.log_strategy_calls(session, job_id=self.job_id, calls=told)
            return [], False
        self.strategy.unsaved[:0] = told
        return self._add_trials(session, answer[0]), answer[1]

    def _proposals(self, first: int, room: int) -> tuple[list[Proposal], bool]:
        """Up to ``room`` proposals for trials numbered from ``first``, and whether the strategy had
        nothing more to propose."""
        proposals: list[Proposal] = []
        while len(proposals) < room:
            proposal = self._next_proposal(first + len(proposals))
            if proposal is None:
                return proposals, True
            proposals.append(proposal)
        return proposals, False

    def _next_proposal(self, number: int) -> Proposal | None:
        fixed = self.stage.proposal(number)
        if fixed is not None:
            return fixed
        if number - self.stage.start < len(self.spec.warm_start):
            # a retrain job trains for its evaluator's schedule, whatever epochs its architecture carries
            retrain = {"epochs": self.spec.evaluator.epochs} if self.spec.kind == "retrain" else None
            return Proposal(self.spec.warm_start[number - self.stage.start], retrain)
        return self.strategy.ask()

    def _next_phase(self, session: Session) -> None:
        """Plan a one-shot job's next phase from its trials, and say so on the job's row and in
        its events; raises PhaseFailed when the phase that ended left nothing to go on with."""
        ended = self.stage
        self.stage = next_stage(self.spec, self.space, ended, repo.phase_trials(session, job_id=self.job_id))
        repo.update_held_job(session, job_id=self.job_id, owner=self.owner, phase=self.stage.phase)
        what = ("the strategy's proposals" if self.stage.fixed is None
                else f"{self.stage.size} architecture(s) from the {ended.phase} phase")
        self._event(session, "phase", f"{ended.phase} phase done; {self.stage.phase} phase: trials {self.stage.start}-"
                                      f"{self.stage.end - 1 if self.stage.fixed is not None else '…'}, {what}")

    def _add_trials(self, session: Session, proposals: list[Proposal]) -> list[int]:
        """Write the proposals as the job's next trials, pending; returns their ids."""
        trials, phase = [], self.stage.phase
        for proposal in proposals:
            if phase == SUPERNET:
                trials.append({"arch": None, "arch_key": SUPERNET_KEY, "fidelity": None, "phase": phase})
                continue
            try:
                arch = self.space.validate(proposal.arch)
            except InvalidArchitecture as exc:
                raise RuntimeError(
                    f"strategy {self.spec.strategy.type!r} proposed an invalid architecture: {exc}") from exc
            trials.append({"arch": arch, "arch_key": self.space.key(arch), "fidelity": proposal.fidelity,
                           "phase": phase})
        ids = repo.add_trials(session, job_id=self.job_id, first_number=self.trials_created, trials=trials)
        self.trials_created += len(ids)
        return ids

    def _tell_finished(self, session: Session) -> int:
        trials = repo.take_finished(session, job_id=self.job_id)
        for trial in trials:
            self.pace.observe(trial)
            if trial.phase in (None, SEARCH):  # the supernet and the retrained networks are not the strategy's
                self.strategy.tell(feedback.finished(
                    self.spec, number=trial.number, arch=trial.arch, status=trial.status, score=trial.score,
                    metrics=trial.metrics, fidelity=trial.fidelity))
            if trial.status == "failed":
                repo.add_event(session, job_id=self.job_id, kind="trial_failed",
                               message=f"trial {trial.number} failed: {(trial.error or '').splitlines()[0][:300]}")
        return len(trials)

    def _relay_reports(self, session: Session) -> None:
        """Hand per-epoch results to strategies that decide on them and to early stopping, and
        stop what they reject.

        The stopped trial keeps the result it was judged on; its worker notices at its next
        report (within one epoch) and ends the run. A result the worker wrote since the reports
        were read wins (``repo.stop_early`` is conditional)."""
        stopping = self.spec.early_stopping
        reports = repo.new_reports(session, job_id=self.job_id, after_id=self.last_report_id)
        newest = {report.trial_id: report.step for report in reports}  # ordered by report, so the last wins
        kth_best = repo.kth_best_score(session, job_id=self.job_id, k=stopping.top_k) if stopping else None
        judged = set()  # trials stopped, or found finished when stopping them
        for report in reports:
            self.last_report_id = report.report_id
            if report.trial_id in judged:
                continue
            verdict = feedback.judge_report(
                self.spec, self.strategy, stopping, self.curves.setdefault(report.trial_id, []),
                number=report.number, step=report.step, metrics=report.metrics, kth_best=kth_best,
                final_epoch=feedback.final_epoch(self.space, report.arch, report.fidelity, self.spec.evaluator,
                                                 report.step),
                newest_step=newest[report.trial_id])
            if verdict.stop is None:
                continue
            judged.add(report.trial_id)
            self.curves.pop(report.trial_id, None)
            if repo.stop_early(session, trial_id=report.trial_id, attempt=report.attempt, metrics=verdict.metrics,
                               objective=verdict.objective, score=verdict.score):
                repo.add_event(session, job_id=self.job_id, kind="trial_stopped",
                               message=f"trial {report.number} stopped after epoch {report.step} {verdict.stop}")

    def _reap_lost(self, session: Session) -> list[int]:
        """Re-queue trials whose worker went silent, up to the attempt budget; returns those re-queued."""
        put_back, failed = repo.reap_silent(session, job_id=self.job_id, max_attempts=self.spec.budget.max_attempts,
                                            older_than_s=self.settings.heartbeat_timeout_seconds)
        for trial in put_back:
            repo.add_event(session, job_id=self.job_id, kind="trial_lost",
                           message=f"trial {trial.number} lost its worker {trial.worker}; "
                                   f"attempt {trial.attempts + 1} queued")
        for trial in failed:
            repo.add_event(session, job_id=self.job_id, kind="trial_lost",
                           message=f"trial {trial.number} failed: {trial.error}")
        return [trial.id for trial in put_back]

    def _stop_overdue(self, session: Session, limit_s: float) -> None:
        """Record trials running past the per-trial time limit as stopped, so their slots go to the
        next trials; each worker interrupts its own run at the limit (worker.runner.time_limit),
        and a late result is ignored."""
        reason = f"exceeded the trial time limit of {limit_s:g} s"
        for trial in repo.stop_overdue(session, job_id=self.job_id, seconds=limit_s, reason=reason):
            self.curves.pop(trial.id, None)
            repo.add_event(session, job_id=self.job_id, kind="trial_stopped",
                           message=f"trial {trial.number} stopped: {reason}")

    def _resend_lost(self, session: Session) -> list[int]:
        """Put back to pending (to be sent again) the trials queued for ``resend_after_seconds``
        while the broker holds no message in their queue: it lost them (restarted without
        persistence, flushed). Checked every half of that interval. A message that was not lost
        after all becomes a duplicate, which the worker's claim skips. Returns those put back."""
        self.next_loss_check = time.monotonic() + self.settings.resend_after_seconds / 2
        overdue = repo.queued_longer_than(session, job_id=self.job_id, seconds=self.settings.resend_after_seconds)
        if not overdue:
            return []
        try:
            if self.waiting(self.queue):
                return []  # the queue is still draining: these trials wait their turn
        except Exception as exc:  # broker down: nothing can be sent now anyway
            log.warning("could not count the messages in queue %r (%s); will ask again", self.queue, exc)
            return []
        put_back = repo.put_back_queued(session, trial_ids=[t.id for t in overdue])
        overdue = [t for t in overdue if t.id in put_back]
        if not overdue:
            return []
        numbers = ", ".join(str(t.number) for t in overdue[:20]) + (f" and {len(overdue) - 20} more"
                                                                     if len(overdue) > 20 else "")
        repo.add_event(session, job_id=self.job_id, kind="trials_resent",
                       message=f"trial(s) {numbers} queued for over {self.settings.resend_after_seconds:g} s with "
                               f"no message left in queue {self.queue!r} (lost by the broker?); sending them again")
        return [t.id for t in overdue]

    def _save_strategy(self, session: Session, *, whole: bool = False) -> None:
        """Log the strategy's new calls with this pass's rows, or save its state whole instead when
        the job ends or ``strategy_checkpoint_seconds`` have passed: its state grows with the job,
        the calls of one pass do not."""
        if whole or (self.strategy.unsaved and time.monotonic() >= self.next_checkpoint):
            repo.save_strategy_state(session, job_id=self.job_id, state=self.strategy.state_dict())
            self.next_checkpoint = time.monotonic() + self.settings.strategy_checkpoint_seconds
        else:
            repo.log_strategy_calls(session, job_id=self.job_id, calls=self.strategy.take_unsaved())

    def _finish(self, session: Session, status: str, error: str | None, note: str = "") -> None:
        if self.strategy is not None:
            self._save_strategy(session, whole=True)
        phase = self.stage.phase if self.stage is not None else None  # a one-shot job: its final phase's best
        best = repo.best_trial(session, job_id=self.job_id, phase=phase)
        if status == "completed" and best is None and self.trials_created:
            status, error = "failed", "no trial completed; see the trials' errors"
        repo.update_held_job(session, job_id=self.job_id, owner=self.owner, status=status, finished_at=utcnow(),
                             error=error, trials_created=self.trials_created, started_at=self.started_at,
                             best_trial_number=best.number if best else None,
                             best_objective=best.objective if best else None,
                             lease_owner=None, lease_expires_at=None)
        summary = f"best trial {best.number}: {best.objective:.4g}" if best else (error or "no trials")
        why = note or error
        self._event(session, status, f"job {status} ({why})" + ("" if summary == why else f"; {summary}"),
                    said=f"{status} ({'; '.join(filter(None, (note, error)))})" + (f"; {summary}" if best else ""),
                    level=logging.WARNING if status == "failed" else logging.INFO)

    def _event(self, session: Session, kind: str, message: str, *, said: str | None = None,
               level: int = logging.INFO) -> None:
        """A transition of the job: in its events, and (as ``said``, else the message) in the log
        once the pass commits."""
        repo.add_event(session, job_id=self.job_id, kind=kind, message=message)
        self._said.append((level, said or f"{kind}: {message}"))

    def _send(self, messages: list[list[int]]) -> None:
        """Send the messages for the committed pending trials and mark their trials queued in one
        statement. When the sender fails, every trial stays pending and is sent on a later pass (a
        message that did reach the broker then arrives twice, and the worker's claim skips the
        second)."""
        try:
            self.send(messages, self.queue)
        except Exception:  # broker down
            log.warning("could not send trial(s) to the broker; will retry", exc_info=True)
            return
        with autocommit(durable=False) as connection:
            repo.mark_queued(connection, trial_ids=[trial_id for trial_ids in messages for trial_id in trial_ids])

# What a pass leaves for later while the strategy's asks run aside: whatever calls the strategy.
NEEDS_STRATEGY = frozenset({Reason.JOB_TIME_LIMIT, Reason.RELAY_REPORTS, Reason.TELL, Reason.ASK,
                            Reason.NEXT_PHASE, Reason.FINISH})


def _past(now: datetime, since: datetime | None, limit_s: float | None) -> bool:
    """Whether more than ``limit_s`` seconds (if a limit is set) have passed since ``since`` (if known)."""
    return bool(limit_s) and since is not None and (now - since).total_seconds() > limit_s
