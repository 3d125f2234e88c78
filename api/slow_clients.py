"""How `scion api` serves connections, so that clients that send slowly cannot hold the API.

uvicorn bounds neither the time a request's line and headers take to arrive (its keep-alive
timer stops at the first byte, and a fresh connection has none) nor, with httptools, their
size. A client trickling headers a byte at a time would hold its socket for ever, and thousands
of them every file descriptor. ``TimedHTTP`` is uvicorn's own HTTP protocol with a deadline on
each request's headers, from when the connection opens or its previous response ends:
``api_header_timeout_seconds``, and at most ``api_max_header_bytes`` of them. Past either, the
client is answered (408 or 431) and its connection closed; a connection that sent nothing at all
is closed without an answer, as an idle one would be. The body is the app's business
(api/limits.py ``BodyLimits``), read under its own deadline before the request takes a slot.
"""
from __future__ import annotations

import json
import logging
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from scion.settings import get_settings

log = logging.getLogger(__name__)


def _reply(status: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "x-content-type-options: nosniff\r\nconnection: close\r\n\r\n").encode() + body


class HeaderDeadline:
    """For a uvicorn HTTP protocol (httptools' or h11's, which share the parts used here): each
    request's headers under a deadline and a size limit. A request's headers count as arrived when
    uvicorn starts its cycle (``self.cycle``)."""

    cycle: Any
    client: Any
    loop: Any
    transport: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout, self.max_header_bytes = settings.api_header_timeout_seconds, settings.api_max_header_bytes
        self.header_deadline: TimerHandle | None = None
        self.header_bytes = 0
        self.waiting_after: Any = None  # the cycle in place when the wait for headers began

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if (self.header_deadline is None and self.cycle is not None and not self.cycle.more_body
                and not self.cycle.response_complete):
            self._await_headers()  # bytes after a whole request, before its answer: the next one, pipelined
        if self.header_deadline is not None:
            self.header_bytes += len(data)
        super().data_received(data)
        if self.header_deadline is None or self.transport.is_closing():
            return
        if self.cycle is not self.waiting_after:
            self._headers_arrived()
        elif self.header_bytes > self.max_header_bytes:
            self._refuse("431 Request Header Fields Too Large",
                         f"the request's line and headers are larger than this server's limit of "
                         f"{self.max_header_bytes} bytes (api_max_header_bytes)")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Unless the next request (pipelined) had already arrived, the connection now waits for one.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()

    def _await_headers(self) -> None:
        if self.header_deadline is not None:  # already waiting (a pipelined request): the same deadline
            return
        self.header_bytes, self.waiting_after = 0, self.cycle
        self.header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_arrived(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing():
            return
        if self.header_bytes == 0:  # nothing asked: an idle connection, closed as such
            self.transport.close()
            return
        self._refuse("408 Request Timeout",
                     f"the request's line and headers did not arrive within {self.header_timeout:g} s "
                     "(api_header_timeout_seconds)")

    def _refuse(self, status: str, detail: str) -> None:
        self._headers_arrived()
        client = "{}:{}".format(*self.client) if self.client else "a client"
        log.warning("%s: %s; connection closed", client, detail)
        self.transport.write(_reply(status, detail))
        self.transport.close()


class TimedHTTP(HeaderDeadline, AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol (httptools where installed, else h11), with HeaderDeadline."""


def uvicorn_options() -> dict[str, Any]:
    """What `scion api` passes to uvicorn besides the app and its address."""
    return {"http": TimedHTTP, "h11_max_incomplete_event_size": get_settings().api_max_header_bytes}
