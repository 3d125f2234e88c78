"""Pure ASGI middlewares that protect the API: the token gate, first, so that a request without a
valid token costs no body; the request-size and -time limits, so nothing larger than
``max_body_bytes`` is ever held (chunked bodies are counted) and no body that arrives too slowly
is waited for; then the cap on requests in flight, taken only once the body is in
hand, so that slow clients hold sockets but never slots. (Slow headers: api/slow_clients.py.)"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.datastructures import Headers

from api import errors
from api.deps import OPEN, Principal, bearer_secret
from api.poll_cache import Caller
from scion.settings import get_settings

Scope = dict[str, Any]


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


class BodyLimits:
    """413 for a body over the limit; 408, and the connection closed, for one that has not begun
    within ``api_body_timeout_seconds`` or then falls behind ``api_body_min_bytes_per_second`` on
    average (a client trickling a body a byte at a time); a body within both is read once and
    handed on whole."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        limit = settings.max_body_bytes
        too_large = (f"the request body is larger than this server's limit of {_human(limit)} ({limit} bytes; "
                     "max_body_bytes)")
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, 413, too_large)
            return
        grace, rate = settings.api_body_timeout_seconds, settings.api_body_min_bytes_per_second
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks: list[bytes] = []
        size, tail = 0, None
        while True:
            try:
                async with asyncio.timeout_at(started + grace + size / rate):  # each byte earns 1/rate s more
                    message = await receive()
            except TimeoutError:
                await self._refuse(send, 408, (
                    f"the request body arrived too slowly: {size} bytes in {loop.time() - started:.1f} s; this "
                    f"server waits {grace:g} s for a body, then needs {_human(rate)} a second on average "
                    "(api_body_timeout_seconds, api_body_min_bytes_per_second)"))
                return
            if message["type"] != "http.request":  # the client went away
                tail = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if tail is None else [tail]

        async def replayed() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    async def _refuse(send: Any, status: int, detail: str) -> None:
        """Answered, and the connection closed: the rest of the body is never read."""
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


class RequestSlots:
    """At most ``slots`` (``storage.db.POOL_CONNECTIONS``) /v1 requests in flight in this process,
    counted from when their body has been read; the others wait their turn, in order, in the event
    loop. The probes, the docs and the page never wait here: they hold no connection (``/readyz``
    borrows one for a single query).

    Why: a request holds its database connection from its first query until its response is
    serialised, across several hops to the thread pool (dependencies, endpoint, response
    validation). With more requests in flight than connections, every thread could be waiting for
    a connection held by requests that are waiting for a thread, until the pool's timeout turned
    them all into 500s: 100 jobs submitted at once did exactly that. With no more requests than
    connections, a request always finds one. The token look-ups of AuthGate share the slots
    (``token_checks_in``)."""

    def __init__(self, app: Any, slots: asyncio.Semaphore) -> None:
        self.app, self.slots = app, slots

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_private(scope["path"]):
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)


def token_checks_in(slots: asyncio.Semaphore, caller: Caller) -> Caller:
    """``caller`` (``api.deps.caller``), holding a request slot while it reads a token from the
    database; a request that sends none is answered at once (OPEN, or 401)."""

    async def check(authorization: str | None) -> Principal:
        if bearer_secret(authorization) is None:
            return await caller(authorization)
        async with slots:
            return await caller(authorization)

    return check


def is_private(path: str) -> bool:
    """Everything under /v1 needs a token when auth is on; probes, docs and the page do not."""
    return path == "/v1" or path.startswith("/v1/")


class AuthGate:
    """Decides who is calling a /v1 route before anything else happens, so that a request
    without a valid token gets 401 whatever its body (never a 400, 413 or 422 first), and its
    body is never read. The route's dependency (api.deps.authenticate) picks the result up.
    ``caller``: who sends an Authorization header (``api.deps.caller``, or api/poll_cache.py's
    ``TokenKeep`` around it)."""

    def __init__(self, app: Any, caller: Caller) -> None:
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
