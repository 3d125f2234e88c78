"""The one logging set-up of every Scion process: the API (as uvicorn's ``log_config``), the
scheduler, the workers (through Celery's ``setup_logging`` signal) and the CLI commands that log.

Every line carries a timestamp and goes to stderr, as text or as one JSON object a line
(``SCION_LOG_FORMAT``), at ``SCION_LOG_LEVEL``. A line about a job or a trial passes its ids as
fields (``log.info(..., extra={"job_id": ...})``), and a worker binds its node name and device
once for the process (``bind``), so that JSON lines can be filtered on ``job_id``, ``trial_id``,
``worker`` and ``device``; text lines say the same in their message and a ``[worker device]`` tag.
The API's reads (GET, HEAD: the polls of ``scion watch`` and the web page) are logged at debug,
its writes at info.
"""
from __future__ import annotations

import logging
import logging.config
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from scion.settings import Settings, get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s"
# What each JSON line holds besides the record's extra fields, and the names it holds them under.
JSON_FIELDS = {"levelname": "level", "name": "logger", "message": "msg"}
POLL_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

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
