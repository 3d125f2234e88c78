"""A job the scheduler cannot advance must not block itself forever nor flood the log.

A declared space of 18 small convolutions has architecture keys over 1,000 characters: they
are stored whole and its trials run. A job whose passes keep failing for a reason other than
the database being away (here: the database refuses its trials, through a trigger) fails after
``scheduler_failed_passes`` passes in a row, with the error as its reason and in its events, and
the log holds that error's traceback once and a count of its repeats. A database that is away
for a while (a trigger raising what PostgreSQL sends when it shuts down) fails no job.
"""
from __future__ import annotations

import logging

import pytest
from alembic import command
from sqlalchemy import insert, select, text

from scheduler.loop import Scheduler
from storage import repository as repo
from storage.db import get_engine, session_scope, utcnow
from storage.migrate import alembic_config, upgrade
from storage.models import Trial
from tests.integration.harness import drive, get_events, get_trials, make_job, train_spec

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("one_torch_thread")]

# As the red-team run found it: each layer's key item is about 55 characters.
POISON_SPACE = {"type": "declared",
                "layers": [{"name": f"conv{i}", "ops": [{"op": "conv2d", "channels": 8}]} for i in range(1, 19)]}
REFUSAL = "trials refused by a trigger of the test"


def poison_spec() -> dict:
    return {"space": POISON_SPACE, "strategy": {"type": "random"},
            "evaluator": {"type": "train", "dataset": "digits", "epochs": 1, "latency_repeats": 1},
            "budget": {"max_trials": 2, "max_parallel": 2}, "seed": 0}


def refuse_trials(*, errcode: str | None = None) -> None:
    """Make the database refuse every new trial row: with an error of its own, or (PostgreSQL, with
    ``errcode``) the one a server shutting down sends."""
    with session_scope() as session:
        if session.bind.dialect.name == "sqlite":
            assert errcode is None
            session.execute(text(f"CREATE TRIGGER refuse_trials BEFORE INSERT ON trials "
                                 f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"))
            return
        using = f"USING ERRCODE = '{errcode}'" if errcode else ""
        session.execute(text(f"CREATE FUNCTION refuse_trials() RETURNS trigger LANGUAGE plpgsql AS "
                             f"$$ BEGIN RAISE EXCEPTION '{REFUSAL}' {using}; END $$"))
        session.execute(text("CREATE TRIGGER refuse_trials BEFORE INSERT ON trials "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_trials()"))


def accept_trials() -> None:
    with session_scope() as session:
        session.execute(text("DROP TRIGGER refuse_trials ON trials" if session.bind.dialect.name != "sqlite"
                             else "DROP TRIGGER refuse_trials"))


def scheduler_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("scheduler") and r.levelno >= logging.ERROR]


def test_a_space_whose_keys_pass_1000_characters_runs(settings_env, make_broker) -> None:
    job_id = make_job(poison_spec(), name="poison")
    broker = make_broker()

    job = drive(Scheduler(settings_env, send=broker.send), broker, job_id, timeout=120, poll=0)

    assert job.status == "completed", job.error
    trials = get_trials(job_id)
    assert [t.status for t in trials] == ["completed", "completed"]
    assert all(len(t.arch_key) > 1000 and t.arch_key.count("|conv") == 17 for t in trials), \
        [len(t.arch_key) for t in trials]  # stored whole


def test_the_upgrade_keeps_every_key_and_takes_longer_ones(db_url) -> None:
    command.downgrade(alembic_config(db_url), "0006")  # keys of 1,000 characters at most
    with session_scope(db_url) as session:
        job_id = repo.create_job(session, name="old", spec={}).id
        session.execute(insert(Trial).values(job_id=job_id, number=0, arch=[], arch_key="a" * 1000, attempts=0,
                                             created_at=utcnow()))
    get_engine(db_url).dispose()  # the upgrade changes the schema under pooled connections
    upgrade(db_url)
    with session_scope(db_url) as session:
        session.execute(insert(Trial).values(job_id=job_id, number=1, arch=[], arch_key="b" * 20_000, attempts=0,
                                             created_at=utcnow()))
    with session_scope(db_url) as session:
        assert list(session.scalars(select(Trial.arch_key).order_by(Trial.number))) == ["a" * 1000, "b" * 20_000]
    if db_url.startswith("postgresql"):  # going back would cut a key short: refused
        get_engine(db_url).dispose()
        with pytest.raises(Exception, match="value too long"):
            command.downgrade(alembic_config(db_url), "0006")


def test_a_job_whose_passes_keep_failing_fails_saying_why(settings_env, make_broker, caplog) -> None:
    settings = settings_env.model_copy(update={"scheduler_failed_passes": 4})
    job_id = make_job(train_spec(budget={"max_trials": 3}), name="refused")
    refuse_trials()
    broker, passes = make_broker(), []

    job = drive(Scheduler(settings, send=broker.send), broker, job_id, timeout=30, poll=0,
                after_step=lambda: passes.append(1))

    assert job.status == "failed" and len(passes) == 4
    assert job.error.startswith("its scheduler passes failed 4 times in a row: ") and REFUSAL in job.error, job.error
    assert "INSERT" not in job.error  # the statement and its parameters stay in the log
    [failed] = get_events(job_id, "failed")
    assert failed.message == f"job failed ({job.error})"  # said once; no traceback
    assert get_trials(job_id) == []

    errors = scheduler_errors(caplog)
    assert [r.getMessage() for r in errors if r.exc_info] == [
        f"job {job_id}: scheduler pass failed (the job fails after 4 in a row)"]  # one traceback, not four
    counts = [r.getMessage() for r in errors if not r.exc_info]
    assert len(counts) == 1 and "the same error 3 more times in the last" in counts[0], counts
    assert all(getattr(r, "job_id", None) == job_id for r in errors)
    caplog.clear()  # the errors this test provokes, asserted above


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_database_away_fails_no_job(settings_env, make_broker, caplog) -> None:
    job_id = make_job(train_spec(budget={"max_trials": 2}), name="patient")
    refuse_trials(errcode="admin_shutdown")  # what every connection hears when the server shuts down
    broker, passes = make_broker(), []

    def back_after_ten_passes() -> None:
        passes.append(1)
        if len(passes) == 10:
            accept_trials()

    job = drive(Scheduler(settings_env, send=broker.send), broker, job_id, timeout=120, poll=0,
                after_step=back_after_ten_passes)

    assert job.status == "completed", job.error
    assert not get_events(job_id, "failed")
    away = [r for r in caplog.records if r.name == "scheduler.loop" and "database unreachable" in r.getMessage()]
    assert len(away) >= 3  # more passes failed than the 3 that fail a job for any other reason
