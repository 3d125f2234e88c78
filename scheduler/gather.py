"""A scheduler pass woken by a finished trial waits a moment for more to finish.

Cheap trials (table look-ups, zero-cost proxies) finish many times a second, each with a nudge
(broker/nudge.py); a pass for each would tell and replace one trial at the cost of a whole pass.
So, woken by finished trials, the scheduler waits for more (up to ``scheduler_gather_seconds``)
while the trials still queued for the workers would keep them busy for longer than two passes
take, at the rate trials have been finishing: one pass then tells and replaces several, and the
workers never run out of queued trials meanwhile. Trials long enough to leave nothing queued get
their pass at once; a new job ends the wait. With ``scheduler_gather_seconds`` 0 the scheduler
listens to the nudges as they come.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from broker.nudge import JOB, TRIAL, NudgeListener
from scion.settings import Settings


def listener(settings: Settings, *, queued: Callable[[], int], stop: threading.Event) -> NudgeListener | Gathering:
    """What the scheduler waits on between passes: the nudges, gathered unless
    ``scheduler_gather_seconds`` is 0. ``queued``: the trials the last pass left waiting for a
    worker; ``stop`` ends a gathering wait."""
    nudges = NudgeListener(settings.broker)
    if settings.scheduler_gather_seconds <= 0:
        return nudges
    return Gathering(nudges, settings.scheduler_gather_seconds, queued=queued, stop=stop)


class Gathering:
    """A ``NudgeListener`` whose ``wait``, when woken by finished trials only, gathers more as the
    module says. The scheduler's passes are the gaps between its waits."""

    def __init__(self, nudges: NudgeListener, seconds: float, *, queued: Callable[[], int],
                 stop: threading.Event) -> None:
        self.nudges, self.seconds, self.queued, self.stop = nudges, seconds, queued, stop
        self.finish_rate = 0.0  # trials finished per second, smoothed over the gaps between passes
        self.pass_began = time.monotonic()  # when the last wait returned

    def wait(self, timeout: float, sleep: Callable[[float], object]) -> Counter[bytes]:
        pass_seconds = time.monotonic() - self.pass_began
        said = self.nudges.wait(timeout, sleep)
        if said[TRIAL] and JOB not in said:
            said = self._gather(said, sleep, pass_seconds)
        self.pass_began = time.monotonic()
        return said

    def _gather(self, said: Counter[bytes], sleep: Callable[[float], object], pass_seconds: float) -> Counter[bytes]:
        deadline = time.monotonic() + self.seconds
        while JOB not in said and not self.stop.is_set():
            now = time.monotonic()
            queued = self.queued() - said[TRIAL]
            if queued <= 0 or now >= deadline or queued <= self.finish_rate * 2 * pass_seconds:
                break
            more = self.nudges.wait(deadline - now, sleep)
            if not more:
                break
            said.update(more)
        rate = said[TRIAL] / max(time.monotonic() - self.pass_began, 1e-3)
        self.finish_rate = rate if not self.finish_rate else (self.finish_rate + rate) / 2
        return said
