"""Engines and the one transactional scope every repository call runs in."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from scion.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL and a long busy timeout let the API, scheduler and workers share one SQLite file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Connections one process may hold at once (pool, then overflow). The API admits no more requests
# at a time than their sum (api/limits.py RequestSlots).
POOL_SIZE, POOL_OVERFLOW = 10, 20
POOL_CONNECTIONS = POOL_SIZE + POOL_OVERFLOW


def make_engine(url: str, durable: bool = True, autocommit: bool = False) -> Engine:
    """``durable=False``: PostgreSQL acknowledges this engine's commits before their WAL reaches
    the disk (``synchronous_commit off``, set once per connection rather than once per
    transaction, which cost a round trip each). A server crash may then forget the last fraction
    of a second of such commits, but never half of one, and WAL order keeps what survives a
    consistent prefix. For work the service redoes anyway (claims, heartbeats, scheduler passes),
    never for results or requests. ``autocommit``: the connections of ``autocommit`` below, kept
    in that mode rather than switched into it and back at every checkout."""
    isolation = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, **isolation)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it costs a round trip on every checkout, a large share of a cheap trial's
    # database time. A connection that died with the server is invalidated on first use (SQLAlchemy drops
    # the whole pool on a disconnect error), and every caller retries its unit of work.
    options = {} if durable else {"connect_args": {"options": "-c synchronous_commit=off"}}
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=600,
                         **options, **isolation)


_ENGINES: dict[tuple[str, bool, bool], Engine] = {}
_SESSIONS: dict[tuple[str, bool, bool], sessionmaker[Session]] = {}


def _key(url: str | None, durable: bool, autocommit: bool) -> tuple[str, bool, bool]:
    """SQLite has one kind of commit, so one engine per file and mode."""
    url = url or get_settings().db_url
    return url, durable or url.startswith("sqlite"), autocommit


def get_engine(url: str | None = None, *, durable: bool = True, autocommit: bool = False) -> Engine:
    key = _key(url, durable, autocommit)
    if key not in _ENGINES:
        _ENGINES[key] = make_engine(*key)
        _SESSIONS[key] = sessionmaker(bind=_ENGINES[key], expire_on_commit=False)
    return _ENGINES[key]


@contextmanager
def session_scope(url: str | None = None, *, durable: bool = True) -> Iterator[Session]:
    """Commit on success, roll back on error, always close. ``durable=False``: see ``make_engine``."""
    key = _key(url, durable, False)
    get_engine(key[0], durable=key[1])
    session = _SESSIONS[key]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def autocommit(url: str | None = None, *, durable: bool = True) -> Iterator[Connection]:
    """A connection on which each statement commits by itself: for the units of work that are one
    conditional statement (a worker's claim, its result), which a transaction would wrap in two
    more round trips (BEGIN, COMMIT) and the ORM session in more Python."""
    with get_engine(url, durable=durable, autocommit=True).connect() as connection:
        yield connection


def forget_engines(url: str) -> None:
    """Close and drop this process's engines for ``url`` (a database about to be dropped, a test's
    settings changing)."""
    for key in [key for key in _ENGINES if key[0] == url]:
        _SESSIONS.pop(key)
        _ENGINES.pop(key).dispose()


def dispose_engines() -> None:
    """Forget pooled connections inherited across fork; each process opens its own."""
    for engine in _ENGINES.values():
        engine.dispose(close=False)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (down, restarting, connection cut,
    SQLite locked), as opposed to a statement it refused."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def error_message(exc: BaseException, limit: int = 500) -> str:
    """``exc`` as one line to show a user (a job's error and event): its type and the first line of
    its message. For a statement the database refused, the driver's error alone, without the
    statement and parameters SQLAlchemy adds to it, which stay in the log with the traceback."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = next((line.strip() for line in str(inner).splitlines() if line.strip()), "")
    return f"{type(inner).__name__}: {first}"[:limit] if first else type(inner).__name__


def retry_unreachable(work: Callable[[], T], *, what: str, patience_s: float) -> T:
    """Run ``work``, a whole unit of work that opens its own ``session_scope``, again with growing
    pauses (0.1 s doubling to 2 s) while the database is unreachable, for up to ``patience_s``
    seconds; then the last error propagates. For workers, whose claims, epochs and results must
    outlive a database restart; ``work`` must be safe to repeat (conditional updates are)."""
    delay, deadline = 0.1, time.monotonic() + patience_s
    while True:
        try:
            return work()
        except DBAPIError as exc:
            if not is_unreachable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while %s (%s); retrying in %.1f s",
                        what, type(exc.orig).__name__, delay)
        time.sleep(delay)
        delay = min(2 * delay, 2.0)
