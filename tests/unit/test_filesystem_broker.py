"""The embedded broker never hands a worker a message that is still being written."""
from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pytest
from kombu import Connection

from broker.filesystem import Transport


class SlowToEncode:
    """A value whose encoding takes a while, as a message's does on a busy machine."""

    def __json__(self) -> str:
        time.sleep(0.3)
        return "done"


def take_while_written(transport, folder: Path, queue_name: str) -> dict:
    """Put one slow message from a thread while polling the queue; returns what was taken. (kombu
    keeps declared queues in process-wide state: each test uses a queue of its own.)"""
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
               "control_folder": str(folder / "control"), "store_processed": False}
    with Connection("filesystem://", transport=transport, transport_options=options) as sender, \
            Connection("filesystem://", transport=transport, transport_options=options) as receiver:
        inbox = receiver.SimpleQueue(queue_name)
        outbox = sender.SimpleQueue(queue_name)
        # The headers travel inside the envelope kombu writes to the file, so they are encoded there.
        writer = threading.Thread(target=outbox.put, args=({"trial": 7},),
                                  kwargs={"headers": {"note": SlowToEncode()}})
        writer.start()
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    message = inbox.get_nowait()
                    break
                except queue.Empty:
                    assert time.monotonic() < deadline, "the message never arrived"
                    time.sleep(0.005)
        finally:
            writer.join()
        message.ack()
        return {**message.payload, **message.headers}


def test_kombus_own_filesystem_transport_hands_out_a_half_written_message(tmp_path):
    """What this module exists for (celery/kombu#1551): the file is there before its content."""
    with pytest.raises(json.JSONDecodeError):
        take_while_written("filesystem", tmp_path, "kombu")


def test_a_message_is_taken_only_once_whole(tmp_path):
    assert take_while_written(Transport, tmp_path, "scion") == {"trial": 7, "note": "done"}
