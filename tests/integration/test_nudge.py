"""Nudges over Redis pub/sub (scion/nudge.py), as the scheduler relies on them: a finished trial
and a new job each wake it at once and say which happened (a new job is the one reason to look
for leases between polls), a quiet wait ends empty at its timeout, and without Redis the
scheduler sleeps out its poll and must assume anything may have happened."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from scion import nudge
from scion.nudge import JOB, TRIAL, NudgeListener, Nudger

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> str:
    """A channel of this test's own: other tests' schedulers and workers share the Redis."""
    name = f"scion:nudge:test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(nudge, "CHANNEL", name)
    return name


def test_nudges_wake_the_listener_at_once_and_say_what_happened(redis_url: str, channel: str) -> None:
    listener, nudger = NudgeListener(redis_url), Nudger(redis_url)
    assert listener.wait(0.05, time.sleep) == set()  # subscribes; nothing said yet

    threading.Timer(0.2, lambda: (nudger.nudge(), nudger.nudge(JOB))).start()
    started = time.monotonic()
    said = listener.wait(10, time.sleep)
    if said == {TRIAL}:  # woken by the first before the second arrived
        said |= listener.wait(1, time.sleep)
    assert said == {TRIAL, JOB}
    assert time.monotonic() - started < 2, "the listener slept out its timeout instead of waking"

    started = time.monotonic()
    assert listener.wait(0.3, time.sleep) == set()
    assert time.monotonic() - started >= 0.25


def test_without_redis_the_listener_sleeps_its_poll_and_assumes_a_job_may_have_come(tmp_path) -> None:
    slept: list[float] = []
    listener = NudgeListener(f"filesystem://{tmp_path}")
    assert listener.wait(0.2, slept.append) == {JOB}
    assert slept == [0.2]
    Nudger(f"filesystem://{tmp_path}").nudge(JOB)  # nothing to send to, and no error
