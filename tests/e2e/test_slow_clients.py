"""Slow clients against a real `scion api` process, over raw sockets: forty connections that send
a request's headers and then no body, a body a few bytes at a time, or headers a byte at a time
must neither stop the API answering everyone else (the probes, an authenticated listing) nor
hold their sockets past the timeouts, which answer them 408 and close them. The timeouts are
set short here (2 s); their defaults are in docs/security.md."""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from client.stack import LocalStack
from scion.settings import Settings, get_settings
from storage import tokens
from storage.db import forget_engines, session_scope
from storage.migrate import upgrade

pytestmark = pytest.mark.slow

TIMEOUT_S = 2.0  # headers, and the wait for a body to begin
MIN_RATE = 100  # bytes a second a body must keep up after that
SLOW = 40  # more than the API's request slots (storage.db.POOL_CONNECTIONS)
PROMPT_S = 1.0  # what "answers at once" means while the slow ones are open


@dataclass
class Api:
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def head(self, method: str, path: str, extra: str = "") -> bytes:
        return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
                f"{extra}").encode()


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """`scion api` with tokens required and short slow-client timeouts; a live token."""
    url = f"sqlite:///{tmp_path / 'scion.db'}"
    upgrade(url)
    for key in [k for k in os.environ if k.startswith("SCION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SCION_DATABASE_URL", url)
    get_settings.cache_clear()
    with session_scope() as session:
        token = tokens.create_token(session, name="reader")
    stack = LocalStack(Settings(home=tmp_path / "home", database_url=url), workers=0, env={
        "SCION_AUTH": "on", "SCION_API_HEADER_TIMEOUT_SECONDS": str(TIMEOUT_S),
        "SCION_API_BODY_TIMEOUT_SECONDS": str(TIMEOUT_S), "SCION_API_BODY_MIN_BYTES_PER_SECOND": str(MIN_RATE),
    })
    try:
        stack.spawn_api()
        deadline = time.monotonic() + 60
        while not _answers(f"{stack.url}/healthz"):
            assert not stack.exited() and time.monotonic() < deadline, stack.exited() or "the API did not start"
            time.sleep(0.2)
        yield Api(stack.port, token)
    finally:
        stack.stop()
        forget_engines(url)
        get_settings.cache_clear()


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


@dataclass
class Closed:
    after_s: float
    answer: bytes

    @property
    def status(self) -> int | None:
        return int(self.answer.split(b" ", 2)[1]) if self.answer.startswith(b"HTTP/1.1 ") else None


async def slow_client(port: int, first: bytes, then: bytes = b"", every_s: float = 0.2, step: int = 1,
                      limit_s: float = 20) -> Closed:
    """Send ``first`` at once, then ``then`` ``step`` bytes every ``every_s``; how long the server
    took to close the connection (``limit_s`` if it had not by then), and what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(first)

    async def dribble() -> None:
        with contextlib.suppress(OSError):
            for i in range(0, len(then), step):
                await asyncio.sleep(every_s)
                writer.write(then[i:i + step])
                await writer.drain()

    dribbling = asyncio.create_task(dribble())
    answer = b""
    try:
        async with asyncio.timeout(limit_s):
            while chunk := await reader.read(65536):
                answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        dribbling.cancel()
        writer.close()
    return Closed(time.monotonic() - started, answer)


async def prompt_answers(api: Api) -> dict[str, tuple[int | None, float]]:
    """What other clients get meanwhile, each with its status and how long it took (5 s at most)."""
    answered = {}
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
        for name, path, headers in (("healthz", "/healthz", {}), ("no token", "/v1/jobs", {}),
                                    ("jobs", "/v1/jobs", {"Authorization": f"Bearer {api.token}"})):
            started = time.monotonic()
            try:
                status = (await client.get(path, headers=headers)).status_code
            except httpx.HTTPError:
                status = None
            answered[name] = (status, time.monotonic() - started)
    # Refused from its Content-Length alone (a client sending the body would meet a closed socket).
    too_large = api.head("POST", "/v1/jobs", f"Content-Length: {2 << 20}\r\n\r\n")
    closed = await slow_client(api.port, too_large, limit_s=5)
    answered["too large"] = (closed.status, closed.after_s)
    return answered


async def while_open(api: Api, clients: list) -> tuple[dict[str, tuple[int | None, float]], list[Closed]]:
    slow = [asyncio.create_task(c) for c in clients]
    await asyncio.sleep(0.5)  # every slow client has sent what it sends first
    others = await prompt_answers(api)
    return others, await asyncio.gather(*slow)


def check_others(others: dict[str, tuple[int | None, float]]) -> None:
    assert {name: status for name, (status, _) in others.items()} == {
        "healthz": 200, "no token": 401, "jobs": 200, "too large": 413}, others
    assert all(took < PROMPT_S for _, took in others.values()), others


def test_bodies_that_never_come_or_trickle_hold_no_slot_and_are_answered_408(api: Api) -> None:
    post = api.head("POST", "/v1/jobs", "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    # Three times the minimum rate, over longer than the grace: read whole, and answered by the route.
    body = b'{"name": ' + b" " * 1490 + b"}"  # no value: the route's 422 names its last character
    keeping_up = api.head("POST", "/v1/jobs", f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                                              "Connection: close\r\n\r\n")
    others, closed = asyncio.run(while_open(api, [
        *(slow_client(api.port, post) for _ in range(SLOW // 2)),  # no body at all
        # 50 bytes a second: half the minimum rate, so it falls behind once the grace is spent
        *(slow_client(api.port, post, b"{" * 2000, every_s=0.2, step=10) for _ in range(SLOW // 2)),
        slow_client(api.port, keeping_up, body, every_s=0.1, step=30),
    ]))
    check_others(others)
    silent, trickled, (kept_up,) = closed[:SLOW // 2], closed[SLOW // 2:SLOW], closed[SLOW:]
    for c in silent:
        assert c.status == 408 and b"arrived too slowly" in c.answer and b"connection: close" in c.answer, c
        assert TIMEOUT_S - 0.2 < c.after_s < TIMEOUT_S + 1.5, c
    for c in trickled:  # due at t = 2 + 50 t / 100, so 4 s
        assert c.status == 408 and b"api_body_min_bytes_per_second" in c.answer, c
        assert 2 * TIMEOUT_S - 0.5 < c.after_s < 2 * TIMEOUT_S + 1.5, c
    assert kept_up.status == 422 and b"invalid JSON at character 1499" in kept_up.answer, kept_up
    assert kept_up.after_s > TIMEOUT_S + 2, kept_up


def test_headers_that_trickle_or_never_come_are_cut_off(api: Api) -> None:
    trickle = b"a" * 1000  # five bytes a second, for longer than the test
    others, closed = asyncio.run(while_open(api, [
        *(slow_client(api.port, api.head("GET", "/v1/jobs", "X-Slow: "), trickle) for _ in range(SLOW)),
        slow_client(api.port, b""),  # connects and says nothing
        slow_client(api.port, api.head("GET", "/healthz", "X-Big: " + "a" * 100_000)),
    ]))
    check_others(others)
    *trickled, idle, big = closed
    for c in trickled:
        assert c.status == 408 and b"api_header_timeout_seconds" in c.answer, c
        assert TIMEOUT_S - 0.2 < c.after_s < TIMEOUT_S + 1.5, c
    assert idle.answer == b"" and TIMEOUT_S - 0.2 < idle.after_s < TIMEOUT_S + 1.5, idle
    assert big.status == 431 and b"api_max_header_bytes" in big.answer and big.after_s < PROMPT_S, big


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_request(api: Api) -> None:
    """The first request answered, the second one's headers trickle: cut off like a new one."""
    first = api.head("GET", "/healthz", "\r\n") + api.head("GET", "/healthz", "X-Slow: ")
    closed = asyncio.run(slow_client(api.port, first, b"a" * 1000))
    assert closed.answer.startswith(b"HTTP/1.1 200 OK"), closed
    assert closed.answer.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 408 " in closed.answer, closed
