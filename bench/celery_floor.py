"""The floor for dispatch overhead: plain Celery, a no-op task, the same broker.

Started as its own worker by ``bench.dispatch``; each task only counts itself in Redis.
"""
from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("SCION_BENCH_BROKER", "redis://127.0.0.1:6379/9")
COUNTER = "scion-bench:celery-floor:done"

app = Celery("celery_floor", broker=BROKER)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
                worker_hijack_root_logger=False, task_default_queue="floor")
_redis: redis.Redis | None = None


def use_broker(url: str) -> None:
    """Point this process's sender at ``url``: the worker reads it from SCION_BENCH_BROKER at
    import, the benchmark may have imported this module before choosing a broker."""
    app.conf.broker_url = url


@app.task(name="floor.noop")
def noop(index: int) -> None:
    global _redis
    _redis = _redis or redis.Redis.from_url(app.conf.broker_url)
    _redis.incr(COUNTER)
