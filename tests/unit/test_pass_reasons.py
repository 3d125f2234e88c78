"""What a scheduler pass does is decided in one place, ``JobRun.reasons``: the scheduler skips a
job with no reason and a pass acts on each reason found.

For every reason there is a case here: a job's state whose activity row yields that reason, and
what a user would then see change after one pass. A reason added without a case, or without an
action in the pass, fails ``test_every_reason_has_a_case`` or ``test_the_pass_acts_on_each_reason``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from scheduler.aside import Aside
from scheduler.job_run import JobRun, Reason
from scion.settings import Settings, get_settings
from scion.spec import JobSpec
from spaces import make_space
from storage import repository as repo
from storage.db import session_scope, utcnow
from storage.models import Job, JobEvent, Trial, TrialMetric

OWNER = "the-scheduler"
LONG_AGO = timedelta(minutes=10)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Iterator[Settings]:
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


class Sent(list):
    """The messages the pass sent: lists of trial ids."""

    def __call__(self, messages: list[list[int]], queue: str) -> None:
        self.extend(list(trial_ids) for trial_ids in messages)


def spec(*, epochs: int = 1, early_stopping: dict[str, Any] | None = None, **budget: Any) -> JobSpec:
    return JobSpec.model_validate({
        "space": {"type": "nb201", "channels": 4, "cells_per_stage": 1},
        "strategy": {"type": "random"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": epochs, "latency_repeats": 1},
        "budget": {"max_trials": 4, "max_parallel": 2, **budget},
        "early_stopping": early_stopping,
    })


class Case:
    """A job held by OWNER, its trials written as a case needs them, and a JobRun loaded on it."""

    def __init__(self, job_spec: JobSpec, settings: Settings, *, status: str = "running",
                 started: timedelta = timedelta(0)) -> None:
        self.spec, self.sent = job_spec, Sent()
        self.space = make_space(job_spec.space)
        now = utcnow()
        with session_scope() as session:
            job = repo.create_job(session, name="case", spec=job_spec.model_dump(mode="json"))
            job.status, job.lease_owner, job.lease_expires_at = status, OWNER, now + timedelta(minutes=5)
            job.started_at = now - started if status == "running" else None
            session.flush()
            self.job_id = job.id
        self.run = JobRun(self.job_id, OWNER, settings, self.sent, waiting=lambda queue: 0)
        self.numbers = 0

    def load(self) -> Case:
        with session_scope() as session:
            self.run._load(session)
        return self

    def trial(self, status: str, **values: Any) -> int:
        """Write the job's next trial (attempt 1 unless pending) and count it as created."""
        now = utcnow()
        arch = self.space.sample(np.random.default_rng(self.numbers))
        row = {"job_id": self.job_id, "number": self.numbers, "status": status, "arch": arch,
               "arch_key": self.space.key(arch), "attempts": 0 if status == "pending" else 1, "told": False,
               "created_at": now, "queued_at": now, "started_at": now, "heartbeat_at": now, "worker": "w:1", **values}
        with session_scope() as session:
            trial_id = session.scalar(insert(Trial).returning(Trial.id), row)
            session.execute(update(Job).where(Job.id == self.job_id).values(trials_created=self.numbers + 1))
        self.numbers += 1
        return trial_id

    def result(self, value: float) -> dict[str, Any]:
        """A finished trial's columns for ``value`` of the job's objective."""
        metrics = {self.spec.primary.metric: value}
        objective, score = self.spec.score(metrics)
        return {"metrics": metrics, "objective": objective, "score": score, "finished_at": utcnow()}

    def activity(self) -> Any:
        with session_scope() as session:
            return repo.job_activity(session, job_ids=[self.job_id])[self.job_id]

    def job(self) -> Job:
        with session_scope() as session:
            return session.get(Job, self.job_id)

    def trials(self) -> list[Trial]:
        with session_scope() as session:
            return list(session.scalars(select(Trial).where(Trial.job_id == self.job_id).order_by(Trial.number)))

    def events(self, kind: str) -> list[str]:
        with session_scope() as session:
            return list(session.scalars(select(JobEvent.message)
                                        .where(JobEvent.job_id == self.job_id, JobEvent.kind == kind)))


