"""Standalone-trained accuracy of sampled cells, kept in a JSON cache so that no cell is trained twice.

The ranking benchmark of ``scion bench one-shot`` compares cheap scores (inherited weights,
zero-cost proxies) against the accuracy a cell reaches when trained on its own with the ``train``
evaluator. Those trainings are the benchmark's cost, so every result is written to the cache as
soon as it exists, keyed by dataset, space config, recipe and architecture key: a rerun, or a run
interrupted half-way, trains only what the cache lacks, and a changed recipe never reads results
of another. Writers take a file lock and merge, so two runs may fill one cache at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KEPT = ("val_acc", "test_acc", "train_seconds", "params", "flops")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class GroundTruthCache:
    """``{dataset: {space config: {recipe: {arch key: metrics}}}}`` in one JSON file (the three
    outer keys are canonical JSON of the configs)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def entries(self, dataset: dict[str, Any], space: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
        """Arch key → metrics of every cell trained so with that recipe."""
        with self._locked():
            data = self._read()
        return data.get(_canonical(dataset), {}).get(_canonical(space), {}).get(_canonical(recipe), {})

    def put(self, dataset: dict[str, Any], space: dict[str, Any], recipe: dict[str, Any], key: str,
            metrics: dict[str, Any]) -> None:
        """Add one result (re-reading the file under the lock: another run may have added others)."""
        with self._locked():
            data = self._read()
            node = data.setdefault(_canonical(dataset), {}).setdefault(_canonical(space), {})
            node.setdefault(_canonical(recipe), {})[key] = metrics
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(data, indent=1, sort_keys=True))
            partial.replace(self.path)


def recipe_of(train: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(dataset, recipe) of a TrainConfig as cache keys: the recipe is every training setting but the
    dataset and the latency repeats (which change no accuracy)."""
    dumped = train.model_dump(mode="json")
    return dumped.pop("dataset"), {k: v for k, v in dumped.items() if k != "latency_repeats"}


def train_cells(space: Any, archs: list[Any], train: Any, cache: GroundTruthCache, *,
                progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Each architecture's standalone metrics (``KEPT``), training with the ``train`` evaluator
    (CPU, in this process) only those the cache lacks."""
    import tempfile

    from bench.proxies import InProcessContext
    from worker.evaluators.train import TrainEvaluator

    dataset, recipe = recipe_of(train)
    space_config = space.config.model_dump(mode="json")
    known = cache.entries(dataset, space_config, recipe)
    evaluator = TrainEvaluator(train)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as artifacts:
        for i, arch in enumerate(archs):
            key = space.key(arch)
            if key not in known:
                started = time.perf_counter()
                metrics = evaluator.evaluate(space, arch, InProcessContext(Path(artifacts), i))
                known[key] = {name: float(metrics[name]) for name in KEPT}
                cache.put(dataset, space_config, recipe, key, known[key])
                if progress:
                    progress(f"[{dataset['type']} {i + 1}/{len(archs)}] val_acc {known[key]['val_acc']:6.2f} "
                             f"in {time.perf_counter() - started:4.1f} s  {key}")
            results.append({"arch": key, **known[key]})
    return results


__all__ = ["KEPT", "GroundTruthCache", "recipe_of", "train_cells"]
