"""How jobs and trials look in a terminal (Rich), and as plain lines where the output is not one.

Nothing here crops: a table wider than the console is printed wider (``print_table``), and an
architecture key is folded only between its tokens (after ``|``, ``+``, ``;`` or ``,``), so a line
of it can always be copied whole."""
from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.segment import SegmentLines
from rich.table import Table
from rich.text import Text

from scion.spec import steers_terminal

SHOWN_METRICS = ("test_acc", "test_acc_200ep", "params", "flops", "latency_ms", "train_seconds")
DURATION_METRICS = ("train_seconds", "epoch_seconds")
DONE = ("completed", "failed", "stopped", "cancelled")
_TOKEN = re.compile(r"[|+;,\s]*[^|+;,\s]+[|+;,\s]*")  # a token and the separators around it
_WORD = re.compile(r"[^_]+_*|_+")  # a part of a metric's name: where a narrow header folds


def printable(value: Any) -> Any:
    """``value`` (an API answer: dicts, lists, strings) with every control and formatting character
    taken out of its strings and keys, line breaks and tabs in multi-line text aside: what a
    job's name, a trial's error or an event says can then neither move the cursor, recolour the
    terminal, open a link nor reorder text (bidirectional overrides) when printed."""
    if isinstance(value, str):
        return value if value.isprintable() else "".join(
            c for c in value if c in "\n\t" or not steers_terminal(c))
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def duration(seconds: float | None) -> str:
    """A span of time as every command shows it: ``350 ms``, ``8.2 s``, ``3 m 05 s``, ``1 h 02 m``,
    ``2 d 03 h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    if (whole := round(seconds)) < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    if (minutes := round(seconds / 60)) < 24 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} m"
    hours = round(seconds / 3600)
    return f"{hours // 24} d {hours % 24:02d} h"


def _metric(name: str, value: Any) -> str:
    return duration(value) if name in DURATION_METRICS and isinstance(value, int | float) else fmt(value)


def fold(key: str, width: int | None, pattern: re.Pattern[str] = _TOKEN) -> str:
    """``key`` in lines of at most ``width`` characters, broken only between tokens (a token longer
    than ``width`` keeps a line of its own); whole when ``width`` is None."""
    if width is None or len(key) <= width:
        return key
    lines = [""]
    for token in pattern.findall(key):
        if lines[-1] and len(lines[-1]) + len(token.rstrip()) > width:
            lines.append("")
        lines[-1] += token
    return "\n".join(line.rstrip() for line in lines)


def _wrap(text: str, width: int | None) -> str:
    """Prose (an error) wrapped between words; whole when ``width`` is None."""
    if width is None:
        return text
    return "\n".join(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) or line
                     for line in text.splitlines())


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: wider than the console when it must be (the lines then wrap in a
    terminal, and a file or pipe gets them as they are), never cropped or squeezed into ellipses."""
    width = max(console.width, Measurement.get(console, console.options.update(max_width=100_000), table).maximum)
    lines = console.render_lines(table, console.options.update(width=width, max_width=width), pad=False)
    console.print(SegmentLines(lines, new_lines=True), crop=False, end="")


# ---------------------------------------------------------------- a job's progress


def queue_wait(job: dict[str, Any]) -> str | None:
    """The job's queue waits in words, where the API reports them."""
    wait = job.get("queue_wait")
    if not wait:
        return None
    return (f"queue wait median {duration(wait.get('median_s'))}, max {duration(wait.get('max_s'))}, "
            f"{wait.get('waiting', 0)} waiting")


def progress_key(job: dict[str, Any]) -> tuple[Any, ...]:
    """What a watcher reports a change of: status, phase, trial counts and the best so far (the
    elapsed time changes at every poll, so it does not count)."""
    counts = job["counts"]
    best = job["best"]["objective"] if job["best"] else None
    waiting = (job.get("queue_wait") or {}).get("waiting")
    return (job["status"], job.get("phase"), tuple(sorted(counts.items())), best, waiting)


def progress_line(job: dict[str, Any]) -> str:
    """One line of ``scion watch`` without a terminal: a job's state now."""
    counts = job["counts"]
    done = sum(counts.get(s, 0) for s in DONE)
    phase = f" ({job['phase']} phase)" if job.get("phase") else ""
    best = job["best"]
    best_text = (f"best {job['objective']['metric']} {fmt(best['objective'])} (trial {best['number']})" if best
                 else "no best yet")
    parts = [f"job {job['id']} {job['name']}: {job['status']}{phase}",
             f"{done}/{job['trials_planned']} done", f"{counts.get('running', 0)} running",
             f"{counts.get('failed', 0)} failed", best_text, f"elapsed {duration(job['elapsed_s'])}"]
    if wait := queue_wait(job):
        parts.append(wait)
    return ", ".join(parts)


