"""Pure ASGI middlewares that protect the API: the request-size limit, so nothing larger than
``max_body_bytes`` is ever held, whether or not the client declared a Content-Length (chunked
bodies are counted); the cap on requests in flight; the token gate."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers

from api import errors
from api.deps import OPEN
from scion.settings import get_settings
from storage.db import POOL_CONNECTIONS

Scope = dict[str, Any]


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


class BodySizeLimit:
    """413 for a body over the limit; a body within it is read once and handed on whole."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_body_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        chunks: list[bytes] = []
        size, tail = 0, None
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                tail = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if tail is None else [tail]

        async def replayed() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    async def _refuse(send: Any, limit: int) -> None:
        body = json.dumps({
            "detail": f"the request body is larger than this server's limit of {_human(limit)} ({limit} bytes; "
                      "max_body_bytes)"
        }).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


class RequestSlots:
    """At most ``storage.db.POOL_CONNECTIONS`` requests in flight in this process; the others wait
    their turn, in order, in the event loop.

    Why: a request holds its database connection from its first query until its response is
    serialised, across several hops to the thread pool (dependencies, endpoint, response
    validation). With more requests in flight than connections, every thread could be waiting for
    a connection held by requests that are waiting for a thread, until the pool's timeout turned
    them all into 500s: 100 jobs submitted at once did exactly that. With no more requests than
    connections, a request always finds one."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(POOL_CONNECTIONS)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)


def is_private(path: str) -> bool:
    """Everything under /v1 needs a token when auth is on; probes, docs and the page do not."""
    return path == "/v1" or path.startswith("/v1/")


class AuthGate:
    """Decides who is calling a /v1 route before anything else happens, so that a request
    without a valid token gets 401 whatever its body (never a 400, 413 or 422 first), and its
    body is never read. The route's dependency (api.deps.authenticate) picks the result up.
    ``caller``: who sends an Authorization header (``api.deps.caller``, or api/poll_cache.py's
    ``TokenKeep`` around it)."""

    def __init__(self, app: Any, caller: Callable[[str | None], Awaitable[Any]]) -> None:
        self.app, self.caller = app, caller

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_private(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not get_settings().auth_enabled:
            scope.setdefault("state", {})["principal"] = OPEN
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.caller(Headers(scope=scope).get("authorization"))
        except errors.ANSWERED as exc:  # outside the app's handlers: answered as they would
            response = await errors.answer(None, exc)
        else:
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
