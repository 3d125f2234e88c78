"""The load generator of ``scion bench api`` (bench/api_load.py) reports what the server answered:
each request's status, over keep-alive connections shared by many requests, with either client."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import uvicorn

from api.main import create_app
from bench.api_load import hammer
from client.stack import free_port
from scion.settings import get_settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path, sqlite_url: str) -> Iterator[str]:
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    get_settings.cache_clear()


@pytest.mark.parametrize("generator", ["lean", "httpx"])
def test_every_request_is_sent_once_and_its_status_reported(served: str, generator: str) -> None:
    paths = [("list", "/v1/jobs?limit=5"), ("missing", "/v1/jobs/424242"), ("health", "/healthz")] * 20
    results = asyncio.run(hammer(served, paths, concurrency=4, generator=generator))
    assert Counter((kind, status) for kind, _, status in results) == {
        ("list", 200): 20, ("missing", 404): 20, ("health", 200): 20}
    assert all(seconds > 0 for _, seconds, _ in results)
