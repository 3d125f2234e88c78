"""How many new trials one message carries (scheduler/pace.py): several only for trials measured
to be cheap, never so many that a worker seen lately would sit idle, one for anything slower."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from scheduler.pace import MIN_MEASURED, MOST, Pace

T0 = datetime(2026, 12, 2, tzinfo=UTC)


def finished(seconds: float, worker: str, at: float = 0.0, status: str = "completed") -> SimpleNamespace:
    end = T0 + timedelta(seconds=at)
    return SimpleNamespace(status=status, started_at=end - timedelta(seconds=seconds), finished_at=end, worker=worker)


def test_cheap_trials_fill_one_running_and_one_queued_message_per_worker() -> None:
    pace = Pace(target_seconds=0.05)
    for i in range(MIN_MEASURED - 1):
        pace.observe(finished(0.0002, f"w{i % 2}"))
    assert pace.per_message(max_parallel=16) == 1  # not measured enough yet
    pace.observe(finished(0.0002, "w1"))
    assert pace.per_message(max_parallel=16) == 4  # 16 in flight over 2 workers × 2
    assert pace.per_message(max_parallel=4096) == MOST
    assert pace.per_message(max_parallel=3) == 1
    assert pace.messages(list(range(10)), max_parallel=16) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_with_batching_off_every_trial_goes_alone_however_cheap() -> None:
    pace = Pace(target_seconds=0)
    for i in range(64):
        pace.observe(finished(0.0002, f"w{i % 2}"))
    assert pace.messages(list(range(5)), max_parallel=16) == [[0], [1], [2], [3], [4]]


def test_slow_trials_go_alone_and_a_few_fast_ones_do_not_change_that() -> None:
    pace = Pace(target_seconds=0.05)
    for i in range(20):
        pace.observe(finished(0.001 if i % 5 == 0 else 0.04, "w0"))
    assert pace.per_message(max_parallel=64) == 1
    for _ in range(64):
        pace.observe(finished(0.01, "w0"))
    assert pace.per_message(max_parallel=64) == 5  # as many as take about 50 ms
    for _ in range(12):  # a few slow ones among many cheap ones: still cheap
        pace.observe(finished(0.5, "w0"))
    assert pace.per_message(max_parallel=64) == 5


def test_only_workers_seen_lately_count_and_unrun_trials_teach_nothing() -> None:
    pace = Pace(target_seconds=0.05)
    for i in range(8):
        pace.observe(finished(0.0002, f"w{i}", at=0.0))  # eight workers, then six of them go quiet
    for i in range(8):
        pace.observe(finished(0.0002, f"w{i % 2}", at=60.0))
    assert pace.per_message(max_parallel=16) == 4  # 2 workers, not 8
    pace.observe(SimpleNamespace(status="cancelled", started_at=None, finished_at=T0, worker=None))
    pace.observe(finished(30.0, "w0", at=60.0, status="stopped"))
    assert pace.per_message(max_parallel=16) == 4
