"""Sending "evaluate trial N" to the workers' queue for the evaluator's resource class, and
asking the broker how many such messages wait (to notice messages it lost)."""
from __future__ import annotations

from collections.abc import Callable

Send = Callable[[int, str], None]
Waiting = Callable[[str], int]


def celery_send(trial_id: int, queue: str) -> None:
    from worker.celery_app import celery_app

    celery_app.send_task("scion.evaluate_trial", args=[trial_id], queue=queue)


def celery_waiting(queue: str) -> int:
    """Messages waiting in ``queue`` (0 when the broker has no such queue, e.g. after a restart)."""
    from kombu.exceptions import ChannelError

    from worker.celery_app import celery_app

    with celery_app.pool.acquire(block=True) as connection:
        channel = connection.channel()  # a channel of its own: AMQP closes one on a failed passive declare
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:
            return 0
        finally:
            channel.close()
