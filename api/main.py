"""The FastAPI application: stateless, so any number of replicas can serve one database."""
from __future__ import annotations

import logging

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from api import errors, poll_cache
from api.deps import authenticate, caller
from api.limits import AuthGate, BodySizeLimit, RequestSlots
from api.routes import catalog, health, jobs, web
from scion.settings import get_settings

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
    app.add_middleware(BodySizeLimit)
    # Polled answers and live tokens kept in memory, unless api_cache_seconds is 0.
    who_calls = poll_cache.install(app, caller, get_settings().api_cache_seconds)
    app.add_middleware(AuthGate, caller=who_calls)  # no token, no body read
    app.add_middleware(RequestSlots)  # outermost: no more requests at once than database connections
    # Public: the probes, the docs and the page (which asks for a token when the API wants one).
    # Every other router needs a token when auth is on (tests/api/test_auth.py checks each route).
    private = [Depends(authenticate)]
    app.include_router(health.router)
    app.include_router(jobs.router, dependencies=private)
    app.include_router(catalog.router, dependencies=private)
    app.include_router(web.router)
    return app


app = create_app()
