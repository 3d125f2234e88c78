"""How jobs and trials look in a terminal (Rich)."""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SHOWN_METRICS = ("test_acc", "test_acc_200ep", "params", "flops", "latency_ms", "train_seconds")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


class JobProgress:
    """A live bar: trials done / budget, running trials, best objective so far."""

    def __init__(self, console: Console, job: dict[str, Any]) -> None:
        self.metric = job["objective"]["metric"]
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}"), TextColumn("best {task.fields[metric]} {task.fields[best]}"),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task(
            f"job {job['id']} {job['name']}", total=job["trials_planned"], running=0, metric=self.metric, best="-"
        )

    def update(self, job: dict[str, Any]) -> None:
        counts = job["counts"]
        done = sum(counts.get(s, 0) for s in ("completed", "failed", "stopped", "cancelled"))
        best = job["best"]["objective"] if job["best"] else None
        self.progress.update(self.task, completed=done, running=counts.get("running", 0), best=fmt(best))

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


def job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="jobs")
    for column in ("id", "name", "status", "trials", "best", "elapsed"):
        table.add_column(column)
    for job in jobs:
        done = job["counts"].get("completed", 0)
        best = job["best"]["objective"] if job["best"] else None
        table.add_row(str(job["id"]), job["name"], job["status"], f"{done}/{job['trials_planned']}",
                      f"{job['objective']['metric']} {fmt(best)}", fmt(job["elapsed_s"]))
    return table


def job_summary(console: Console, job: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(job["counts"].items()))
    phase = f", {job['phase']} phase" if job.get("phase") and job["status"] == "running" else ""
    console.print(f"[bold]job {job['id']}[/] {job['name']}: [bold]{job['status']}[/]{phase} "
                  f"({counts or 'no trials'}), elapsed {fmt(job['elapsed_s'])} s")
    if job.get("error"):
        console.print(f"[red]{escape(job['error'])}[/]")


def trial_table(trials: list[dict[str, Any]], metric: str, title: str = "trials",
                objectives: tuple[str, ...] = (), width: int | None = None) -> Table:
    """Objective first, then the job's other ``objectives``, then whichever held-out and cost
    figures these trials recorded; on a console ``width`` wide, trailing figures that would not
    fit are left out rather than every column squeezed into ellipses."""
    extra = [m for m in objectives if m != metric]
    present = extra + [m for m in SHOWN_METRICS if m != metric and m not in extra
                       and any(m in (t.get("metrics") or {}) for t in trials)]
    phased = any(t.get("phase") for t in trials)  # a one-shot job's: supernet, search, retrain
    rows = []
    for trial in trials:
        metrics = trial.get("metrics") or {}
        arch = trial["arch_key"]
        if trial["status"] == "failed":
            arch += f"\n[red]{escape((trial['error'] or '').split(chr(10), 1)[0][:200])}[/]"
        status = f"{trial['status']} ({trial['phase']})" if phased else trial["status"]
        rows.append([str(trial["number"]), status, fmt(trial["objective"]),
                     *(fmt(metrics.get(m)) for m in present), arch])
    columns = ["#", "status", metric, *present]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) + 3 for i, c in enumerate(columns)]
    keep = len(columns)
    while width is not None and keep > 3 and sum(widths[:keep]) + 24 > width:
        keep -= 1
    table = Table(title=title)
    for column in columns[:keep]:
        table.add_column(column, no_wrap=True, justify="right" if column != "status" else "left")
    table.add_column("architecture", overflow="fold", min_width=24)
    for row in rows:
        table.add_row(*row[:keep], row[-1])
    return table


def best_trial(console: Console, trial: dict[str, Any], metric: str) -> None:
    console.print(f"[bold green]best trial {trial['number']}[/]: {metric} = {fmt(trial['objective'])}")
    console.print(f"  architecture: {trial['arch_key']}")
    for name, value in sorted((trial.get("metrics") or {}).items()):
        console.print(f"  {name}: {fmt(value)}")


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))
