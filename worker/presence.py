"""A Celery worker's row in the ``workers`` table, which the schedulers divide slots by (scheduler/fair_share.py).

Written when the worker is ready to take messages, beaten every ``heartbeat_seconds`` from a thread
of the worker's main process, deleted when it shuts down. A worker killed without a word stops
beating, and the schedulers stop counting it after ``heartbeat_timeout_seconds``.
"""
from __future__ import annotations

import logging
import threading

from scion.settings import get_settings
from storage import repository as repo
from storage.db import autocommit

log = logging.getLogger(__name__)


class Presence:
    def __init__(self, name: str, queues: list[str], slots: int, device: str) -> None:
        self.name, self.queues, self.slots, self.device = name, sorted(queues), slots, device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scion-presence", daemon=True)

    def start(self) -> Presence:
        self.beat()
        self._thread.start()
        log.info("worker %s serves %s with %d slot(s) on %s", self.name, ",".join(self.queues), self.slots,
                 self.device)
        return self

    def beat(self) -> None:
        settings = get_settings()
        try:
            with autocommit(durable=False) as connection:
                repo.beat_worker(connection, name=self.name, queues=self.queues, slots=self.slots,
                                 device=self.device, gone_after_s=settings.heartbeat_timeout_seconds)
        except Exception as exc:  # the database away: the next beat tries again
            log.warning("worker %s could not register its slots (%s); will retry", self.name, type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(get_settings().heartbeat_seconds):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            with autocommit(durable=False) as connection:
                repo.drop_worker(connection, name=self.name)
        except Exception as exc:  # its row goes stale instead
            log.warning("worker %s could not remove its row (%s)", self.name, type(exc).__name__)
