"""What the API answers from memory: the reads clients poll, and the tokens they poll with.

Users watch a search by asking for its status and its best trials over and over: the CLI's
``watch``, the web page, scripts, a team's dashboards, often many at once for the same job and with
one token. Each answer costs database round trips and serialisation, and none of it changes faster
than trials finish. So each API process keeps (api/kept.py: computed once at a time, renewed in the
background before it runs out), for ``api_cache_seconds``:

- ``PollCache``: the last answer to each such GET, per caller (an owner sees only their own jobs).
  An answer is at most that old; a write to a job through this process (a cancel) drops that job's
  answers at once, so its caller reads its own write. Only 200s are kept.
- ``TokenKeep``: who each token found live is, by the token's hash, so a client polling with its
  token costs no database read and no trip to the thread pool per request. A revoked token is
  simply not renewed: it is refused once its check runs out. Only live tokens are kept, so a
  stream of bad ones cannot grow it.

``install`` puts both around the plain path (``api.deps.caller``, the routes); with
``api_cache_seconds`` 0 it installs neither, and every request reads the database.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from api.deps import Principal
from api.kept import Kept
from storage import tokens

Scope = dict[str, Any]
POLLED = re.compile(r"/v1/jobs/(\d+)(?:/trials|/best)?")
A_JOB = re.compile(r"/v1/jobs/(\d+)(?:/|$)")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Answer:
    start: dict[str, Any]
    body: bytes

    async def send(self, send: Any) -> None:
        await send(self.start)
        await send({"type": "http.response.body", "body": self.body})


class PollCache:
    """Pure ASGI; inside AuthGate, which has put the caller in the scope's state."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app, self.seconds = app, seconds
        self.answers: Kept[tuple, Answer] = Kept(limit=4096)
        self.writes: dict[int, int] = {}  # job id -> writes seen, so an answer read before a write is not kept

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in WRITES:
            if written := A_JOB.match(scope["path"]):
                self._forget(int(written[1]))
            await self.app(scope, receive, send)
            return
        polled = POLLED.fullmatch(scope["path"])
        principal = scope.get("state", {}).get("principal")
        if scope["method"] != "GET" or polled is None or principal is None:
            await self.app(scope, receive, send)
            return
        job_id = int(polled[1])
        answered = False

        async def compute(in_background: bool) -> Answer | None:
            nonlocal answered
            if in_background:  # as this request would have, with nobody to answer
                return await self._answer(job_id, {**scope, "state": dict(scope.get("state", {}))},
                                          _one_request(), _discard)
            answered = True
            return await self._answer(job_id, scope, receive, send)

        key = (job_id, scope["path"], scope["query_string"], None if principal.sees_all else principal.owner)
        answer = await self.answers.get(key, self.seconds, compute)
        if not answered and answer is not None:
            await answer.send(send)

    async def _answer(self, job_id: int, scope: Scope, receive: Any, send: Any) -> Answer | None:
        """Run the request through the app, answering it; returns the answer if it is to be kept."""
        writes, sent = self.writes.get(job_id, 0), []

        async def keep(message: dict[str, Any]) -> None:
            sent.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        if (len(sent) == 2 and sent[0]["status"] == 200 and not sent[1].get("more_body")
                and self.writes.get(job_id, 0) == writes):
            return Answer(sent[0], sent[1].get("body", b""))
        return None

    def _forget(self, job_id: int) -> None:
        self.writes[job_id] = self.writes.get(job_id, 0) + 1
        self.answers.forget(lambda key: key[0] == job_id)


Caller = Callable[[str | None], Awaitable[Principal]]  # an Authorization header -> who sends it


class TokenKeep:
    """``caller`` (``api.deps.caller``), with the principal of each token it found live kept for
    ``seconds``: the requests with one token that arrive while it is checked share that check
    (fifty users polling with one token would otherwise all read it at once whenever it expires)."""

    def __init__(self, caller: Caller, seconds: float) -> None:
        self.caller, self.seconds = caller, seconds
        self.live: Kept[str, Principal] = Kept(limit=1024)

    async def __call__(self, authorization: str | None) -> Principal:
        if not authorization:  # answered without the database: OPEN, or 401
            return await self.caller(authorization)

        async def check(_in_background: bool) -> Principal:
            return await self.caller(authorization)

        return await self.live.get(tokens.hash_secret(authorization), self.seconds, check)  # no secret in memory


def install(app: FastAPI, caller: Caller, seconds: float) -> Caller:
    """Add the poll cache to ``app``'s middleware, and return ``caller`` with live tokens kept, for
    AuthGate: call it before AuthGate is added, so that the cache sits inside the gate (which puts
    the caller in the scope: answers are kept per caller). ``seconds`` 0: neither; ``caller`` as it is."""
    if seconds <= 0:
        return caller
    app.add_middleware(PollCache, seconds=seconds)
    return TokenKeep(caller, seconds)


def _one_request() -> Any:
    """``receive`` for a GET replayed in the background: an empty body, then a disconnect."""
    request = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return request.pop() if request else {"type": "http.disconnect"}

    return receive


async def _discard(_message: dict[str, Any]) -> None:
    pass
