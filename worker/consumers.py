"""The Celery workers one ``scion worker`` runs, and what each is called.

Celery hands a worker's pool processes the messages of all its queues in one order, so on a worker
serving training (gpu) and table look-ups (cpu) with every process busy training, a look-up waits
for a training trial to end: minutes, for a millisecond's work. Where a ``scion worker`` serves
both, it therefore runs two Celery workers, each a process of its own with its own pool: one for
the training queue, and one for the cheap ones (cpu, and export: downloads need not wait for
training either), on the CPU with one thread per process. ``scion worker`` then only supervises
them: SIGTERM or SIGINT is passed on as SIGTERM (Celery's warm shutdown: running trials finish,
nothing new starts), and when one exits on its own the other is stopped and ``scion worker`` exits
with its code. With ``worker_split_queues`` off, or serving one kind of queue, it runs one Celery
worker in its own process, as it always did.

Each Celery worker is named ``<role>-<pid>@<host>`` (``<name>-<role>-<pid>@<host>`` with
``--name``), the role being the queues it serves (``gpu``, ``cpu``, ``gpu-cpu``), so its node name,
its log lines and its row in the ``workers`` table (worker/presence.py) say which it is.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from broker.app import CHEAP_QUEUES, EXPORT_QUEUE, celery_app

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Consumer:
    """One Celery worker: its queues, its pool processes, each one's torch threads, and the device
    it must use whatever ``worker_device`` says (None: the setting's)."""

    queues: tuple[str, ...]
    concurrency: int
    threads: int
    device: str | None = None

    @property
    def role(self) -> str:
        return "-".join(q for q in self.queues if q != EXPORT_QUEUE) or EXPORT_QUEUE

    def node_name(self, prefix: str | None) -> str:
        """This process's node name, unique on its host."""
        who = f"{prefix}-{self.role}" if prefix else self.role
        return f"{who}-{os.getpid()}@{socket.gethostname()}"

    def environment(self) -> dict[str, str]:
        """This process's environment with the consumer's own settings (threads unless set already)."""
        env = {"SCION_WORKER_THREADS": str(self.threads), **os.environ}
        if self.device:
            env["SCION_WORKER_DEVICE"] = self.device
        return env


def plan(queues: list[str], *, concurrency: int, cheap_concurrency: int, split: bool,
         cpus: int | None = None) -> list[Consumer]:
    """The consumers that serve ``queues`` (and export, which every ``scion worker`` serves)."""
    threads = max(1, (cpus or os.cpu_count() or 1) // concurrency)
    served = list(dict.fromkeys(queues))
    training = [q for q in served if q not in (*CHEAP_QUEUES, EXPORT_QUEUE)]
    cheap = [q for q in served if q in CHEAP_QUEUES]
    if split and training and cheap:
        return [Consumer(tuple(training), concurrency, threads),
                Consumer((*cheap, EXPORT_QUEUE), cheap_concurrency, 1, "cpu")]
    return [Consumer(tuple(served + [EXPORT_QUEUE] * (EXPORT_QUEUE not in served)), concurrency, threads)]


def run(consumer: Consumer, prefix: str | None) -> None:
    """Make this process the consumer's Celery worker, until it shuts down."""
    os.environ.update(consumer.environment())
    celery_app.worker_main(["worker", f"--concurrency={consumer.concurrency}", f"--queues={','.join(consumer.queues)}",
                            f"--hostname={consumer.node_name(prefix)}", "--pool=prefork", "--loglevel=INFO",
                            "--without-gossip", "--without-mingle"])


def supervise(consumers: list[Consumer], prefix: str | None) -> int:
    """Run each consumer in a child process until all have exited; returns the exit code: 0 after a
    stop asked for by a signal, else that of the first child to exit on its own (1 if it said 0)."""
    children = [subprocess.Popen([sys.executable, "-m", "worker.consumers",
                                  json.dumps(dataclasses.asdict(c)), prefix or ""], env=c.environment())
                for c in consumers]
    asked, first_exit = False, None

    def stop(*_: object) -> None:
        nonlocal asked
        asked = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(child.poll() is None for child in children):
            exited = next((child for child in children if child.returncode is not None), None)
            if exited is not None and not asked:
                first_exit = exited.returncode if exited.returncode > 0 else 1
                log.error("Celery worker %d exited with %s; stopping the others", exited.pid, exited.returncode)
                stop()
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if first_exit is None and not asked:  # all ended together, on their own
        first_exit = next((child.returncode for child in children if child.returncode > 0), 1)
    return first_exit or 0


if __name__ == "__main__":  # a child of ``supervise``
    fields = json.loads(sys.argv[1])
    run(Consumer(**{**fields, "queues": tuple(fields["queues"])}), sys.argv[2] or None)
