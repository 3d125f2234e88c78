"""The Celery application shared by the scheduler and the API (which send) and the workers (which run).

The broker only carries "evaluate trials N…" messages (one trial each, or several cheap ones) and
"export trial N as F" requests from the API: the database and the artifact store hold everything
else, so a lost message costs a re-send, never a result.
"""
from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging

from scion import logs
from scion.settings import get_settings

QUEUES = ("gpu", "cpu")
TASK = "scion.evaluate_trials"  # evaluate the trials whose ids it carries (worker/tasks.py)
EXPORT_TASK = "scion.export_model"  # write a trial's network in a format into the artifact store (worker/export.py)
EXPORT_QUEUE = "export"  # every worker serves it besides its own queues, so any of them exports
# Queues of trials that take milliseconds: a worker serving training too runs them on a Celery worker of
# their own (worker/consumers.py), so they never wait behind a training trial.
CHEAP_QUEUES = ("cpu",)


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("scion", broker=settings.broker, include=["worker.tasks"])
    transport_options: dict = {"visibility_timeout": settings.broker_visibility_timeout}
    if settings.broker.startswith("filesystem"):
        app.conf.broker_transport = "broker.filesystem:Transport"
        folder = str(settings.broker_folder)
        transport_options |= {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(settings.broker_folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A broker restart must not stop trials mid-training: they write to the database, not the
        # broker, and their lost messages cost nothing (the scheduler re-sends what never started).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_prefetch_multiplier=1,
        # A pool process replaced after a trial had to be killed (worker/stopping.py) imports the worker's
        # libraries before it says it is up; on busy cores that takes longer than Celery's default 4 s.
        worker_proc_alive_timeout=60,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue="gpu",
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_heartbeat=0,
    )
    return app


celery_app = make_celery()


@setup_logging.connect
def _logging(**_: object) -> None:
    """A worker logs as every Scion process does (scion/logs.py), not in Celery's own format."""
    logs.configure()
