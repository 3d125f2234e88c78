"""Sending "evaluate trials N…" to the workers' queue for the evaluator's resource class, and
asking the broker how many such messages wait (to notice messages it lost)."""
from __future__ import annotations

from collections.abc import Callable

from kombu.exceptions import ChannelError

from broker.app import TASK, celery_app

# A pass's messages, each the ids of the trials it carries, to one queue. Raises when they may not
# all have gone out; the caller then counts none of them as sent.
Send = Callable[[list[list[int]], str], None]
Waiting = Callable[[str], int]


def celery_send(messages: list[list[int]], queue: str) -> None:
    """Through Celery's ``send_task``, every message on one producer inside kombu's
    ``Producer.batch``: a pass's messages then leave in one round trip where the transport groups
    them (a Redis pipeline), and one by one elsewhere. Messages still buffered when an error
    leaves the batch are not sent."""
    with celery_app.producer_or_acquire() as producer, producer.batch():
        for trial_ids in messages:
            celery_app.send_task(TASK, args=[trial_ids], queue=queue, producer=producer, ignore_result=True,
                                 add_to_parent=False)


def celery_waiting(queue: str) -> int:
    """Messages waiting in ``queue`` (0 when the broker has no such queue, e.g. after a restart)."""
    with celery_app.pool.acquire(block=True) as connection:
        channel = connection.channel()  # a channel of its own: AMQP closes one on a failed passive declare
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:
            return 0
        finally:
            channel.close()
