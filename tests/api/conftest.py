"""Fixtures of the API tests that serve the app on one fresh SQLite file: the settings pointed at
it, and the app served by uvicorn on a free loopback port (for real HTTP clients and browsers)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.main import create_app
from api.slow_clients import uvicorn_options
from client.stack import free_port
from scion.settings import get_settings
from storage.db import forget_engines


@pytest.fixture
def sqlite_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    """This process's settings on a fresh SQLite file (its URL) and a private home."""
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()
    forget_engines(sqlite_url)


@pytest.fixture
def live_server(sqlite_env: str) -> Iterator[str]:
    """The app served by uvicorn in a thread; its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options()))  # as `scion api` serves it
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
