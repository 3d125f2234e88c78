"""Sending "evaluate trials N…" to the workers' queue for the evaluator's resource class, and
asking the broker how many such messages wait (to notice messages it lost)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Send = Callable[[list[int], str], None]  # one message: these trials, to this queue. May also offer
# batch(): a context grouping the messages sent inside it
Waiting = Callable[[str], int]


class CelerySend:
    """Sends through Celery's message layer (``app.amqp``): the same message ``send_task`` would
    build and publish, without its per-call handling of options the scheduler never uses (routing,
    results, parent tasks), a sizeable share of a message's CPU when trials are cheap (measured in
    docs/benchmarks.md, "Costs the dispatch path is built around"). ``batch()`` groups the
    messages sent inside it (a scheduler pass's) into one round trip where the transport can
    (kombu's ``Producer.batch``: a Redis pipeline, which also costs less CPU per message);
    elsewhere each is published at once. Messages still buffered when an error leaves the batch
    are not sent."""

    def __init__(self) -> None:
        self._producer: Any = None

    def __call__(self, trial_ids: list[int], queue: str) -> None:
        from kombu.utils.uuid import uuid

        from broker.app import TASK, celery_app

        message = celery_app.amqp.create_task_message(uuid(), TASK, [trial_ids], {}, ignore_result=True)
        with celery_app.producer_or_acquire(self._producer) as producer:
            celery_app.amqp.send_task_message(producer, TASK, message, queue=queue)

    @contextmanager
    def batch(self) -> Iterator[None]:
        from broker.app import celery_app

        with celery_app.producer_or_acquire() as producer, producer.batch():
            self._producer = producer
            try:
                yield
            finally:
                self._producer = None


celery_send = CelerySend()


def celery_waiting(queue: str) -> int:
    """Messages waiting in ``queue`` (0 when the broker has no such queue, e.g. after a restart)."""
    from kombu.exceptions import ChannelError

    from broker.app import celery_app

    with celery_app.pool.acquire(block=True) as connection:
        channel = connection.channel()  # a channel of its own: AMQP closes one on a failed passive declare
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:
            return 0
        finally:
            channel.close()
