"""Which Celery workers a `scion worker` runs (worker/consumers.py): cheap queues on one of their own
beside training, one for everything otherwise, each named after what it serves."""
from __future__ import annotations

import os
import socket

from worker.consumers import Consumer, plan


def test_a_worker_serving_training_and_look_ups_runs_them_on_two_celery_workers():
    training, cheap = plan(["gpu", "cpu"], concurrency=2, cheap_concurrency=3, split=True, cpus=16)
    assert training == Consumer(("gpu",), 2, 8)  # the CPUs shared by the training processes, as before
    assert cheap == Consumer(("cpu", "export"), 3, 1, "cpu")
    assert (training.role, cheap.role) == ("gpu", "cpu")


def test_one_celery_worker_when_split_is_off_or_one_kind_of_queue_is_served():
    assert plan(["gpu", "cpu"], concurrency=2, cheap_concurrency=2, split=False, cpus=4) == [
        Consumer(("gpu", "cpu", "export"), 2, 2)]
    assert plan(["gpu"], concurrency=1, cheap_concurrency=1, split=True, cpus=4) == [Consumer(("gpu", "export"), 1, 4)]
    assert plan(["cpu", "export"], concurrency=4, cheap_concurrency=1, split=True, cpus=4) == [
        Consumer(("cpu", "export"), 4, 1)]


def test_node_names_say_what_each_serves_and_are_unique_per_process():
    host, pid = socket.gethostname(), os.getpid()
    assert Consumer(("gpu", "cpu", "export"), 2, 1).node_name(None) == f"gpu-cpu-{pid}@{host}"
    assert Consumer(("cpu", "export"), 2, 1).node_name("box") == f"box-cpu-{pid}@{host}"


def test_the_cheap_worker_runs_on_the_cpu_and_a_thread_setting_given_is_kept(monkeypatch):
    monkeypatch.setenv("SCION_WORKER_DEVICE", "cuda")
    monkeypatch.setenv("SCION_WORKER_THREADS", "3")
    env = Consumer(("cpu", "export"), 2, 1, "cpu").environment()
    assert (env["SCION_WORKER_DEVICE"], env["SCION_WORKER_THREADS"]) == ("cpu", "3")
    monkeypatch.delenv("SCION_WORKER_THREADS")
    assert Consumer(("gpu",), 2, 4).environment()["SCION_WORKER_THREADS"] == "4"
