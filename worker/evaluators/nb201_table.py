"""Tables in NAS-Bench-201 format (columns ``arch``, ``val_acc_12ep``, ``test_acc_200ep``, others
ignored): read, checked and cached in one place for the ``tabular`` evaluator and for
``scion bench strategies``, so that a search scored by the service and one simulated by the
benchmark look up the same numbers.

The honest protocol of ``shared/data/README.md`` starts here: only ``val_acc_12ep`` (what a
search may see) and ``test_acc_200ep`` (what it is judged by) are kept; ``test_acc_12ep`` is never
read. Every ``arch`` is parsed by the space and stored under its canonical key, the one
``space.key`` gives a proposal, so a row written in another form is still found and a malformed
row is refused with its file and line rather than never matching.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from scion.configs.evaluators import HELD_OUT, REQUIRED_COLUMNS, REQUIRED_TEXT, SIGNAL, read_header
from spaces import SPACES, make_space


class TableError(ValueError):
    """A table that is missing, unreadable or malformed; the message names the file (and the line)."""


@dataclass(frozen=True)
class Table:
    """The two columns a search may use, row by row, and each row's canonical key."""

    path: str
    name: str
    index: dict[str, int]
    val: np.ndarray
    test: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, key: str) -> tuple[float, float]:
        """(val_acc_12ep, test_acc_200ep) of the architecture with canonical key ``key``; KeyError
        when the table lacks it."""
        row = self.index[key]
        return float(self.val[row]), float(self.test[row])

    @property
    def best_test(self) -> float:
        return float(self.test.max())

    @property
    def test_of_best_val(self) -> float:
        return float(self.test[int(np.argmax(self.val))])



def load_table(path: str | Path, space: str = "nb201") -> Table:
    """The table at ``path``, its ``arch`` column read as ``space`` keys: parsed once per process
    and again only when the file changes. Raises TableError.

    The path is made absolute but not resolved: a look-up costs one ``stat``, and two names of one
    file at worst parse it twice."""
    absolute = os.fspath(path) if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    try:
        mtime_ns = os.stat(absolute).st_mtime_ns
    except FileNotFoundError:
        raise TableError(f"table {path} does not exist") from None
    except OSError as exc:
        raise TableError(f"table {path} cannot be read: {exc}") from None
    return _parse(absolute, mtime_ns, space)


@lru_cache(maxsize=4)
def _parse(path: str, mtime_ns: int, space_name: str) -> Table:
    """Keyed by the file's mtime as well as its path, so that an edited table is read again."""
    space = make_space(SPACES[space_name].config())
    index: dict[str, int] = {}
    lines: list[int] = []
    val: list[float] = []
    test: list[float] = []
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None) or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise TableError(
                    f"{path}:1: a NAS-Bench-201-format table needs the columns {', '.join(REQUIRED_COLUMNS)}; "
                    f"missing {', '.join(missing)} (header: {', '.join(header)})"
                )
            columns = [header.index(c) for c in REQUIRED_COLUMNS]
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != len(header):
                    raise TableError(f"{path}:{line}: {len(row)} field(s) where the header names {len(header)}")
                arch = row[columns[0]]
                try:
                    key = space.key(space.from_key(arch))
                except ValueError as exc:  # InvalidArchitecture, with its reason
                    raise TableError(f"{path}:{line}: arch {arch!r}: {exc}") from None
                numbers = []
                for column, i in zip(REQUIRED_COLUMNS[1:], columns[1:]):
                    try:
                        numbers.append(float(row[i]))
                    except ValueError:
                        raise TableError(f"{path}:{line}: {column} {row[i]!r} is not a number") from None
                if key in index:
                    first = lines[index[key]]
                    raise TableError(f"{path}:{line}: architecture {arch} appears twice (first on line {first})")
                index[key] = len(val)
                lines.append(line)
                val.append(numbers[0])
                test.append(numbers[1])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"table {path} cannot be read: {exc}") from None
    if not index:
        raise TableError(f"{path} has no rows")
    return Table(path, Path(path).stem, index, np.asarray(val), np.asarray(test))


__all__ = ["HELD_OUT", "REQUIRED_COLUMNS", "REQUIRED_TEXT", "SIGNAL", "Table", "TableError", "load_table",
           "read_header"]
