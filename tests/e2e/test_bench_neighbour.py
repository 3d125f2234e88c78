"""`scion bench neighbour` (issue 16, item 5) on PostgreSQL: a small job alone and beside a job with
the largest predictor, its asks in the pass and aside. Timed only where the layouts differ by a
whole fit: with the asks in the pass the small job waits for the heavy job's round; aside it does
not."""
from __future__ import annotations

import pytest

from tests.e2e.test_bench_commands import _bench

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_neighbour_bench_times_the_small_job_alone_and_beside_the_heavy_predictor(tmp_path, postgres_url, redis_url,
                                                                                   nb201_csv):
    report = _bench(tmp_path, redis_url, "neighbour", "--table", str(nb201_csv))
    alone, in_pass, aside = report["layouts"]
    assert alone["small_s"] is not None and alone["heavy_first_round_s"] is None
    assert in_pass["small_s"] >= in_pass["heavy_first_round_s"]  # it waited for the whole fit
    assert aside["small_s"] < aside["heavy_first_round_s"]
    assert report["fit_memory_mb"]["largest allowed"] < 20 < 2000 < report["fit_memory_mb"]["red team (64 x 512 x 8)"]
