"""Error responses a person can act on: every 4xx names the field and what is allowed, and a
database outage is a 503 with a message, never a traceback.

The core, storage and the routes raise the domain's errors (scion/errors.py) and know nothing of
HTTP; ``answer`` maps them, FastAPI's own and the database's, to responses, here and nowhere
else: ``{"detail": ...}``, plus ``"errors": [{"field", "message", "type"}]`` for a 422, and a
``Retry-After`` header for a 503."""
from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from scion.errors import Conflict, Invalid, NotFound, Unavailable

log = logging.getLogger(__name__)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _describe(e: dict[str, Any]) -> dict[str, Any]:
    loc, msg = tuple(e.get("loc", ())), _clean(e.get("msg", ""))
    if e.get("type") == "json_invalid":  # loc is ("body", character offset), not a field
        reason = (e.get("ctx") or {}).get("error")
        where = f" at character {loc[-1]}" if len(loc) > 1 else ""
        return {"field": "body", "message": f"invalid JSON{where}" + (f": {reason}" if reason else ""),
                "type": e.get("type")}
    return {"field": _field(loc), "message": msg, "type": e.get("type")}


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": message, "errors": errors})


def _http(exc: HTTPException) -> Response:
    """As FastAPI answers it, with its one vague message made specific: a body it could not
    parse (not UTF-8, nested too deep) says why."""
    detail = exc.detail
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        reason = f": {exc.__cause__}" if exc.__cause__ is not None and str(exc.__cause__) else ""
        detail = f"the request body is not valid JSON{reason}"[:500]
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


STATUS = {NotFound: 404, Conflict: 409}
# What ``answer`` turns into a response; anything else is a bug, a 500.
ANSWERED = (NotFound, Conflict, Invalid, Unavailable, HTTPException, RequestValidationError, DBAPIError)


async def answer(_: Request | None, exc: Exception) -> Response:
    """The HTTP response to an error a request ended in: the one place domain errors become
    status codes. Installed as the app's handler for each of ``ANSWERED``, and called by the
    middlewares that answer before the app is reached (api/limits.py's AuthGate)."""
    if isinstance(exc, DBAPIError):
        log.warning("database error answering a request: %s", type(exc).__name__)
        exc = Unavailable("the database is unavailable right now; retry in a few seconds", retry_after_s=5)
    if isinstance(exc, RequestValidationError):
        return _invalid([_describe(e) for e in exc.errors()])
    if isinstance(exc, Invalid):
        return _invalid([{"field": exc.field, "message": exc.message, "type": "value_error"}])
    if isinstance(exc, Unavailable):
        return JSONResponse(status_code=503, content={"detail": str(exc)},
                            headers={"Retry-After": str(math.ceil(exc.retry_after_s))})
    if isinstance(exc, HTTPException):
        return _http(exc)
    status = next(code for kind, code in STATUS.items() if isinstance(exc, kind))
    return JSONResponse(status_code=status, content={"detail": str(exc)})


def install(app: FastAPI) -> None:
    for kind in ANSWERED:
        app.add_exception_handler(kind, answer)
