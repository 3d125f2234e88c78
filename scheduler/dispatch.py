"""Sending "evaluate trial N" to the workers' queue for the evaluator's resource class."""
from __future__ import annotations

from collections.abc import Callable

Send = Callable[[int, str], None]


def celery_send(trial_id: int, queue: str) -> None:
    from worker.celery_app import celery_app

    celery_app.send_task("scion.evaluate_trial", args=[trial_id], queue=queue)
