"""Built-in offline datasets that a ``train`` evaluator can fit candidates on.

Everything here is generated or shipped with a Python package (no downloads), split once with a
fixed seed that does not depend on the job, and cached per process so that a worker pays the
loading cost once however many trials it runs. The cache holds at most
``SCION_WORKER_DATA_CACHE_MB`` of arrays, least recently used out first, so a worker that has
served many jobs on large files gives their memory back; a dataset that only jobs now ended used
is dropped at once (``forget_jobs``, from the worker's heartbeat thread). Only numpy and
scikit-learn are imported at module level, so the API can build the catalogue and validate job
specs without torch.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache
from pydantic import BaseModel

from scion.configs.datasets import DATASETS, DigitsConfig, MNIST1DConfig, split_sizes
from scion.settings import get_settings
from worker.outcomes import TrialFailed

SPLIT_SEED = 0  # the train/val/test split never depends on the job's seed


@dataclass(frozen=True)
class Dataset:
    """One dataset, already split; arrays are read-only because the cached copy is shared."""

    name: str
    x_train: np.ndarray  # float32, (N, *input_shape)
    y_train: np.ndarray  # int64, (N,)
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    augment: bool = False  # random crop + flip per training batch (images; see worker.training.augment)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test))


@dataclass(frozen=True)
class DatasetSource:
    """How to produce a dataset's examples, and what it looks like without producing them.

    File sources (worker.training.file_datasets) know their shape only from the files,
    return their arrays already split and normalised, and give a ``fingerprint`` (resolved paths and
    modification times) so that a changed file is read again."""

    load: Callable[[Any], Any]  # config -> (x float, y int), unsplit; or a file source's FileData
    standardise: bool  # scale x with the train split's mean and std after splitting
    fingerprint: Callable[[Any], str] | None = None




# -- digits ------------------------------------------------------------------------------------


def _load_digits(config: DigitsConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values are 0..16
    return x, bunch.target.astype(np.int64)


DATASETS.implement("digits", DatasetSource(_load_digits, standardise=True))


# -- mnist1d -----------------------------------------------------------------------------------

MNIST1D_SEED = 0



def _load_mnist1d(config: MNIST1DConfig) -> tuple[np.ndarray, np.ndarray]:
    """Generate with the package's default arguments; never ``get_dataset``, which downloads.

    ``make_dataset`` reseeds numpy's and Python's global generators, so both are restored after.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = config.num_samples
    args.seed = MNIST1D_SEED
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y  # already centred and scaled by the generator


DATASETS.implement("mnist1d", DatasetSource(_load_mnist1d, standardise=False))


# -- splitting, loading, describing ------------------------------------------------------------


def _split_off(x: np.ndarray, y: np.ndarray, n: int) -> list[np.ndarray]:
    """(x_rest, x_held, y_rest, y_held) with ``n`` examples held out, seeded, stratified by class
    unless some class is too small for that (user files), then plainly random."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=n, stratify=y, random_state=SPLIT_SEED)
    except ValueError:  # a class with one example, or fewer held-out examples than classes
        return train_test_split(x, y, test_size=n, random_state=SPLIT_SEED)


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    _, n_val, n_test = split_sizes(len(y))
    x_rest, x_test, y_rest, y_test = _split_off(x, y, n_test)
    x_train, x_val, y_train, y_val = _split_off(x_rest, y_rest, n_val)
    return x_train, y_train, x_val, y_val, x_test, y_test


def _config_for(config: BaseModel | str) -> BaseModel:
    if isinstance(config, str):
        return DATASETS[config].config()
    return config


def load_dataset(config: BaseModel | str) -> Dataset:
    """The split dataset for ``config`` (or a dataset name); loaded once per process (a file
    dataset again when its files change). A file dataset whose files are missing or malformed on
    this machine raises TrialFailed naming the path."""
    config = _config_for(config)
    source = DATASETS[config.type].factory  # type: ignore[attr-defined]
    try:
        stamp = source.fingerprint(config) if source.fingerprint is not None else ""
        key = (config.type, config.model_dump_json(), stamp)  # type: ignore[attr-defined]
        with _lock:
            cached = _cache.get(key)
        data = cached if cached is not None else _load(*key)
    except (OSError, ValueError) as exc:
        raise TrialFailed(f"dataset {config.type}: {exc}") from None  # type: ignore[attr-defined]
    with _lock:
        if cached is None and data.nbytes <= _cache.maxsize:  # larger than the whole cache: this trial's alone
            _cache[key] = data
        if (job := _job.get()) is not None and key in _cache:
            _users.setdefault(key, set()).add(job)
    return data


@contextmanager
def for_job(job_id: int) -> Iterator[None]:
    """Datasets loaded inside are noted as the job's, to be forgotten once it ends (``forget_jobs``)."""
    token = _job.set(job_id)
    try:
        yield
    finally:
        _job.reset(token)


def cached_jobs() -> set[int]:
    """The jobs some kept dataset was loaded for."""
    with _lock:
        return {job for key, jobs in _users.items() if key in _cache for job in jobs}


def forget_jobs(job_ids: set[int]) -> None:
    """Give back the memory of datasets that only ``job_ids`` (jobs that ended: cancelled, finished)
    used, rather than keep them until newer data pushes them out."""
    with _lock:
        for key, jobs in list(_users.items()):
            jobs -= job_ids
            if not jobs or key not in _cache:
                del _users[key]
                _cache.pop(key, None)


def _new_cache() -> LRUCache:
    return LRUCache(maxsize=get_settings().worker_data_cache_mb << 20, getsizeof=lambda data: data.nbytes)


_cache = _new_cache()
_users: dict[tuple[str, str, str], set[int]] = {}  # per kept dataset, the jobs it was loaded for
_job: ContextVar[int | None] = ContextVar("dataset_job", default=None)
_lock = threading.Lock()  # a process's trial threads share it (one-shot's distributed workers, tests)


def clear_cache() -> None:
    """Forget every loaded dataset (and read the cache's size from the settings again)."""
    global _cache
    with _lock:
        _cache = _new_cache()
        _users.clear()


def _load(name: str, config_json: str, stamp: str = "") -> Dataset:
    entry = DATASETS[name]
    source = entry.factory
    config = entry.config.model_validate_json(config_json)
    loaded = source.load(config)
    if isinstance(loaded, tuple):  # built-in: (x, y) to split here
        x_train, y_train, x_val, y_val, x_test, y_test = _split(*loaded)
        if source.standardise:
            mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
            x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))
        shape, classes, augment = entry.config.input_shape, entry.config.num_classes, False
    else:  # a file source's FileData: split and normalised by its loader
        x_train, y_train, x_val, y_val, x_test, y_test = loaded.arrays
        shape, classes, augment = loaded.input_shape, loaded.num_classes, loaded.augment
    arrays = [
        np.ascontiguousarray(a, dtype=dt)
        for a, dt in zip(
            (x_train, y_train, x_val, y_val, x_test, y_test),
            (np.float32, np.int64) * 3,
            strict=True,
        )
    ]
    for a in arrays:
        a.flags.writeable = False
    return Dataset(name, *arrays, input_shape=shape, num_classes=classes, augment=augment)


__all__ = [
    "DATASETS", "Dataset", "DatasetSource", "cached_jobs", "clear_cache", "for_job", "forget_jobs", "load_dataset",
]

# Datasets from the user's files (npz, image_folder, cifar10, cifar100) register themselves; last,
# so that module can import everything above.
import worker.training.file_datasets  # noqa: E402, F401
