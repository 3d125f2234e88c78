"""The one logging set-up of every Scion process: the API (as uvicorn's ``log_config``), the
scheduler, the workers (through Celery's ``setup_logging`` signal) and the CLI commands that log.

Every line carries a timestamp and goes to stderr, as text or as one JSON object a line
(``SCION_LOG_FORMAT``), at ``SCION_LOG_LEVEL``. A line about a job or a trial passes its ids as
fields (``log.info(..., extra={"job_id": ...})``), and a worker binds its node name and device
once for the process (``bind``), so that JSON lines can be filtered on ``job_id``, ``trial_id``,
``worker`` and ``device``; text lines say the same in their message and a ``[worker device]`` tag.
The API's reads (GET, HEAD: the polls of ``scion watch`` and the web page) are logged at debug,
its writes at info. A loop that retries what fails logs an error that keeps coming back through
``Repeats``: its traceback once, then how many times it came again.
"""
from __future__ import annotations

import logging
import logging.config
import time
import traceback
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from scion.settings import Settings, get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s"
# What each JSON line holds besides the record's extra fields, and the names it holds them under.
JSON_FIELDS = {"levelname": "level", "name": "logger", "message": "msg"}
POLL_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REPEATS_EVERY_S = 60.0  # at most one "the same error N more times" line per this, per thing failing

_bound: dict[str, Any] = {}


def bind(**fields: Any) -> None:
    """Fields every later line of this process carries unless it names its own (a worker's node
    name and device); a forked child inherits them."""
    _bound.update({key: value for key, value in fields.items() if value is not None})


class ProcessFields(logging.Filter):
    """Adds the ``bind``-ed fields to each record that lacks them, and ``where`` for text lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        tags = [str(value) for key in ("worker", "device") if (value := getattr(record, key, None))]
        record.where = f" [{' '.join(tags)}]" if tags else ""
        return True


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with the further lines of a record (a traceback, a multi-line warning)
    indented, so that every line that starts at the margin starts with a timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n    ")


class PollsAtDebug(logging.Filter):
    """On uvicorn's access logger: a read is logged at debug, a write at info. Pollers read every
    second or so, and their lines would bury the writes (submissions, cancellations)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 1 and args[1] in POLL_METHODS:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _formatter(settings: Settings) -> dict[str, Any]:
    if settings.log_format == "json":
        return {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": list(JSON_FIELDS),
            "rename_fields": JSON_FIELDS,
            "timestamp": "ts",
            # uvicorn's coloured copy of its message, and the text tag, say nothing the JSON does not
            "reserved_attrs": [*RESERVED_ATTRS, "color_message", "where"],
        }
    return {"()": TextFormatter, "format": TEXT_FORMAT}


def config(settings: Settings | None = None) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of every process, also given to uvicorn as its
    ``log_config`` (which it applies in each of its worker processes)."""
    settings = settings or get_settings()
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"process_fields": {"()": ProcessFields}, "polls_at_debug": {"()": PollsAtDebug}},
        "formatters": {"scion": _formatter(settings)},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "scion", "filters": ["process_fields"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {  # uvicorn's own loggers, which its default config gives handlers of their own
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True, "filters": ["polls_at_debug"]},
        },
    }


def configure(settings: Settings | None = None) -> None:
    logging.config.dictConfig(config(settings))
    logging.captureWarnings(True)  # a library's warning is a log line too, with its timestamp


@dataclass
class _Failing:
    signature: tuple[str, ...]
    message: str
    extra: dict[str, Any] | None
    said_at: float = field(default_factory=time.monotonic)  # when its traceback or last count was logged
    repeats: int = 0  # since then


def _signature(exc: BaseException) -> tuple[str, ...]:
    """What makes two errors the same: their type and the line that raised them (messages differ
    by the values they quote, such as a statement's parameters)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = (frames[-1].filename, str(frames[-1].lineno)) if frames else (str(exc),)
    return (type(exc).__qualname__, *where)


class Repeats:
    """Logs an error that keeps coming back once with its traceback, and after that only how many
    times it came again: one line per ``every_s`` at most, and one when the thing failing is
    ``forget``-ed. For loops that retry (the scheduler's passes), whose log would otherwise hold
    one traceback per try. Each thing failing (``topic``: a job id, the pass as a whole) is
    followed on its own; a different error of the same topic is logged in full again."""

    def __init__(self, logger: logging.Logger, every_s: float = REPEATS_EVERY_S) -> None:
        self.logger, self.every_s = logger, every_s
        self._failing: dict[Hashable, _Failing] = {}

    def error(self, topic: Hashable, exc: BaseException, message: str,
              extra: dict[str, Any] | None = None) -> None:
        failing = self._failing.get(topic)
        if failing is not None and failing.signature == _signature(exc):
            failing.repeats += 1
            self._say_repeats(failing, due_only=True)
            return
        if failing is not None:
            self._say_repeats(failing)
        self._failing[topic] = _Failing(_signature(exc), message, extra)
        self.logger.error(message, exc_info=exc, extra=extra)

    def tick(self) -> None:
        """Say the repeats counted for over ``every_s`` (an error that stopped, say)."""
        for failing in self._failing.values():
            self._say_repeats(failing, due_only=True)

    def flush(self, topic: Hashable) -> None:
        """Say the topic's repeats not yet said, now (before saying what is done about them)."""
        if topic in self._failing:
            self._say_repeats(self._failing[topic])

    def forget(self, topic: Hashable) -> None:
        """The topic is done with (a job ended or left this process): say its repeats not yet said."""
        self.flush(topic)
        self._failing.pop(topic, None)

    def _say_repeats(self, failing: _Failing, due_only: bool = False) -> None:
        now = time.monotonic()
        if not failing.repeats or (due_only and now - failing.said_at < self.every_s):
            return
        times = "time" if failing.repeats == 1 else "times"
        self.logger.error("%s: the same error %d more %s in the last %.1f s", failing.message, failing.repeats,
                          times, now - failing.said_at, extra=failing.extra)
        failing.said_at, failing.repeats = now, 0
