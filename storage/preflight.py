"""What every process of the service checks before it takes any work: that its settings can work
together and that its database is reachable and migrated.

``scion api``, ``scion scheduler`` and ``scion worker`` call ``check`` first, so a misconfigured
process exits within seconds with one line naming the fix, instead of starting, taking a trial
and retrying for ``SCION_DATABASE_RETRY_SECONDS`` (a worker has not consumed a message yet when
it runs). It reads and creates nothing: a SQLite file that does not exist is reported, never made
(only ``scion db upgrade`` creates tables). A process that starts before its database is up exits
too; Docker Compose's or systemd's restart policy starts it again.
"""
from __future__ import annotations

from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from scion.settings import Settings, get_settings, mask_url
from storage.migrate import alembic_config

CONNECT_TIMEOUT_S = 5  # one attempt, then the process exits: a restart policy retries, not us
UPGRADE = "run `scion db upgrade` (with the same SCION_DATABASE_URL)"
# Brokers every process on every machine reaches; the others live in one process (memory) or
# in a folder of one machine (the embedded filesystem broker).
LOCAL_BROKERS = ("filesystem", "memory")
# Processes that pass trials to one another through the broker (the API only sends exports).
MESSAGING = ("scheduler", "worker")


class Misconfigured(Exception):
    """The process cannot work as configured; the message is one line that names the fix."""


def check(process: str, settings: Settings | None = None) -> None:
    """Raise ``Misconfigured`` unless ``process`` ("api", "scheduler", "worker") can start with
    ``settings`` (default: this process's, which must themselves be valid)."""
    if settings is None:
        try:
            settings = get_settings()
        except ValidationError as exc:
            raise Misconfigured("; ".join(
                (f"SCION_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
                + e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    refuse_combination(settings, process)
    check_database(settings.database_url or f"sqlite:///{settings.embedded_db_file}")


def refuse_combination(settings: Settings, process: str) -> None:
    """Settings that cannot work together, whatever the database holds."""
    broker = settings.broker
    scheme = broker.partition("://")[0].lower()
    database = _url(settings.database_url) if settings.database_url else None
    sqlite = database is None or database.get_backend_name() == "sqlite"
    if database is not None and sqlite and database.database in (None, "", ":memory:"):
        raise Misconfigured(
            f"SCION_DATABASE_URL={mask_url(settings.database_url)} is a database in this process's memory, which no "
            "other process sees: name a SQLite file (sqlite:////path/scion.db) or a PostgreSQL database")
    if scheme not in LOCAL_BROKERS and sqlite:
        where = (f"a SQLite file ({mask_url(settings.database_url)})" if database is not None else
                 "unset (a SQLite file under SCION_HOME)")
        raise Misconfigured(
            f"SCION_BROKER_URL={mask_url(broker)} is a broker shared between machines, but SCION_DATABASE_URL is "
            f"{where}, which only this machine reaches: set SCION_DATABASE_URL to the PostgreSQL database every "
            "process uses, or unset SCION_BROKER_URL to run embedded on one machine")
    if scheme == "memory" and process in MESSAGING:
        raise Misconfigured(
            f"SCION_BROKER_URL={broker} carries messages only within one process, and the scheduler and the workers "
            "are separate processes: use a Redis broker (redis://HOST:6379/0), or unset it for the embedded "
            "filesystem broker")


def check_database(url: str) -> None:
    """The database at ``url`` is reachable and its schema is at this Scion's Alembic head."""
    parsed = _url(url)
    shown = mask_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.is_file():
            raise Misconfigured(f"no database at {shown} (no such file): {UPGRADE}")
        options: dict = {"connect_args": {"timeout": CONNECT_TIMEOUT_S}}
    else:
        options = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    script = ScriptDirectory.from_config(alembic_config(url))
    wanted = set(script.get_heads())
    engine = create_engine(url, poolclass=NullPool, **options)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise Misconfigured(f"cannot reach the database at {shown}: {reason} (is it running, and is "
                            "SCION_DATABASE_URL right?)") from None
    finally:
        engine.dispose()
    if current == wanted:
        return
    if not current:
        raise Misconfigured(f"the database at {shown} has no Scion schema: {UPGRADE}")
    known = {revision.revision for revision in script.walk_revisions()}
    if current <= known:
        raise Misconfigured(f"the database at {shown} is at schema revision {', '.join(sorted(current))}, and this "
                            f"Scion needs {', '.join(sorted(wanted))}: {UPGRADE}")
    raise Misconfigured(f"the database at {shown} is at schema revision {', '.join(sorted(current))}, which this "
                        "Scion does not know (a newer Scion migrated it): run that version here too")


def _url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise Misconfigured(f"SCION_DATABASE_URL={mask_url(url)} is not a database URL (e.g. "
                            "postgresql+psycopg://USER:PASSWORD@HOST:5432/NAME or sqlite:////path/scion.db)") from None


__all__ = ["Misconfigured", "check", "check_database", "refuse_combination"]
