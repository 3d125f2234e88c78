"""How many of a job's new trials one message to the workers carries.

Each message costs a worker a fixed few milliseconds whatever it carries (the broker's hand-over,
the claim, the result's write): nothing next to a training run, but many times a table look-up
or a zero-cost proxy. Trials that have been finishing in well under ``scheduler_batch_seconds``
are therefore sent several to a message, claimed in one statement and written back in one round
trip, as many as take about that long, and never so many that a worker would sit idle: each
worker seen lately keeps one message running and one queued within ``max_parallel``. Anything
slower, a job's first trials (nothing measured yet) and every trial sent again (a lost message,
a lost worker: one that may crash its worker must not take others down with it) go one per
message. With ``scheduler_batch_seconds`` 0, every trial goes one per message.
"""
from __future__ import annotations

from collections import deque
from datetime import datetime

from sqlalchemy import Row

MIN_MEASURED = 8  # trials finished before a job's trials are judged cheap
MOST = 32  # trials in one message at most
WORKER_WINDOW_S = 10.0  # a worker that finished one of the job's trials this recently is counted


class Pace:
    """One job's: how long its trials have been taking, and on how many workers."""

    def __init__(self, target_seconds: float) -> None:
        self.target_seconds = target_seconds  # scheduler_batch_seconds
        self.durations: deque[float] = deque(maxlen=64)  # seconds, the job's latest trials run by a worker
        self.workers: dict[str, datetime] = {}  # worker → when it last finished one of the job's trials

    def observe(self, trial: Row) -> None:
        """Learn from a trial that finished (a row of ``repo.take_finished``)."""
        if trial.status not in ("completed", "failed") or not (trial.started_at and trial.finished_at and trial.worker):
            return
        self.durations.append((trial.finished_at - trial.started_at).total_seconds())
        self.workers[trial.worker] = max(trial.finished_at, self.workers.get(trial.worker, trial.finished_at))

    def messages(self, trial_ids: list[int], max_parallel: int) -> list[list[int]]:
        """New trials in messages, in order, each carrying ``per_message`` of them."""
        n = self.per_message(max_parallel)
        return [trial_ids[i:i + n] for i in range(0, len(trial_ids), n)]

    def per_message(self, max_parallel: int) -> int:
        """How many new trials a message may carry now (1: no batching)."""
        if self.target_seconds <= 0 or len(self.durations) < MIN_MEASURED:
            return 1
        newest = max(self.workers.values())
        self.workers = {w: seen for w, seen in self.workers.items()
                        if (newest - seen).total_seconds() <= WORKER_WINDOW_S}
        # Most trials take no longer; a few slow ones (a worker's first, which builds the job's
        # evaluator) do not stop the batching, many do.
        slow = sorted(self.durations)[int(0.75 * (len(self.durations) - 1))]
        by_time = int(self.target_seconds / max(slow, 1e-6))
        by_workers = max_parallel // (2 * len(self.workers))
        return max(1, min(by_time, by_workers, MOST))
