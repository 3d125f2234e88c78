"""Celery tasks and per-process set-up of the worker."""
from __future__ import annotations

import logging
import os

from celery.signals import celeryd_init, worker_process_init, worker_ready, worker_shutdown

from broker.app import EXPORT_TASK, TASK, celery_app
from scion import logs
from scion.settings import get_settings
from storage.db import dispose_engines
from worker.export import export_trial
from worker.presence import Presence
from worker.runner import run_trials
from worker.stopping import STOPPER

log = logging.getLogger(__name__)
_device: str | None = None  # chosen per pool process at start-up
_presence: Presence | None = None  # the worker's row in the workers table, from its main process

# Celery logs two lines per task at INFO ("received", "succeeded"). The database records every
# trial with its worker and times already, and at hundreds of cheap trials a second those lines
# cost the worker a twentieth of its CPU. Warnings and errors (a failed task) still show, and the
# runner logs its own line for each trial that does not complete.
for _name in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def _process_device(index: int) -> str:
    """The device of the worker's pool process number ``index``: the setting's, and where it
    says 'cuda' on a machine with several GPUs, the GPUs in turn. GPUs are counted through NVML,
    which unlike probing CUDA leaves the pool processes the main process forks later free to use
    them."""
    import torch

    from worker.training.trainer import pick_device

    setting, count = get_settings().worker_device, torch.cuda.device_count()
    device = ("cuda" if count else "cpu") if setting.strip().lower() == "auto" else pick_device(setting)
    if device == "cuda" and count > 1:
        device = f"cuda:{index % count}"
    return device


@celeryd_init.connect
def _name_the_worker(sender: str, instance: object, **_: object) -> None:
    """Every line of this worker, its pool processes' too, names its node (scion/logs.py). Celery's
    start-up banner (a screenful of lines without timestamps, outside the log format) gives way to
    the one line ``_say_ready`` logs."""
    logs.configure()  # now, before Celery's own start-up warnings
    logs.bind(worker=sender)
    instance.quiet = True


@worker_ready.connect
def _ready(sender: object, **_: object) -> None:
    """Once the worker takes messages: one line with its node, processes, devices and queues, and
    its slots registered in the workers table (the schedulers share them among jobs)."""
    global _presence
    controller = sender.controller
    devices = [_process_device(index) for index in range(controller.concurrency)]
    queues = sorted(sender.app.amqp.queues.consume_from)
    device = ",".join(sorted(set(devices)))
    log.info("worker ready: %d process(es) on %s, queues %s", controller.concurrency, ", ".join(devices),
             ", ".join(queues), extra={"device": device, "queues": queues, "concurrency": controller.concurrency})
    _presence = Presence(controller.hostname, queues, controller.concurrency, devices[0].split(":")[0]).start()


@worker_process_init.connect
def _init_process(**_: object) -> None:
    """Each pool process gets its own database connections, its own GPU and its share of the
    CPU threads, and imports torch now rather than during its first trial."""
    global _device
    dispose_engines()
    STOPPER.allow_kill()  # the pool replaces this process if a trial has to be killed (worker/stopping.py)
    import sklearn.datasets  # noqa: F401  (first-trial latency: pay the imports at start-up)
    import torch
    import torch.utils.flop_counter  # noqa: F401
    from billiard.process import current_process

    threads = int(os.environ.get("SCION_WORKER_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    _device = _process_device(getattr(current_process(), "index", 0) or 0)
    logs.bind(device=_device)
    if _device.startswith("cuda"):
        # Its current device too: what allocates without naming a device (cache release, library
        # handles) stays on this GPU instead of opening a second context on GPU 0.
        torch.cuda.set_device(torch.device(_device))


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
