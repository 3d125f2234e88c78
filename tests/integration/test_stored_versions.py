"""A job stored by an older Scion resumes: its spec without a ``spec_version`` (version 1) and its
strategy log in the version-1 row format (a plain list of calls per row) are read, upgraded and
replayed, and the search continues exactly as an uninterrupted one would. And a stored spec is
loaded as trusted: a file it names may since have gone from the scheduler's host."""
from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from scheduler.loop import Scheduler
from scion.spec import SPEC_VERSION, JobRequest, load_spec
from storage.db import session_scope
from storage.models import Job, StrategyCall
from tests.integration.harness import (
    drive,
    expire_lease,
    get_job,
    get_trials,
    make_job,
    reference_arch_keys,
    tabular_spec,
)


def _as_version_1(job_id: int) -> None:
    """Rewrite the job's rows as the Scion before versioning wrote them."""
    with session_scope() as session:
        spec = dict(session.scalar(select(Job.spec).where(Job.id == job_id)))
        assert spec.pop("spec_version") == SPEC_VERSION
        session.execute(update(Job).where(Job.id == job_id).values(spec=spec))
        for row in session.scalars(select(StrategyCall).where(StrategyCall.job_id == job_id)):
            assert row.call["version"] == 2
            row.call = list(row.call["calls"])


def test_a_job_stored_by_the_previous_version_resumes(settings_env, nb201_csv, make_broker):
    settings = settings_env.model_copy(update={"strategy_checkpoint_seconds": 3600.0})  # calls, not state
    spec = tabular_spec(nb201_csv, max_trials=20, max_parallel=2, population=6, sample=2, seed=5)
    reference = reference_arch_keys(settings, spec, make_broker())

    job_id = make_job(spec, name="old")
    broker = make_broker()
    halfway = drive(Scheduler(settings, send=broker.send, owner="old"), broker, job_id, poll=0,
                    until=lambda job: job.trials_created >= 10)
    assert halfway.strategy_state is None  # the strategy lives in its log alone
    _as_version_1(job_id)
    expire_lease(job_id)

    job = drive(Scheduler(settings, send=broker.send, owner="new"), broker, job_id, poll=0)

    assert job.status == "completed", job.error
    assert [t.arch_key for t in get_trials(job_id)] == reference
    assert "spec_version" not in get_job(job_id).spec  # read as it was stored; never rewritten


def test_a_stored_spec_does_not_read_its_files_again(settings_env):
    stored = {"space": {"type": "nb201"}, "strategy": {"type": "random"},
              "evaluator": {"type": "tabular", "table": "/nowhere/else/table.csv"}}
    with pytest.raises(ValidationError, match="table"):  # a request: checked, and refused
        JobRequest.model_validate(stored)
    spec = load_spec(stored)  # as stored by an earlier version: loaded, not checked again
    assert spec.spec_version == SPEC_VERSION and str(spec.evaluator.table) == "/nowhere/else/table.csv"