# Each case: (a job whose activity row yields the reason, what one pass then visibly did).
Check = Callable[[Case], None]


def load(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(), settings)  # not loaded: a job this scheduler just took over
    case.trial("running")
    case.trial("running")

    def check(case: Case) -> None:
        assert case.run.strategy is not None and case.run.reasons(case.activity(), True) == []

    return case, check


def start(settings: Settings) -> tuple[Case, Check]:
    def check(case: Case) -> None:
        assert case.job().status == "running" and case.job().started_at is not None
        assert case.events("started") == [f"scheduler {OWNER} started the job"]

    return Case(spec(), settings, status="pending").load(), check


def reap_silent(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(), settings).load()
    silent = case.trial("running", heartbeat_at=utcnow() - LONG_AGO)
    case.trial("running")

    def check(case: Case) -> None:
        assert case.trials()[0].status == "queued" and case.sent == [[silent]]
        assert len(case.events("trial_lost")) == 1

    return case, check


def trial_time_limit(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(trial_time_limit_s=60), settings).load()
    case.trial("running", started_at=utcnow() - LONG_AGO)
    case.trial("running")

    def check(case: Case) -> None:
        overdue = case.trials()[0]
        assert overdue.status == "stopped" and overdue.told and "trial time limit of 60 s" in overdue.error

    return case, check


def check_lost_messages(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(), settings).load()
    lost = case.trial("queued", queued_at=utcnow() - LONG_AGO, started_at=None, heartbeat_at=None, attempts=0)
    case.trial("running")
    case.run.next_loss_check = time.monotonic()

    def check(case: Case) -> None:
        assert case.sent == [[lost]] and case.trials()[0].status == "queued"
        assert len(case.events("trials_resent")) == 1

    return case, check


def job_time_limit(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(time_limit_s=60), settings, started=LONG_AGO).load()
    case.trial("completed", **case.result(90.0))
    case.trial("running")

    def check(case: Case) -> None:
        assert case.job().status == "completed"
        assert [t.status for t in case.trials()] == ["completed", "cancelled"]
        assert "time limit of 60 s reached" in case.events("completed")[0]

    return case, check


def relay_reports(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(epochs=10, early_stopping={"min_epochs": 2, "top_k": 1}), settings).load()
    case.trial("completed", told=True, **case.result(90.0))
    hopeless = case.trial("running")
    with session_scope() as session:
        session.execute(insert(TrialMetric), [
            {"trial_id": hopeless, "attempt": 1, "step": step, "metrics": case.result(10.0)["metrics"],
             "created_at": utcnow()} for step in (1, 2)])

    def check(case: Case) -> None:
        assert case.trials()[1].status == "stopped"
        (event,) = case.events("trial_stopped")
        assert event.startswith("trial 1 stopped after epoch 2 by learning-curve early stopping")

    return case, check


def tell(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(max_trials=2), settings).load()
    case.trial("completed", **case.result(90.0))
    case.trial("running")

    def check(case: Case) -> None:
        assert case.trials()[0].told
        with session_scope() as session:
            assert repo.trial_counts(session, job_id=case.job_id) == {"completed": 1, "running": 1}

    return case, check


def ask(settings: Settings) -> tuple[Case, Check]:
    def check(case: Case) -> None:
        trials = case.trials()
        assert [t.status for t in trials] == ["queued", "queued"] and case.job().trials_created == 2
        assert sorted(sum(case.sent, [])) == [t.id for t in trials]

    return Case(spec(), settings).load(), check


def asked(settings: Settings) -> tuple[Case, Check]:
    """Asks that went on aside (scheduler/aside.py: the strategy took longer than the pass waits) and
    have since ended."""
    case = Case(spec(), settings).load()
    case.run.aside = Aside(1e-3, "asks")
    answered = threading.Event()
    assert case.run.aside.run(lambda: (answered.wait(5), case.run._proposals(0, 2))[1]) is None
    assert case.run.reasons(case.activity(), reap_lost=True) == []  # the strategy is the asks' meanwhile
    answered.set()
    deadline = time.monotonic() + 5
    while not case.run.aside.ready:
        assert time.monotonic() < deadline, "the asks did not end"
        time.sleep(0.01)

    def check(case: Case) -> None:
        trials = case.trials()
        assert [t.status for t in trials] == ["queued", "queued"] and case.job().trials_created == 2
        with session_scope() as session:
            logged = repo.strategy_calls(session, job_id=case.job_id)
        assert [list(call) for call in logged] == [["ask"], ["ask"]]  # logged with the trials they made

    return case, check


