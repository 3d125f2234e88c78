"""Nudges over Redis pub/sub (broker/nudge.py), as the scheduler relies on them: a finished trial
and a new job each wake it at once and say which happened (a new job is the one reason to look
for leases between polls), a quiet wait ends empty at its timeout, and without Redis the
scheduler sleeps out its poll and must assume anything may have happened. Gathering
(scheduler/gather.py): a pass woken by finished trials waits for more only while the workers stay
busy, and not at all with ``scheduler_gather_seconds`` 0."""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from broker import nudge
from broker.nudge import JOB, TRIAL, NudgeListener, Nudger
from scheduler import gather
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

    # One trial finished, then a message's three together, then a job arrived.
    threading.Timer(0.2, lambda: (nudger.nudge(), nudger.nudge(count=3), nudger.nudge(JOB))).start()
    started = time.monotonic()
    said = listener.wait(10, time.sleep)
    for _ in range(5):  # woken by the first before the others arrived
        if sum(said.values()) < 5:
            said += listener.wait(1, time.sleep)
    assert said == Counter({TRIAL: 4, JOB: 1})  # how many trials finished, for the scheduler's gathering
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


def gathering(redis_url: str, tmp_path, seconds: float, queued: list[int]):
    """The scheduler's listener with ``scheduler_gather_seconds`` at ``seconds``, subscribed;
    ``queued[0]``: the trials the last pass left waiting for a worker."""
    settings = Settings(home=tmp_path, broker_url=redis_url, scheduler_gather_seconds=seconds)
    listener = gather.listener(settings, queued=lambda: queued[0], stop=threading.Event())
    listener.wait(0.05, time.sleep)  # subscribes
    return listener


def finished_meanwhile(listener, redis_url: str, trials: int) -> tuple[int, float]:
    """``trials`` trials finish 20 ms apart; returns how many the next pass was woken for, and how
    long it waited."""
    nudger = Nudger(redis_url)
    started = time.monotonic()
    threading.Thread(target=lambda: [(nudger.nudge(), time.sleep(0.02)) for _ in range(trials)]).start()
    said = listener.wait(5, time.sleep)
    waited = time.monotonic() - started
    time.sleep(0.02 * trials + 0.1)
    listener.wait(0.05, time.sleep)  # what finished after the pass
    return said[TRIAL], waited


def test_a_pass_woken_by_a_finished_trial_waits_for_more_only_while_the_workers_stay_busy(
        redis_url: str, channel: str, tmp_path) -> None:
    queued = [0]
    listener = gathering(redis_url, tmp_path, 3.0, queued)

    def finish(trials: int, *, waiting: int, pass_s: float, rate: float) -> tuple[int, float]:
        """After a pass that took ``pass_s`` and left ``waiting`` trials for the workers, with trials
        finishing at ``rate`` a second so far, ``trials`` more finish."""
        queued[0], listener.finish_rate, listener.pass_began = waiting, rate, time.monotonic() - pass_s
        return finished_meanwhile(listener, redis_url, trials)

    # Cheap trials, 50 a second, passes of 20 ms: 14 queued trials keep the workers busy for
    # 280 ms, so the pass waits until two are left (two passes' worth), twelve trials later.
    gathered, waited = finish(14, waiting=14, pass_s=0.02, rate=50)
    assert 12 <= gathered < 14 and waited < 2, "waited out scheduler_gather_seconds"
    assert 25 <= listener.finish_rate <= 75  # what it measured meanwhile, averaged in

    # Passes as slow as the queue is short: waiting could leave the workers idle; the pass runs now.
    assert finish(8, waiting=14, pass_s=1.0, rate=50)[0] < 4
    # Long trials, nothing queued behind them: the pass runs for the first that finishes.
    assert finish(8, waiting=0, pass_s=0.02, rate=50)[0] < 4
    # Work queued but trials finishing slowly: the pass runs once scheduler_gather_seconds is up.
    listener = gathering(redis_url, tmp_path, 0.3, queued)
    gathered, waited = finish(1, waiting=14, pass_s=0.02, rate=1)
    assert gathered == 1 and 0.25 <= waited < 2


def test_with_gathering_off_a_pass_runs_for_the_first_trial_that_finishes(redis_url: str, channel: str,
                                                                           tmp_path) -> None:
    queued = [14]  # where gathering would wait: work queued, nothing measured yet
    assert finished_meanwhile(gathering(redis_url, tmp_path, 1.0, queued), redis_url, 8)[0] >= 6
    gathered, waited = finished_meanwhile(gathering(redis_url, tmp_path, 0, queued), redis_url, 8)
    assert gathered < 4 and waited < 1
