"""Reading a job spec from a YAML or JSON file, for the CLI and the SDK alike.

A syntax error is reported the way compilers and linters report one, ``file:line:column: what was
expected``, so an editor can jump to it; a file that parses but is not one mapping says so.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class SpecFileError(ValueError):
    """A spec file that cannot be read as a job spec; the message is one line naming the place."""


def read_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"{path}: cannot be read: {exc}") from None
    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecFileError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        context = f" ({exc.context})" if exc.context else ""
        raise SpecFileError(f"{where}: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise SpecFileError(f"{path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise SpecFileError(f"{path}: must hold one mapping (the job spec), not {type(spec).__name__}")
    return spec


__all__ = ["SpecFileError", "read_spec"]
