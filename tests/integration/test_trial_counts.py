"""A job's trial counts come from tallies its scheduler keeps as it tells trials, plus a live count
of the trials not told yet (storage/repository.py trial_counts): they must match the trials,
after the migration that introduced the tallies and when two schedulers race to tell a trial."""
from __future__ import annotations

from alembic import command
from sqlalchemy import insert

from storage import repository as repo
from storage.db import get_engine, session_scope, utcnow
from storage.migrate import alembic_config, upgrade
from storage.models import Job, Trial

ARCH = ["none"] * 6


def add_trials(session, job_id: int, statuses: list[tuple[str, bool]]) -> list[int]:
    """Trials 0, 1, ... with these (status, told); returns their ids."""
    now = utcnow()
    rows = [dict(job_id=job_id, number=n, status=status, arch=ARCH, arch_key=f"k{n}", attempts=1, told=told,
                 created_at=now) for n, (status, told) in enumerate(statuses)]
    return list(session.scalars(insert(Trial).returning(Trial.id), rows))


def test_the_upgrade_tallies_the_trials_already_told(db_url):
    command.downgrade(alembic_config(db_url), "0003")  # a database from before the tallies
    with session_scope(db_url) as session:  # written naming only columns that schema has
        job_id = session.scalar(insert(Job).values(name="old", status="pending", spec={}, created_at=utcnow(),
                                                   trials_created=0).returning(Job.id))
        add_trials(session, job_id, [("completed", True)] * 3 + [("failed", True), ("completed", False),
                                                                   ("running", False)])
    get_engine(db_url).dispose()  # the upgrade changes the schema under pooled connections
    upgrade(db_url)
    with session_scope(db_url) as session:
        assert repo.trial_counts(session, job_id=job_id) == {"completed": 4, "failed": 1, "running": 1}


def test_a_finished_trial_is_taken_and_counted_once(db_url):
    with session_scope(db_url) as session:
        job = repo.create_job(session, name="race", spec={})
        add_trials(session, job.id, [("completed", False), ("failed", False), ("running", False)])
        job_id = job.id
    taken = []
    for _ in range(2):  # a second scheduler whose lease lapsed takes the job's finished trials again
        with session_scope(db_url) as session:
            taken.append([(row.number, row.status) for row in repo.take_finished(session, job_id=job_id)])
    assert taken == [[(0, "completed"), (1, "failed")], []]
    with session_scope(db_url) as session:
        assert repo.trial_counts(session, job_id=job_id) == {"completed": 1, "failed": 1, "running": 1}
        assert repo.list_trials(session, job_id=job_id, status="completed", sort="number", descending=False,
                                limit=10, offset=0)[1] == 1
