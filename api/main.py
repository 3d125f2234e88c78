"""The FastAPI application: stateless, so any number of replicas can serve one database."""
from __future__ import annotations

import asyncio
import logging

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from api import errors, poll_cache
from api.deps import authenticate, caller
from api.limits import AuthGate, BodyLimits, RequestSlots, token_checks_in
from api.routes import catalog, health, jobs, web
from api.security_headers import SecurityHeaders
from scion.settings import get_settings
from storage.db import POOL_CONNECTIONS

log = logging.getLogger(__name__)


def create_app() -> FastAPI:
    # /docs and /redoc with Swagger UI's and ReDoc's scripts served from the package (under
    # /static-offline-docs), not a CDN: they work where the API's users have no internet.
    app = FastAPIOffline(
        title="Scion",
        version="0.1.0",
        summary="Distributed neural architecture search: submit a search, watch it, take the best network.",
    )
    errors.install(app)
    # Added innermost first. A request meets: the security headers (on every answer), the token
    # gate (no token, no body read), the body's size and time limits, then a request slot, held
    # only while the route works (slow clients hold sockets, never slots), then the poll cache.
    slots = asyncio.Semaphore(POOL_CONNECTIONS)  # no more requests at once than database connections
    # Polled answers and live tokens kept in memory, unless api_cache_seconds is 0.
    who_calls = poll_cache.install(app, token_checks_in(slots, caller), get_settings().api_cache_seconds)
    app.add_middleware(RequestSlots, slots=slots)
    app.add_middleware(BodyLimits)
    app.add_middleware(AuthGate, caller=who_calls)
    app.add_middleware(SecurityHeaders)
    # Public: the probes, the docs and the page (which asks for a token when the API wants one).
    # Every other router needs a token when auth is on (tests/api/test_auth.py checks each route).
    private = [Depends(authenticate)]
    app.include_router(health.router)
    app.include_router(jobs.router, dependencies=private)
    app.include_router(catalog.router, dependencies=private)
    app.include_router(web.router)
    return app


app = create_app()
