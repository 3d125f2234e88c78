"""The headers every answer carries, so that a browser never runs, frames or caches what the API
says: JSON that sniffs as HTML, a job listing kept in a shared cache, the page framed by another
site. A route that sets one of them itself (the page, api/routes/web.py) keeps its own."""
from __future__ import annotations

from typing import Any

Scope = dict[str, Any]

# JSON, errors and downloads: nothing in them may run, load or be framed.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc: their scripts and styles come from this server (each page starts them with
# an inline script); they read /openapi.json; ReDoc renders in a worker.
DOCS_POLICY = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
DOCS_PATHS = ("/docs", "/redoc")

ALWAYS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}


class SecurityHeaders:
    """Pure ASGI, outermost of the app's middlewares, so that answers given before a route runs
    (401, 408, 413) carry them too. Cache-Control: no-store unless the route says otherwise."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(DOCS_PATHS):  # pages and assets a browser may cache
            added = {**ALWAYS, b"content-security-policy": DOCS_POLICY.encode()}
        else:
            added = {**ALWAYS, b"content-security-policy": API_POLICY.encode(), b"cache-control": b"no-store"}

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in added.items() if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