class JobProgress:
    """A live bar in a terminal: trials done / planned, running, best so far, the phase, the job's
    elapsed time (from its start, as the API reports it) and its queue wait."""

    def __init__(self, console: Console, job: dict[str, Any]) -> None:
        self.metric = job["objective"]["metric"]
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}"), TextColumn("best {task.fields[metric]} {task.fields[best]}"),
            TextColumn("{task.fields[phase]}elapsed {task.fields[elapsed]}{task.fields[wait]}"),
            console=console, transient=False,
        )
        self.task = self.progress.add_task(f"job {job['id']} {escape(job['name'])}", total=job["trials_planned"],
                                           running=0, metric=self.metric, best="-", phase="", elapsed="-", wait="")
        self.update(job)

    def update(self, job: dict[str, Any]) -> None:
        counts = job["counts"]
        wait = (job.get("queue_wait") or {}).get("median_s")
        self.progress.update(
            self.task, completed=sum(counts.get(s, 0) for s in DONE), running=counts.get("running", 0),
            best=fmt(job["best"]["objective"] if job["best"] else None),
            phase=f"{job['phase']} phase, " if job.get("phase") else "", elapsed=duration(job["elapsed_s"]),
            wait=f", queue wait {duration(wait)}" if wait is not None else "",
        )

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


# ---------------------------------------------------------------- jobs