def next_phase(settings: Settings) -> tuple[Case, Check]:
    one_shot = spec(max_trials=3).model_dump(mode="json", exclude={"spec_version", "early_stopping"})
    case = Case(JobSpec.model_validate({**one_shot, "one_shot": {"method": {"type": "spos", "epochs": 1}}}),
                settings).load()
    case.trial("completed", told=True, phase="supernet", arch=None, arch_key="supernet", finished_at=utcnow())

    def check(case: Case) -> None:
        assert case.job().phase == "search"
        assert [(t.number, t.phase, t.status) for t in case.trials()] == [
            (0, "supernet", "completed"), (1, "search", "queued"), (2, "search", "queued")]
        assert case.events("phase") == ["supernet phase done; search phase: trials 1-…, the strategy's proposals"]

    return case, check


def finish(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(max_trials=2), settings).load()
    case.trial("completed", told=True, **case.result(90.0))
    case.trial("failed", told=True, error="boom", finished_at=utcnow())

    def check(case: Case) -> None:
        job = case.job()
        assert job.status == "completed" and job.best_trial_number == 0 and job.lease_owner is None
        assert "budget spent" in case.events("completed")[0]

    return case, check


def send_pending(settings: Settings) -> tuple[Case, Check]:
    case = Case(spec(max_trials=2), settings).load()
    unsent = case.trial("pending", queued_at=None, started_at=None, heartbeat_at=None)
    case.trial("running")

    def check(case: Case) -> None:
        assert case.sent == [[unsent]] and case.trials()[0].status == "queued"

    return case, check


CASES: dict[Reason, Callable[[Settings], tuple[Case, Check]]] = {
    Reason.LOAD: load, Reason.START: start, Reason.REAP_SILENT: reap_silent,
    Reason.TRIAL_TIME_LIMIT: trial_time_limit, Reason.CHECK_LOST_MESSAGES: check_lost_messages,
    Reason.JOB_TIME_LIMIT: job_time_limit, Reason.RELAY_REPORTS: relay_reports, Reason.TELL: tell,
    Reason.ASK: ask, Reason.ASKED: asked, Reason.NEXT_PHASE: next_phase, Reason.FINISH: finish,
    Reason.SEND_PENDING: send_pending,
}


def test_every_reason_has_a_case():
    assert set(CASES) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_the_pass_acts_on_each_reason(reason: Reason, settings: Settings):
    case, check = CASES[reason](settings)
    activity = case.activity()
    reasons = case.run.reasons(activity, reap_lost=True)
    assert reason in reasons and reasons == sorted(reasons, key=list(Reason).index)  # in the order acted on
    assert case.run.has_work(activity, reap_lost=True)
    case.run.step(activity)
    check(case)


def test_a_job_whose_trials_are_all_busy_has_no_reason_to_pass(settings: Settings):
    case = Case(spec(max_trials=3, trial_time_limit_s=60), settings).load()
    case.trial("completed", told=True, **case.result(90.0))
    case.trial("running")
    case.trial("queued", started_at=None, heartbeat_at=None, attempts=0)
    activity = case.activity()
    assert case.run.reasons(activity, reap_lost=True) == []
    assert not case.run.has_work(activity, reap_lost=True)


def test_silent_workers_are_spared_when_the_database_was_away(settings: Settings):
    case = Case(spec(), settings).load()
    case.trial("running", heartbeat_at=utcnow() - LONG_AGO)
    case.trial("running")
    assert Reason.REAP_SILENT not in case.run.reasons(case.activity(), reap_lost=False)
    assert not case.run.has_work(case.activity(), reap_lost=False)
