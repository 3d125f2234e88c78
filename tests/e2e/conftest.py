"""Fixtures of the real-process tests."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.e2e.faults import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port, without persistence."""
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
    except RuntimeError as exc:
        unavailable("redis-server", exc)
    yield server
    server.kill()
