"""The poll cache's timing (api/poll_cache.py) with a slow stand-in for the app behind it, so
that waiting shows: the first poll waits for its answer, polls past half the answer's time are
answered at once from the kept answer while a fresh one is computed in the background, and
nobody ever gets an answer older than ``api_cache_seconds``."""
from __future__ import annotations

import asyncio
import json
import time

from api.deps import OPEN
from api.poll_cache import PollCache

KEEP_S, COMPUTE_S = 0.4, 0.15


class SlowApp:
    """Answers every request with how many it has computed, after COMPUTE_S."""

    def __init__(self) -> None:
        self.computed = 0

    async def __call__(self, scope, receive, send) -> None:
        await asyncio.sleep(COMPUTE_S)
        self.computed += 1
        body = json.dumps({"computed": self.computed, "at": time.monotonic()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def poll(cache: PollCache) -> tuple[dict, float]:
    scope = {"type": "http", "method": "GET", "path": "/v1/jobs/7", "query_string": b"", "headers": [],
             "state": {"principal": OPEN}}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    started = time.monotonic()
    await cache(scope, receive, send)
    return json.loads(sent[1]["body"]), time.monotonic() - started


def test_a_steadily_polled_answer_is_renewed_in_the_background_never_waited_for() -> None:
    async def scenario() -> list[tuple[dict, float, float]]:
        app = SlowApp()
        cache = PollCache(app, seconds=KEEP_S)
        polls = []
        for _ in range(16):  # every 0.1 s for 1.6 s: four answer lifetimes
            answer, waited = await poll(cache)
            polls.append((answer, waited, time.monotonic()))
            await asyncio.sleep(0.1)
        return polls

    polls = asyncio.run(scenario())
    first, *rest = polls
    assert first[1] >= COMPUTE_S  # nothing kept yet: the first poll waits for its answer
    assert all(waited < COMPUTE_S / 3 for _, waited, _ in rest), [round(w, 3) for _, w, _ in rest]
    assert max(answer["computed"] for answer, _, _ in rest) >= 3, "the answer was never renewed"
    # Never older than the setting: computed (started) at most KEEP_S before it was served.
    assert all(served - answer["at"] <= KEEP_S for answer, _, served in polls)


def test_an_answer_not_polled_for_longer_than_it_is_kept_is_computed_again_and_waited_for() -> None:
    async def scenario() -> tuple[float, float, int]:
        app = SlowApp()
        cache = PollCache(app, seconds=KEEP_S)
        await poll(cache)
        await asyncio.sleep(KEEP_S + 0.05)
        answer, waited = await poll(cache)
        return waited, answer["computed"], app.computed

    waited, shown, computed = asyncio.run(scenario())
    assert waited >= COMPUTE_S and shown == computed == 2
