"""Error responses a person can act on: every 4xx names the field and what is allowed, and a
database outage is a 503 with a message, never a traceback."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException

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


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_describe(e) for e in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": message, "errors": errors})


async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database error answering a request: %s", type(exc).__name__)
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable right now; retry in a few seconds"},
        headers={"Retry-After": "5"},
    )


async def http_error(request: Request, exc: HTTPException):
    """FastAPI's own handler, with its one vague message made specific: a body it could not
    parse (not UTF-8, nested too deep) says why."""
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        reason = f": {exc.__cause__}" if exc.__cause__ is not None and str(exc.__cause__) else ""
        exc = HTTPException(400, detail=f"the request body is not valid JSON{reason}"[:500], headers=exc.headers)
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(DBAPIError, database_unavailable)
