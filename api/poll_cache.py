"""The reads clients poll, answered from memory for ``api_cache_seconds``.

Users watch a search by asking for its status and its best trials over and over: the CLI's
``watch``, the web page, scripts, a team's dashboards, often many at once for the same job. Each
answer costs database round trips and serialisation, and none of it changes faster than trials
finish. So each API process keeps the last answer to each such GET (api/kept.py: computed once
at a time, renewed in the background before it runs out), per caller (an owner sees only their
own jobs). An answer is at most ``api_cache_seconds`` old; a write to a job through this process
(a cancel) drops that job's answers at once, so its caller reads its own write. Only 200s are kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from api.kept import Kept
from scion.settings import get_settings

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

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: Kept[tuple, Answer] = Kept(limit=4096)
        self.writes: dict[int, int] = {}  # job id -> writes seen, so an answer read before a write is not kept

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
        answer = await self.answers.get(key, ttl, compute)
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


def _one_request() -> Any:
    """``receive`` for a GET replayed in the background: an empty body, then a disconnect."""
    request = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return request.pop() if request else {"type": "http.disconnect"}

    return receive


async def _discard(_message: dict[str, Any]) -> None:
    pass
