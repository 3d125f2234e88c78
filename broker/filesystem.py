"""The embedded broker: kombu's filesystem transport, with each message visible only once whole.

kombu creates a message's file under its final name and then serialises and writes into it, so a
worker polling the folder can take the file while it is still empty and die decoding it
(celery/kombu#1551): the embedded stack then waits for a worker that is gone. Here a message is
written under a name no consumer reads and renamed into place, which is atomic within a folder.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"  # kombu's order and match
        final = os.path.join(self.data_folder_out, name)
        staging = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(staging, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(staging, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
