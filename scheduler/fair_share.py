"""How many trials a job may have in flight while other jobs want the same workers.

Celery hands a queue's messages out first come, first served. A job alone on a queue with
``max_parallel`` above the workers' slots fills the queue with trials that wait; a job submitted
after it then waits behind all of them, and behind every trial the first job queues again as its
own finish. So each job's trials in flight (pending, queued and running) are capped at its share of
the **slots** serving its queue: the pool processes of the live workers that consume it, which
each worker registers in the database (``workers`` table, worker/presence.py).

The rule, computed by each job's scheduler from database counts (jobs on one queue may be driven
by different schedulers):

- The jobs sharing a queue are its unfinished jobs with trials in flight, and the job asking.
- Its slots are divided evenly among them in job order; the remainder goes one each to the
  earliest jobs, and every job gets at least 1 (more jobs than slots: trials interleave by job).
- A slot holds one trial, or, for a job whose trials are cheap enough to go several to a message
  (``scheduler.pace``), two messages' worth: one running, one waiting, so its worker never idles
  between messages.
- A job may also take slots nobody uses (the queue's slots beyond every job's trials in flight),
  so a slot is never left idle while a job wants it; a job over its share then refills nothing
  until it is back under it.
- ``budget.max_parallel`` caps all of this.

With no live worker registered on the queue (workers not started yet, or older workers) there is
nothing to share: the job runs up to ``max_parallel`` as without this module, and so it does with
``scheduler_fair_share`` off.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable

from sqlalchemy.orm import Session

from storage import repository as repo

RECHECK_S = 1.0  # a job at its cap asks again this often: other jobs' trials ending free slots it may take


def shares(slots: int, job_ids: Iterable[int]) -> dict[int, int]:
    """The slots of one queue divided among the jobs sharing it: evenly, the remainder one each to the
    earliest (lowest id), at least 1 each."""
    ordered = sorted(set(job_ids))
    if not ordered:
        return {}
    base, extra = divmod(slots, len(ordered))
    return {job_id: max(1, base + (i < extra)) for i, job_id in enumerate(ordered)}


class FairShare:
    """One job's cap, as its scheduler computes it each time the job asks for trials."""

    def __init__(self, job_id: int, *, enabled: bool, fresh_s: float) -> None:
        self.job_id, self.enabled, self.fresh_s = job_id, enabled, fresh_s
        self.limit = math.inf  # trials in flight allowed, as last computed
        self.checked_at = -math.inf  # monotonic

    def may_ask(self, in_flight: int, max_parallel: int) -> bool:
        """Whether a pass should ask the strategy: below the cap, or the cap is due to be computed again."""
        if in_flight >= max_parallel:
            return False
        return in_flight < self.limit or time.monotonic() >= self.checked_at + RECHECK_S

    def room(self, session: Session, *, queue: str, in_flight: int, max_parallel: int, per_message: int) -> int:
        """How many more trials the job may put in flight now; ``in_flight`` as of the pass's start,
        ``per_message`` the trials its messages carry (``Pace.per_message``)."""
        if not self.enabled:
            return max_parallel - in_flight
        self.checked_at = time.monotonic()
        slots, load = repo.queue_load(session, queue=queue, fresh_s=self.fresh_s)
        own = load.setdefault(self.job_id, in_flight)  # the database's count, fresher than the pass's start
        if not slots:
            self.limit = max_parallel
        else:
            per_slot = 2 * per_message if per_message > 1 else 1
            free = max(0, slots - sum(load.values()))
            self.limit = min(max_parallel, max(shares(slots, load)[self.job_id] * per_slot, own + free))
        return max(0, min(self.limit - own, max_parallel - in_flight))