def job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="jobs")
    for column in ("id", "name", "status", "trials", "best", "elapsed"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        done = job["counts"].get("completed", 0)
        best = job["best"]["objective"] if job["best"] else None
        table.add_row(str(job["id"]), Text(job["name"]), job["status"], f"{done}/{job['trials_planned']}",
                      f"{job['objective']['metric']} {fmt(best)}", duration(job["elapsed_s"]))
    return table


def job_summary(console: Console, job: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(job["counts"].items()))
    phase = f", {job['phase']} phase" if job.get("phase") and job["status"] == "running" else ""
    console.print(f"[bold]job {job['id']}[/] {escape(job['name'])}: [bold]{job['status']}[/]{phase} "
                  f"({counts or 'no trials'}), elapsed {duration(job['elapsed_s'])}", soft_wrap=True)
    if wait := queue_wait(job):
        console.print(wait, soft_wrap=True)
    if job.get("error"):
        console.print(Text(job["error"], style="red"), soft_wrap=True)


# ---------------------------------------------------------------- trials


def trial_table(trials: list[dict[str, Any]], metric: str, title: str = "trials",
                objectives: tuple[str, ...] = (), width: int | None = None) -> Table:
    """Objective first, then the job's other ``objectives``, whichever held-out and cost figures
    these trials recorded, and the queue wait where the API reports it; then the architecture,
    folded between tokens to fill a console ``width`` wide (whole when ``width`` is None, as for a
    file or a pipe), with a failed trial's first error line under it. Print it with ``print_table``."""
    extra = [m for m in objectives if m != metric]
    present = extra + [m for m in SHOWN_METRICS if m != metric and m not in extra
                       and any(m in (t.get("metrics") or {}) for t in trials)]
    queued = any("queue_wait_s" in t for t in trials)
    phased = any(t.get("phase") for t in trials)  # a one-shot job's: supernet, search, retrain
    columns = ["#", "status", metric, *present, *(["queued"] if queued else [])]
    rows = []
    for trial in trials:
        metrics = trial.get("metrics") or {}
        status = f"{trial['status']} ({trial['phase']})" if phased else trial["status"]
        rows.append([str(trial["number"]), status, fmt(trial["objective"]),
                     *(_metric(m, metrics.get(m)) for m in present),
                     *([duration(trial.get("queue_wait_s"))] if queued else [])])
    longest = max((len(tok.strip()) for t in trials for tok in _TOKEN.findall(t["arch_key"])), default=1)
    headers, arch_width = list(columns), None
    if width is not None:  # each column takes its text, 2 of padding and 1 of rule; 1 more closes the table
        cells = [max((len(r[i]) for r in rows), default=0) for i in range(len(columns))]
        arch_width = width - sum(max(c, len(h)) + 3 for c, h in zip(cells, headers)) - 4
        if arch_width < 2 * longest:  # tight: metric names fold at their underscores first
            headers = [fold(h, c, _WORD) for c, h in zip(cells, headers)]
            arch_width = width - sum(max(c, *map(len, h.split("\n"))) + 3 for c, h in zip(cells, headers)) - 4
        arch_width = max(arch_width, longest, len("architecture"))
    table = Table(title=title)
    for header, column in zip(headers, columns):
        table.add_column(header, no_wrap=True, justify="left" if column == "status" else "right")
    table.add_column("architecture", no_wrap=True)
    for trial, row in zip(trials, rows):
        arch = Text(fold(trial["arch_key"], arch_width))
        if trial["status"] == "failed" and trial.get("error"):
            arch.append("\n" + _wrap(trial["error"].split("\n", 1)[0], arch_width), style="red")
        table.add_row(*row, arch)
    return table


def best_trial(console: Console, trial: dict[str, Any], metric: str) -> None:
    console.print(f"[bold green]best trial {trial['number']}[/]: {metric} = {fmt(trial['objective'])}")
    console.print(Text(f"  architecture: {trial['arch_key']}"), soft_wrap=True)
    for name, value in sorted((trial.get("metrics") or {}).items()):
        console.print(f"  {name}: {_metric(name, value)}")


def trial_detail(console: Console, trial: dict[str, Any], job: dict[str, Any]) -> None:
    """``scion trial``: everything the API knows of one trial, its whole error, its learning curve."""
    width = console.width if console.is_terminal else None
    phase = f", {trial['phase']} phase" if trial.get("phase") else ""
    worker = f", on {trial['worker']}" if trial.get("worker") else ""
    console.print(f"[bold]trial {trial['number']}[/] of job {job['id']} {escape(job['name'])}: "
                  f"[bold]{trial['status']}[/]{phase}, attempt {trial['attempts']}{escape(worker)}", soft_wrap=True)
    console.print("architecture:")
    console.print(Text(fold(trial["arch_key"], width and width - 2)), soft_wrap=True)
    timing = [f"queued {duration(trial['queue_wait_s'])}"] if "queue_wait_s" in trial else []
    timing.append(f"ran {duration(trial['duration_s'])}")
    console.print(f"{job['objective']['metric']} (objective): {fmt(trial['objective'])}; {', '.join(timing)}")
    if trial.get("fidelity"):
        console.print(Text(f"fidelity: {json.dumps(trial['fidelity'])}"), soft_wrap=True)
    metrics = trial.get("metrics") or {}
    if metrics:
        table = Table(title="metrics", show_header=False)
        table.add_column("metric", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        for name, value in sorted(metrics.items()):
            table.add_row(name, _metric(name, value))
        print_table(console, table)
    if trial.get("error"):
        console.print("[bold red]error:[/]")
        console.print(Text(trial["error"], style="red"), soft_wrap=True)
    curve = learning_curve(trial.get("history") or [], width=min(console.width, 100))
    epochs = len(trial.get("history") or [])
    console.print(Text.from_ansi(curve) if curve else
                  f"no learning curve: {epochs} epoch{'' if epochs == 1 else 's'} reported")


CURVES = (("accuracy (%)", "_acc"), ("loss", "_loss"))
MARKERS = ("hd", "x", "+", "dot")  # told apart without colour, too


def learning_curve(history: list[dict[str, Any]], width: int = 80) -> str | None:
    """The per-epoch accuracies and losses (plotext), one plot of each; None under two epochs."""
    import plotext as plt

    steps = sorted({h["step"] for h in history})
    if len(steps) < 2:
        return None
    plots = []
    for title, suffix in CURVES:
        names = sorted({n for h in history for n, v in h["metrics"].items()
                        if n.endswith(suffix) and isinstance(v, int | float)})
        if not names:
            continue
        plt.clear_figure()
        for name, marker in zip(names, MARKERS * len(names)):
            points = [(h["step"], h["metrics"][name]) for h in history if name in h["metrics"]]
            plt.plot([x for x, _ in points], [y for _, y in points], label=name, marker=marker)
        plt.title(title)
        plt.xlabel("epoch")
        plt.xticks(steps if len(steps) <= 12 else None)
        plt.plotsize(width, 14)
        plots.append(plt.build())
    return "\n".join(plots) or None


# ---------------------------------------------------------------- events


def event_line(event: dict[str, Any]) -> str:
    """One line of ``scion events``: when (UTC, to the second), what kind, the message whole."""
    at = datetime.fromisoformat(str(event["at"]))
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M:%S} UTC  {event['kind']:<14} {event['message']}"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def print_json_line(value: Any) -> None:
    """One JSON document on one line, flushed: a stream a pipe reads as it comes."""
    print(json.dumps(value, default=str), flush=True)
