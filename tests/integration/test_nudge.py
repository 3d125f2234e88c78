"""Nudges over Redis pub/sub (scion/nudge.py), as the scheduler relies on them: a finished trial
and a new job each wake it at once and say which happened (a new job is the one reason to look
for leases between polls), a quiet wait ends empty at its timeout, and without Redis the
scheduler sleeps out its poll and must assume anything may have happened."""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from scheduler.loop import Scheduler
from scion import nudge
from scion.nudge import JOB, TRIAL, NudgeListener, Nudger
from scion.settings import Settings

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> str:
    """A channel of this test's own: other tests' schedulers and workers share the Redis."""
    name = f"scion:nudge:test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(nudge, "CHANNEL", name)
    return name


def test_nudges_wake_the_listener_at_once_and_say_what_happened(redis_url: str, channel: str) -> None:
    listener, nudger = NudgeListener(redis_url), Nudger(redis_url)
    assert listener.wait(0.05, time.sleep) == Counter()  # subscribes; nothing said yet

    threading.Timer(0.2, lambda: (nudger.nudge(), nudger.nudge(), nudger.nudge(JOB))).start()
    started = time.monotonic()
    said = listener.wait(10, time.sleep)
    for _ in range(5):  # woken by the first before the others arrived
        if sum(said.values()) < 3:
            said += listener.wait(1, time.sleep)
    assert said == Counter({TRIAL: 2, JOB: 1})  # how many trials finished, for the scheduler's gathering
    assert time.monotonic() - started < 2, "the listener slept out its timeout instead of waking"

    started = time.monotonic()
    assert listener.wait(0.3, time.sleep) == Counter()
    assert time.monotonic() - started >= 0.25


def test_without_redis_the_listener_sleeps_its_poll_and_assumes_a_job_may_have_come(tmp_path) -> None:
    slept: list[float] = []
    listener = NudgeListener(f"filesystem://{tmp_path}")
    assert listener.wait(0.2, slept.append) == Counter({JOB: 1})
    assert slept == [0.2]
    Nudger(f"filesystem://{tmp_path}").nudge(JOB)  # nothing to send to, and no error


def test_a_pass_woken_by_a_finished_trial_waits_for_more_only_while_workers_have_trials_queued(
        redis_url: str, channel: str, tmp_path) -> None:
    settings = Settings(home=tmp_path, broker_url=redis_url, scheduler_gather_seconds=3.0)
    scheduler, listener, nudger = Scheduler(settings, owner="gathering"), NudgeListener(redis_url), Nudger(redis_url)
    listener.wait(0.05, time.sleep)  # subscribes

    def finish(trials: int) -> Counter:
        """``trials`` trials finish 20 ms apart; returns what the scheduler gathered before its pass."""
        threading.Thread(target=lambda: [(nudger.nudge(), time.sleep(0.02)) for _ in range(trials)]).start()
        return scheduler._gather(listener, listener.wait(5, time.sleep), threading.Event())

    # As a pass leaves 16 trials in flight on two workers: 14 wait for them. The pass after waits
    # until only four (two per running trial) are left, which takes ten finished trials.
    scheduler.trials_waiting, scheduler.trials_running = 14, 2
    started = time.monotonic()
    assert finish(12)[TRIAL] == 10
    assert time.monotonic() - started < 2, "waited out scheduler_gather_seconds"
    time.sleep(0.1)
    listener.wait(0.05, time.sleep)  # the two left over

    # Long trials, one per worker, nothing queued: the pass runs for the first that finishes.
    scheduler.trials_waiting, scheduler.trials_running = 0, 2
    assert finish(3)[TRIAL] == 1
    time.sleep(0.1)
    listener.wait(0.05, time.sleep)

    # Work queued but trials finishing slowly: the pass runs once scheduler_gather_seconds is up.
    scheduler.settings = settings.model_copy(update={"scheduler_gather_seconds": 0.3})
    scheduler.trials_waiting = 14
    started = time.monotonic()
    assert finish(1)[TRIAL] == 1
    assert 0.25 <= time.monotonic() - started < 2
