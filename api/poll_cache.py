"""The reads clients poll, answered from memory for ``api_cache_seconds``.

Users watch a search by asking for its status and its best trials over and over: the CLI's
``watch``, the web page, scripts, a team's dashboards, often many at once for the same job. Each
answer costs database round trips and serialisation, and none of it changes faster than trials
finish. So each API process keeps the last answer to each such GET for a fraction of a second,
per caller (an owner sees only their own jobs), and while one answer is being computed, the same
request arriving meanwhile waits for it rather than asking the database again. Once an answer is
half its time old, the next request for it has it computed afresh in the background, and is
answered meanwhile from the one kept: a URL polled steadily is never waited for. An answer is at
most ``api_cache_seconds`` old; a write to a job through this process (a cancel) drops that
job's answers at once, so its caller reads its own write. Only 200s are kept.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from scion.settings import get_settings

Scope = dict[str, Any]
POLLED = re.compile(r"/v1/jobs/(\d+)(?:/trials|/best)?")
A_JOB = re.compile(r"/v1/jobs/(\d+)(?:/|$)")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
MAX_ENTRIES = 4096
MAX_RENEWING = 4  # answers computed in the background at once, each holding a database connection
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    expires: float  # monotonic
    renew_after: float
    start: dict[str, Any]
    body: bytes

    async def send(self, send: Any) -> None:
        await send(self.start)
        await send({"type": "http.response.body", "body": self.body})


class PollCache:
    """Pure ASGI; inside AuthGate, which has put the caller in the scope's state."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: OrderedDict[tuple, Answer] = OrderedDict()
        self.computing: dict[tuple, asyncio.Future[Answer | None]] = {}
        self.writes: dict[int, int] = {}  # job id -> writes seen, so an answer read before a write is not kept
        self.renewing: set[asyncio.Task] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        ttl = get_settings().api_cache_seconds
        if scope["type"] != "http" or not ttl:
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
        key = (int(polled[1]), scope["path"], scope["query_string"], None if principal.sees_all else principal.owner)
        now = time.monotonic()
        answer = self.answers.get(key)
        if answer is None or answer.expires <= now:
            answer = await self._compute(key, ttl, scope, receive, send)
            if answer is None:  # sent already, or not kept (not a 200)
                return
        elif now >= answer.renew_after and key not in self.computing and len(self.renewing) < MAX_RENEWING:
            self._renew(key, ttl, scope)
        await answer.send(send)

    def _renew(self, key: tuple, ttl: float, scope: Scope) -> None:
        """Compute ``key``'s answer afresh in the background, as this request would have."""
        request = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            return request.pop() if request else {"type": "http.disconnect"}

        async def discard(_message: dict[str, Any]) -> None:
            pass

        async def renew() -> None:
            try:
                await self._compute(key, ttl, {**scope, "state": dict(scope.get("state", {}))}, receive, discard)
            except Exception:  # the next request past the answer's time computes it in the foreground
                log.warning("renewing the answer to %s failed", key[1], exc_info=True)

        task = asyncio.create_task(renew())
        self.renewing.add(task)
        task.add_done_callback(self.renewing.discard)

    async def _compute(self, key: tuple, ttl: float, scope: Scope, receive: Any, send: Any) -> Answer | None:
        """The answer for ``key``: another request's, if one is computing it now, else this one's."""
        if key in self.computing:
            answer = await asyncio.shield(self.computing[key])
            if answer is not None:
                return answer
            await self.app(scope, receive, send)
            return None
        leader = self.computing[key] = asyncio.get_running_loop().create_future()
        job_id, writes, started = key[0], self.writes.get(key[0], 0), time.monotonic()
        sent: list[dict[str, Any]] = []

        async def keep(message: dict[str, Any]) -> None:
            sent.append(message)
            await send(message)

        answer = None
        try:
            await self.app(scope, receive, keep)
            if (len(sent) == 2 and sent[0]["status"] == 200 and not sent[1].get("more_body")
                    and self.writes.get(job_id, 0) == writes):
                answer = Answer(started + ttl, started + ttl / 2, sent[0], sent[1].get("body", b""))
                self.answers[key] = answer
                self.answers.move_to_end(key)
                if len(self.answers) > MAX_ENTRIES:
                    self.answers.popitem(last=False)
        finally:
            del self.computing[key]
            leader.set_result(answer)
        return None

    def _forget(self, job_id: int) -> None:
        self.writes[job_id] = self.writes.get(job_id, 0) + 1
        for key in [k for k in self.answers if k[0] == job_id]:
            del self.answers[key]
