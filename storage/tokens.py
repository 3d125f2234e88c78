"""API tokens: issued by an administrator on the server (``scion token create``), stored hashed.

A token is ``scion_`` followed by 43 URL-safe characters (256 random bits). Only its SHA-256
is kept: with that much entropy no slow hash is needed, and a request's token is found by its
hash in one unique-index look-up. The secret is shown once, when it is created; everything
else (listings, logs, the API) names a token only by its name.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from scion.errors import Conflict, Invalid, NotFound
from storage.db import utcnow
from storage.models import ApiToken

PREFIX = "scion_"
NAME_MAX = 100
# last_used_at is written at most this often per token, so reads stay reads.
TOUCH_EVERY = timedelta(seconds=60)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _check_name(what: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > NAME_MAX or not value.isprintable():
        raise Invalid(what, f"must be 1 to {NAME_MAX} printable characters, got {value!r}")
    return value


def create_token(session: Session, *, name: str, owner: str | None = None, is_admin: bool = False) -> str:
    """Store a new token and return its secret (the only time it exists outside the caller).
    Invalid for an empty or overlong name or owner, Conflict for a name already taken."""
    name = _check_name("name", name)
    owner = _check_name("owner", owner) if owner is not None else name
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"a token named {name!r} already exists (names stay taken after revocation)")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, owner=owner, secret_hash=hash_secret(secret), is_admin=is_admin,
                         created_at=utcnow()))
    session.flush()
    return secret


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, *, name: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise NotFound(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def authenticate(session: Session, *, secret: str) -> ApiToken | None:
    """The live token with this secret, or None (unknown, malformed or revoked)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.secret_hash == hash_secret(secret)))
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        token.last_used_at = now  # written with the request's transaction
    return token
