"""Fixtures of the API tests that serve the app on one fresh SQLite file: the settings pointed at
it, and the app served by uvicorn on a free loopback port (for real HTTP clients and browsers)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.main import create_app
from client.stack import serve
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
    with serve(create_app()) as url:
        yield url
