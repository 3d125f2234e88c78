"""GET /: a page to watch jobs and their trials in a browser.

The page is one self-contained file (api/static/index.html, shipped as package data) that
reads the public JSON API (/v1/jobs...) with plain JavaScript; nothing is rendered server-side.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["web"], include_in_schema=False)

# The page loads nothing from elsewhere and talks only to this API; the policy makes sure of it.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


@lru_cache(maxsize=1)
def _page() -> str:
    return (files("api") / "static" / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, summary="The job watcher page")
def index() -> HTMLResponse:
    return HTMLResponse(_page(), headers=_HEADERS)
