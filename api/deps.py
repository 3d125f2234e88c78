"""Request-scoped dependencies."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from scion.errors import NotFound
from scion.settings import get_settings
from storage import repository as repo
from storage import tokens
from storage.db import session_scope
from storage.models import Job

T = TypeVar("T")

# Ids are 32-bit columns on PostgreSQL: a larger number is bad input (422), not a database error.
MAX_ID = 2**31 - 1


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# "function" scope commits before the response is sent: a client that reads right after a
# write (submit, then GET) must see it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


# ---------------------------------------------------------------- who is asking


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name and owner, or nobody in particular when auth is off."""

    token: str | None = None
    owner: str | None = None
    is_admin: bool = False
    open: bool = True  # auth is off: everyone sees everything

    @property
    def sees_all(self) -> bool:
        return self.open or self.is_admin

    def may_see(self, job: Job) -> bool:
        return self.sees_all or job.owner == self.owner


OPEN = Principal()
_bearer = HTTPBearer(auto_error=False, description="A token from `scion token create` (SCION_TOKEN for the CLI).")


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="scion"' + (f', error="{error}"' if error else "")
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


def bearer_secret(authorization: str | None) -> str | None:
    scheme, secret = get_authorization_scheme_param(authorization)
    return secret if authorization and scheme.lower() == "bearer" and secret else None


async def caller(authorization: str | None) -> Principal:
    """``principal_for`` from the event loop: at once where it needs no database (auth off, or no
    token: OPEN or 401), else in the thread pool. Raises what ``principal_for`` raises. AuthGate
    asks through api/poll_cache.py's ``KeptCallers`` unless ``api_cache_seconds`` is 0."""
    if bearer_secret(authorization) is None:
        return principal_for(authorization)
    return await run_in_threadpool(principal_for, authorization)


def principal_for(authorization: str | None) -> Principal:
    """Who sends this Authorization header: 401 unless auth is off or it carries a live token."""
    if not get_settings().auth_enabled:
        return OPEN
    secret = bearer_secret(authorization)
    if secret is None:
        raise _unauthorized(
            "this API needs a token: send 'Authorization: Bearer <token>' (the CLI and SDK send SCION_TOKEN); "
            "an administrator creates tokens with `scion token create`"
        )
    with session_scope() as session:
        token = tokens.authenticate(session, secret=secret)
        if token is None:
            raise _unauthorized("the token is not valid: unknown or revoked", error="invalid_token")
        return Principal(token=token.name, owner=token.owner, is_admin=token.is_admin, open=False)


async def authenticate(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
) -> Principal:
    """The caller of a private route. AuthGate has already decided for /v1 paths (before the
    body is read); any other route that asks for this dependency is checked here. Async, so that
    the usual case costs no trip to the thread pool."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        principal = await caller(request.headers.get("authorization"))
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


JobId = Annotated[int, Path(ge=0, le=MAX_ID, description="The job's id.")]


def get_job_or_404(job_id: JobId, session: SessionDep, principal: PrincipalDep) -> Job:
    """The job, or 404 when there is none or it is another owner's (whose existence is not revealed)."""
    job = repo.get_job(session, job_id=job_id)
    if job is None or not principal.may_see(job):
        raise NotFound(f"job {job_id} not found")
    return job


JobDep = Annotated[Job, Depends(get_job_or_404)]


async def read_job(job_id: int, principal: Principal, answer: Callable[[Session, Job], T]) -> T:
    """``answer(session, job)`` for the job ``get_job_or_404`` finds, in one transaction and one
    trip to the thread pool, for the routes clients poll: as a session, a job and a sync endpoint,
    a request takes five trips (dependencies, endpoint, the check of its response), an eighth of its
    CPU under load (bench/api_load.py)."""

    def read() -> T:
        with session_scope() as session:
            return answer(session, get_job_or_404(job_id, session, principal))

    return await run_in_threadpool(read)


PAGE_HELP = "Page size (at most the server's max_page_size, 500 by default)."


async def page_limit(limit: Annotated[int, Query(ge=1, le=1_000_000, description=PAGE_HELP)] = 50) -> int:
    """The page size asked for, within the server's max_page_size (a setting, so not in the schema).
    Async: it does no I/O, so it need not wait for a thread."""
    cap = get_settings().max_page_size
    if limit > cap:
        raise RequestValidationError([{
            "type": "less_than_equal", "loc": ("query", "limit"), "input": limit, "ctx": {"le": cap},
            "msg": f"Input should be less than or equal to {cap} (this server's max_page_size)",
        }])
    return limit


PageLimit = Annotated[int, Depends(page_limit)]
