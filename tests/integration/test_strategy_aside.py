"""One job's strategy never stalls another's (issue 16, item 5): a job with the largest predictor a
spec may set (scheduler/aside.py, docs/security.md) thinks for seconds per round; a small job of 3
table look-ups submitted beside it in the same scheduler still finishes in a few seconds, before
the heavy job's first predicted trials are written. Before, every pass waited for the fit: the
small job ended only once the heavy job's round was done. The real scheduler and worker code on
SQLite and PostgreSQL."""
from __future__ import annotations

import time

import pytest

from scheduler.loop import Scheduler
from tests.integration.harness import get_job, get_trials, make_job, tabular_spec, wait_for

pytestmark = pytest.mark.timeout(300)

# The largest predictor the caps allow, fitting its first round after two random trials; one round
# ranks far more candidates than this test writes, so only that round's fit ever runs.
HEAVY_PNAS = {"type": "pnas", "ensemble_size": 16, "hidden_units": 64, "hidden_layers": 8, "epochs": 1000,
              "initial_samples": 2, "pool_size": 10_000, "top_k": 100}


def test_a_small_job_finishes_in_seconds_beside_a_job_whose_predictor_takes_long(settings_env, nb201_csv,
                                                                                  make_broker):
    heavy_spec = tabular_spec(nb201_csv, max_trials=50, max_parallel=2)
    heavy = make_job({**heavy_spec, "strategy": HEAVY_PNAS}, name="heavy predictor")  # served first in a pass
    broker = make_broker()
    scheduler = Scheduler(settings_env, send=broker.send, owner="shared")
    scheduler.step()  # the heavy job's two random trials
    broker.deliver()
    small = make_job(tabular_spec(nb201_csv, max_trials=3, max_parallel=3), name="small")
    submitted = time.monotonic()
    while get_job(small).status != "completed":
        assert time.monotonic() - submitted < 10, (
            f"the small job is still {get_job(small).status} after 10 s beside the heavy predictor")
        scheduler.step()
        broker.deliver()
        time.sleep(0.02)
    assert len(get_trials(heavy)) == 2, "the small job waited for the heavy job's predictor to answer"

    def heavy_proposed() -> bool:  # the heavy job goes on: its round ends aside and a pass writes it
        scheduler.step()
        broker.deliver()
        return len(get_trials(heavy)) > 2

    wait_for(heavy_proposed, timeout=240, what="the heavy job's predicted trials", interval=0.05)
    assert get_job(heavy).status == "running"
