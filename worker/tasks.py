"""Celery tasks and per-process set-up of the worker."""
from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from broker.app import EXPORT_TASK, TASK, celery_app
from scion.settings import get_settings
from storage.db import dispose_engines
from worker.export import export_trial
from worker.presence import Presence
from worker.runner import run_trials

_device: str | None = None  # chosen per pool process at start-up
_presence: Presence | None = None  # the worker's row in the workers table, from its main process

# Celery logs two lines per task at INFO ("received", "succeeded"). The database records every
# trial with its worker and times already, and at hundreds of cheap trials a second those lines
# cost the worker a twentieth of its CPU. Warnings and errors (a failed task) still show, and the
# runner logs its own line for each trial that does not complete.
for _name in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@worker_process_init.connect
def _init_process(**_: object) -> None:
    """Each pool process gets its own database connections, its own GPU and its share of the
    CPU threads, and imports torch now rather than during its first trial."""
    global _device
    dispose_engines()
    import sklearn.datasets  # noqa: F401  (first-trial latency: pay the imports at start-up)
    import torch
    import torch.utils.flop_counter  # noqa: F401
    from billiard.process import current_process

    from worker.training.trainer import pick_device

    threads = int(os.environ.get("SCION_WORKER_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    _device = pick_device(get_settings().worker_device)
    if _device == "cuda" and torch.cuda.device_count() > 1:
        index = getattr(current_process(), "index", 0) or 0
        _device = f"cuda:{index % torch.cuda.device_count()}"
    if _device.startswith("cuda"):
        # Its current device too: what allocates without naming a device (cache release, library
        # handles) stays on this GPU instead of opening a second context on GPU 0.
        torch.cuda.set_device(torch.device(_device))


@worker_ready.connect
def _announce(sender: object, **_: object) -> None:
    """Register the worker's slots once it takes messages (the schedulers share them among jobs). Its
    device is the setting's, 'auto' resolved by counting GPUs through NVML, which unlike probing
    CUDA leaves the pool processes this one forks later free to use it."""
    global _presence
    import torch

    device = get_settings().worker_device
    if device == "auto":
        device = "cuda" if torch.cuda.device_count() else "cpu"
    controller = sender.controller
    _presence = Presence(controller.hostname, list(sender.app.amqp.queues.consume_from), controller.concurrency,
                         device).start()


@worker_shutdown.connect
def _withdraw(**_: object) -> None:
    if _presence is not None:
        _presence.stop()


@celery_app.task(name=TASK, acks_late=True, ignore_result=True)
def evaluate_trials(trial_ids: list[int]) -> None:
    from worker.training.trainer import pick_device

    run_trials(trial_ids, _device or pick_device(get_settings().worker_device))


@celery_app.task(name=EXPORT_TASK, acks_late=True, ignore_result=True)
def export_model(job_id: int, number: int, fmt: str, request: str) -> None:
    export_trial(job_id, number, fmt, request)
