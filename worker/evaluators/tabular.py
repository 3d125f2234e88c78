"""The ``tabular`` evaluator: look candidates up in a NAS-Bench-201 results table.

Lets a search run in seconds on a CPU and be judged against published numbers. Following the
benchmark's honest protocol, a strategy sees only ``val_acc_12ep``; ``test_acc_200ep`` is recorded
for reporting, and ``test_acc_12ep`` is never read. A look-up has a single fidelity, so it
reports no per-epoch curve: a trial costs the service two statements, which is what the
dispatch benchmark measures.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator, Metric, TrialFailed
from worker.training.data_roots import resolve_data_path

REQUIRED_COLUMNS = ("arch", "val_acc_12ep", "test_acc_200ep")
_REQUIRED_TEXT = "arch,val_acc_12ep,test_acc_200ep"


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


class TabularConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["tabular"] = Field("tabular", description="Look results up in a benchmark table.")
    table: Path = Field(
        description=(
            "CSV in NAS-Bench-201 format (columns arch, val_acc_12ep, test_acc_200ep) that the "
            "API and the workers can read at this path, under one of their data roots "
            "(SCION_DATA_ROOTS); a relative path is taken from their working directory, then from "
            "each data root."
        )
    )

    @field_validator("table")
    @classmethod
    def _table_exists(cls, path: Path) -> Path:
        resolved = resolve_data_path(path, what="table")
        if not resolved.is_file():
            raise ValueError(f"table {str(path)!r} is not a file")
        try:
            header = _header(resolved)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"table {str(path)!r} cannot be read: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"table {str(path)!r} lacks column(s) {', '.join(missing)}; "
                f"a NAS-Bench-201 table needs {_REQUIRED_TEXT}"
            )
        return path


@lru_cache(maxsize=4)
def _read_table(resolved: str, mtime_ns: int) -> dict[str, tuple[float, float]]:
    """key → (val_acc_12ep, test_acc_200ep); keyed by mtime so an edited file is re-read."""
    rows: dict[str, tuple[float, float]] = {}
    with open(resolved, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                val_acc, test_acc = float(row["val_acc_12ep"]), float(row["test_acc_200ep"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"table {resolved!r}, line {line}: {exc}") from None
            rows[row["arch"].strip()] = (val_acc, test_acc)
    return rows


def _parsed(resolved: Path) -> dict[str, tuple[float, float]]:
    return _read_table(str(resolved), resolved.stat().st_mtime_ns)


def load_table(path: Path) -> dict[str, tuple[float, float]]:
    """The parsed table, read once per process (again only if the file changes)."""
    return _parsed(resolve_data_path(path, what="table"))


class TabularEvaluator(Evaluator):
    Config = TabularConfig
    queue = "cpu"
    objectives = (
        Metric("val_acc_12ep", "max", "Benchmark validation accuracy (%) after 12 epochs."),
    )
    recorded = ("test_acc_200ep",)

    config: TabularConfig

    @classmethod
    def check(cls, config: BaseModel, space_type: str) -> None:
        if space_type != "nb201":
            raise ValueError(
                f"the tabular evaluator only scores 'nb201' architectures, not {space_type!r}"
            )

    def __init__(self, config: BaseModel) -> None:
        super().__init__(config)
        self._resolved: Path | None = None

    def _table(self) -> dict[str, tuple[float, float]]:
        """The table, its path resolved under the data roots once per evaluator (one job's, in one
        worker process: resolving costs more than the look-up) and the file checked for edits at
        every look-up; resolved again if it went away."""
        if self._resolved is None:
            self._resolved = resolve_data_path(self.config.table, what="table")
        try:
            return _parsed(self._resolved)
        except OSError:
            self._resolved = None
            raise

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        key = space.key(arch)
        try:
            val_acc, test_acc = self._table()[key]
        except KeyError:
            raise TrialFailed(f"architecture {key} is not in table {self.config.table}") from None
        except (OSError, ValueError) as exc:  # gone or outside the data roots on this worker
            raise TrialFailed(str(exc)) from None
        return {"val_acc_12ep": val_acc, "test_acc_200ep": test_acc}


__all__ = ["TabularConfig", "TabularEvaluator", "load_table"]
