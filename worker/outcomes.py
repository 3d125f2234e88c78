"""How a trial ends other than with metrics, as the evaluators, the trainer and the data loaders
raise it and the runner records it (``worker/runner.py``)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class TrialStopped(Exception):
    """Raised from ``EvalContext.report`` when the trial was asked to stop (cancelled,
    early-stopped or out of time); the evaluator lets it propagate."""


class TrialFailed(Exception):
    """A candidate that cannot be evaluated (NaN loss, out of memory, over a cost limit, …);
    fails that trial only, keeping whatever ``metrics`` were measured."""

    def __init__(self, message: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metrics = metrics


_PART = "in the job's "  # how ``blame`` notes the part of the job an exception came from
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/'\":]+/)+([^\s/'\":]+)")


@contextmanager
def blame(part: str) -> Iterator[None]:
    """Note on an unexpected exception from inside which part of the job's spec it came, and doing
    what: ``"space: building this architecture's network"``, for ``what_failed`` (and the worker's
    log of its traceback); the innermost note is kept."""
    try:
        yield
    except (TrialStopped, TrialFailed):
        raise
    except Exception as exc:
        if not any(note.startswith(_PART) for note in getattr(exc, "__notes__", ())):
            exc.add_note(_PART + part)
        raise


def what_failed(exc: BaseException) -> str:
    """What a trial's record tells its user of an unexpected exception: its type and message, with
    every absolute path cut to its last part, and the part of the job it came from (``blame``) where
    known; never a traceback, whose frames name the server's files (the worker logs it)."""
    where = next((note for note in getattr(exc, "__notes__", ()) if note.startswith(_PART)), None)
    said = _ABSOLUTE_PATH.sub(r"\1", f"{type(exc).__name__}: {exc}")
    return f"{said} ({where})" if where else said


__all__ = ["TrialFailed", "TrialStopped", "blame", "what_failed"]
