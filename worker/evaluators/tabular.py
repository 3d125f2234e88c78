"""The ``tabular`` evaluator: look candidates up in a NAS-Bench-201 results table.

Lets a search run in seconds on a CPU and be judged against published numbers. Following the
benchmark's honest protocol, a strategy sees only ``val_acc_12ep``; ``test_acc_200ep`` is recorded
for reporting, and ``test_acc_12ep`` is never read. A look-up has a single fidelity, so it
reports no per-epoch curve: a trial costs the service two statements, which is what the
dispatch benchmark measures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator, Metric, TrialFailed
from worker.evaluators.nb201_table import REQUIRED_COLUMNS, Table, TableError, load_table
from worker.evaluators.nb201_table import REQUIRED_TEXT as _REQUIRED_TEXT  # TabularConfig checks the
from worker.evaluators.nb201_table import read_header as _header  # header at submission with these
from worker.training.data_roots import resolve_data_path


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

    def _table(self) -> Table:
        """The table, its path resolved under the data roots once per evaluator (one job's, in one
        worker process: resolving costs more than the look-up) and the file checked for edits at
        every look-up; resolved again if it went away."""
        if self._resolved is None:
            self._resolved = resolve_data_path(self.config.table, what="table")
        try:
            return load_table(self._resolved)
        except TableError:
            self._resolved = None
            raise

    def evaluate(self, space: SearchSpace, arch: Arch, ctx: EvalContext) -> dict[str, Any]:
        key = space.key(arch)
        try:
            val_acc, test_acc = self._table().lookup(key)
        except KeyError:
            raise TrialFailed(f"architecture {key} is not in table {self.config.table}") from None
        except (OSError, ValueError) as exc:  # gone or outside the data roots on this worker
            raise TrialFailed(str(exc)) from None
        return {"val_acc_12ep": val_acc, "test_acc_200ep": test_acc}


__all__ = ["TabularConfig", "TabularEvaluator"]
