"""A job of many trials answers its status and a page of its best trials without reading them all:
every statement those two requests send reads at most a page of rows, through indexes (EXPLAIN
ANALYZE on PostgreSQL). Plans rather than wall-clock times, so that the test holds on a loaded
machine; ``scion bench api --part big`` times the same requests on 100,000 trials
(docs/reliability.md, "Load")."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bench.api_load import PAGE, job_paths, request_plans, seed_big_job
from storage.db import session_scope
from storage.models import Trial

pytestmark = [pytest.mark.postgres]

TRIALS = 30_000


def test_status_and_best_trials_of_a_large_job_read_a_page_of_rows_not_the_whole_job(postgres_url, nb201_csv):
    job_id = seed_big_job(postgres_url, nb201_csv, trials=TRIALS)
    answers, plans = request_plans(postgres_url, job_paths(job_id))

    with session_scope(postgres_url) as session:
        counts = dict(session.execute(select(Trial.status, func.count()).where(Trial.job_id == job_id)
                                      .group_by(Trial.status)).all())
        best_first = list(session.scalars(select(Trial.number).where(Trial.job_id == job_id)
                                          .order_by(Trial.score.desc().nulls_last(), Trial.number).limit(PAGE)))
    assert answers["status"]["counts"] == counts
    assert answers["status"]["trials_total"] == TRIALS
    assert answers["status"]["best"]["number"] == best_first[0]
    assert [t["number"] for t in answers["trials"]["items"]] == best_first
    assert answers["trials"]["total"] == TRIALS

    for kind, statements in plans.items():
        assert statements, f"no SELECT seen for the {kind} request"
        for statement in statements:
            busiest = max(statement["plan"], key=lambda node: node["rows"])
            assert busiest["rows"] <= 2 * PAGE, f"{kind}: {statement['sql']} reads {busiest}: {statement['plan']}"
    page_plan = [node["node"] for statement in plans["trials"] for node in statement["plan"]]
    assert "Index Scan using ix_trials_job_best on trials" in page_plan, page_plan
