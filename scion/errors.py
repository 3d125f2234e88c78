"""The domain's errors, raised by the core, storage and the leaves, and turned into HTTP
answers in one place (``api/errors.py``). Callers branch on the type, never on message text.

- ``NotFound``: the thing named does not exist (or is not the caller's to see): 404.
- ``Conflict``: it exists, but its state forbids the action (a finished job cancelled, a
  trial without weights exported, a lease another process took): 409.
- ``Invalid``: the request is malformed in a way the schema could not catch; it names the
  field and, where there are some, the allowed values: 422.
- ``Unavailable``: a service the action needs is down or busy; retrying later may work: 503.
"""
from __future__ import annotations

from collections.abc import Iterable


class ScionError(Exception):
    """The root of the domain's errors; the message is written for the person who caused it."""


class NotFound(ScionError):
    pass


class Conflict(ScionError):
    pass


class Invalid(ScionError, ValueError):
    """``field`` is a dotted path into the request (``evaluator.dataset.path``); ``allowed`` the
    values it may take, when they can be listed. ``message`` says what is wrong with the field
    (and what is allowed) without naming it; ``str()`` is ``"field: message"``."""

    def __init__(self, field: str, message: str, allowed: Iterable[object] | None = None) -> None:
        self.field = field
        self.allowed = tuple(allowed) if allowed is not None else None
        self.reason = message
        self.message = f"{message}; allowed: {', '.join(str(a) for a in self.allowed)}" if self.allowed else message
        super().__init__(f"{field}: {self.message}")


class Unavailable(ScionError):
    def __init__(self, message: str, retry_after_s: float = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


__all__ = ["Conflict", "Invalid", "NotFound", "ScionError", "Unavailable"]
