"""The ``tabular`` evaluator: look candidates up in a NAS-Bench-201 results table.

Lets a search run in seconds on a CPU and be judged against published numbers. Following the
benchmark's honest protocol, a strategy sees only ``val_acc_12ep``; ``test_acc_200ep`` is recorded
for reporting, and ``test_acc_12ep`` is never read. A look-up has a single fidelity, so it
reports no per-epoch curve: a trial costs the service two statements, which is what the
dispatch benchmark measures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from scion.configs.evaluators import TabularConfig
from scion.data_paths import resolve_data_path
from spaces.base import Arch, SearchSpace
from worker.evaluators.base import EvalContext, Evaluator
from worker.evaluators.nb201_table import Table, TableError, load_table
from worker.outcomes import TrialFailed


class TabularEvaluator(Evaluator):
    Config = TabularConfig
    config: TabularConfig

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


__all__ = ["TabularEvaluator"]
