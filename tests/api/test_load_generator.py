"""The load generator of ``scion bench api`` (bench/api_load.py) reports what the server answered:
each request's status, over keep-alive connections shared by many requests, with either client."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bench.api_load import hammer


@pytest.mark.parametrize("generator", ["lean", "httpx"])
def test_every_request_is_sent_once_and_its_status_reported(live_server: str, generator: str) -> None:
    paths = [("list", "/v1/jobs?limit=5"), ("missing", "/v1/jobs/424242"), ("health", "/healthz")] * 20
    results = asyncio.run(hammer(live_server, paths, concurrency=4, generator=generator))
    assert Counter((kind, status) for kind, _, status in results) == {
        ("list", 200): 20, ("missing", 404): 20, ("health", 200): 20}
    assert all(seconds > 0 for _, seconds, _ in results)
