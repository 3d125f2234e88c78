"""Where the CPU goes during a benchmark: per process group and for the whole machine, from /proc.

Linux only (it reads /proc/stat and /proc/<pid>/stat). A group is a process with its descendants
(a Celery worker and its pool), or every process whose command line contains a given text
(PostgreSQL names each backend's database in its title; the Redis server); CPU is user + system
time. A process that exits during the measurement takes its CPU time
with it, so the pools of long-lived processes that the service keeps are what this sees well.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _stats() -> dict[int, tuple[str, int, float]]:
    """pid → (command line, parent pid, CPU seconds) for every process readable now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()
        found[int(entry.name)] = (command, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK)
    return found


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


def _groups(stats: dict[int, tuple[str, int, float]], roots: dict[str, int], commands: dict[str, str]
            ) -> dict[str, dict[int, float]]:
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    groups: dict[str, dict[int, float]] = {}
    for group, root in roots.items():
        pids, todo = [], [root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                pids.append(pid)
                todo += children.get(pid, [])
        groups[group] = {pid: stats[pid][2] for pid in pids}
    for group, text in commands.items():
        groups[group] = {pid: cpu for pid, (command, _, cpu) in stats.items() if text in command}
    return groups


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (uvicorn's leader and its workers)."""
    return sum(_groups(_stats(), {"tree": pid}, {})["tree"].values())


@contextmanager
def cpu_usage(roots: dict[str, int], commands: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Yields a dict filled on exit with the CPU seconds each group used (``cpu_s``), in cores
    (``cores``: CPU seconds per second of wall time), the machine's busy share (``machine_busy``,
    0–1 over all its cores) and the cores busy with anything else (``other_cores``: other users'
    work on a shared machine, and the database's own background processes)."""
    figures: dict[str, Any] = {}
    before, machine_before, started = _groups(_stats(), roots, commands), _machine(), time.perf_counter()
    yield figures
    after, machine_after, wall = _groups(_stats(), roots, commands), _machine(), time.perf_counter() - started
    used = {group: sum(cpu - before[group].get(pid, 0.0) for pid, cpu in pids.items()) for group, pids in after.items()}
    busy, total = (b - a for a, b in zip(machine_before, machine_after))
    figures.update(
        cpu_s={group: round(cpu, 2) for group, cpu in used.items()},
        cores={group: round(cpu / wall, 2) for group, cpu in used.items()},
        machine_busy=round(busy / total, 2) if total else None,
        machine_cores=os.cpu_count(),
        other_cores=round(max(0.0, busy / total * os.cpu_count() - sum(used.values()) / wall), 2) if total else None,
    )
