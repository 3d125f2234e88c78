"""Shared fixtures: real databases (a fresh SQLite file, a fresh PostgreSQL database) upgraded
by Alembic, and settings pointed at them; ``one_torch_thread`` for modules that build networks.

PostgreSQL and Redis come from SCION_TEST_DATABASE_URL / SCION_TEST_REDIS_URL (defaulting to
this machine's servers). Tests that need them skip when they are unreachable, except when
SCION_TEST_REQUIRE_SERVICES is set (CI), where they fail.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scion.settings import get_settings
from storage.migrate import upgrade

REPO = Path(__file__).resolve().parents[1]
NB201_CSV = REPO.parent / "shared" / "data" / "nb201_cifar10.csv"
PG_URL = os.environ.get("SCION_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SCION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = bool(os.environ.get("SCION_TEST_REQUIRE_SERVICES"))


def unavailable(what: str, exc: Exception) -> None:
    message = f"{what} unreachable: {exc}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny networks run fastest on one thread, and the machine is shared; modules that build
    networks use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    if not NB201_CSV.exists():
        pytest.skip(f"{NB201_CSV} not present")
    return NB201_CSV


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'scion.db'}"
    upgrade(url)
    return url


@contextlib.contextmanager
def empty_postgres_database() -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped afterwards."""
    admin_url = make_url(PG_URL)
    name = f"scion_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from storage.db import forget_engines

        forget_engines(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own for each test, with the schema, dropped afterwards."""
    with empty_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture
def chromium() -> Path:
    """Debian's headless Chromium, which .ci/run installs where it is missing."""
    path = Path("/usr/bin/chromium")
    if not path.exists():
        unavailable("Chromium", FileNotFoundError(f"{path} is not installed (apt-get install chromium)"))
    return path


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str):
    """Point this process's settings at the test database and a private home."""
    monkeypatch.setenv("SCION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCION_DATABASE_URL", db_url)
    monkeypatch.setenv("SCION_HEARTBEAT_SECONDS", "0.5")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
