"""Datasets read from files the user points at on the worker machines.

* ``npz``: a NumPy ``.npz`` with ``x``/``y`` arrays, or ``x_train``/``y_train`` and optionally
  ``x_val``/``y_val`` and ``x_test``/``y_test`` (``keys`` renames them);
* ``image_folder``: one sub-folder per class, images read with Pillow and resized;
* ``cifar10`` / ``cifar100``: the "python version" pickle layout (``data_batch_1..5`` +
  ``test_batch``; ``train`` + ``test``).

Paths are resolved under the data roots (scion.data_paths). Each config checks its files
when it is validated, so a job naming a missing or malformed file is refused at submission with a
message naming the path; the checks read headers and directory listings only, never the data. The
loader checks everything again while reading and raises DataPathError (load_dataset turns it into
TrialFailed on the worker).

Splits are fixed and seeded (datasets._split / _split_off, the built-ins' own): what the files do not
split is split here, CIFAR keeps its official test set. Inputs are standardised per channel with the
training split's mean and std. Images can be augmented (``augment``: random crop with padding and a
horizontal flip), which the trainer applies per batch on the device (worker.training.augment).
Nothing is ever downloaded.
"""
from __future__ import annotations

import codecs
import hashlib
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scion.configs.datasets import (
    CIFAR_PIXELS,
    MIN_EXAMPLES,
    TEST_FRACTION,
    VAL_FRACTION,
    CIFAR10Config,
    CIFAR100Config,
    ImageFolderConfig,
    NPZConfig,
    check_labels,
    cifar_files,
    image_plan,
    npz_plan,
)
from scion.data_paths import DataPathError, resolve_data_path, user_path
from worker.training.datasets import (
    DATASETS,
    DatasetSource,
    _split,
    _split_off,
)

_CHUNK_VALUES = 1 << 21  # values per chunk when computing statistics: float64 temporaries of 16 MiB, whatever the size


@dataclass(frozen=True)
class FileData:
    """A file source's arrays, already split and normalised (float32 x, int64 y)."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    input_shape: tuple[int, ...]
    num_classes: int
    augment: bool


# -- shared: splitting, normalising, fingerprints ----------------------------------------------


def _complete_splits(
    what: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray] | None,
) -> list[np.ndarray]:
    """[x_train, y_train, x_val, y_val, x_test, y_test]: the splits the files give, the others split
    off the training examples (15% each of what there is, seeded, stratified where possible)."""
    x, y = train
    if val is None and test is None:
        if len(y) < MIN_EXAMPLES:
            raise DataPathError(f"{what} has {len(y)} examples; at least {MIN_EXAMPLES} are needed to split")
        return list(_split(x, y))
    if len(y) < MIN_EXAMPLES // 2:
        raise DataPathError(f"{what} has {len(y)} training examples; at least {MIN_EXAMPLES // 2} are needed")
    if val is None:
        x, x_val, y, y_val = _split_off(x, y, max(1, round(len(y) * VAL_FRACTION)))
        val = (x_val, y_val)
    if test is None:
        x, x_test, y, y_test = _split_off(x, y, max(1, round(len(y) * TEST_FRACTION)))
        test = (x_test, y_test)
    return [x, y, *val, *test]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) mean and std over examples and positions, two passes in float64 chunks."""
    flat = x.reshape(len(x), x.shape[1], -1)
    count = flat.shape[0] * flat.shape[2]
    step = max(1, _CHUNK_VALUES // (flat.shape[1] * flat.shape[2]))  # examples
    total = np.zeros(x.shape[1])
    for start in range(0, len(flat), step):
        total += flat[start : start + step].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(x.shape[1])
    for start in range(0, len(flat), step):
        chunk = flat[start : start + step].astype(np.float64) - mean[None, :, None]
        squares += np.square(chunk).sum(axis=(0, 2))
    std = np.sqrt(squares / count)
    std[std < 1e-12] = 1.0  # a constant channel is left centred, not blown up
    return mean, std


def _finish(
    what: str, splits: list[np.ndarray], *, num_classes: int, normalise: bool, augment: bool
) -> FileData:
    """Float32 inputs standardised per channel with the training split's statistics; int64 labels."""
    xs = []
    for a in splits[0::2]:
        b = np.ascontiguousarray(a, dtype=np.float32)  # a fresh array for integer (image) data
        if normalise and (b is a or not b.flags.writeable or not b.flags.owndata):
            b = b.copy()  # normalised in place below: never the caller's array
        xs.append(b)
    ys = [np.ascontiguousarray(a, dtype=np.int64) for a in splits[1::2]]
    if normalise:
        mean, std = _channel_stats(xs[0])
        shape = (1, -1) + (1,) * (xs[0].ndim - 2)
        m, s = mean.astype(np.float32).reshape(shape), std.astype(np.float32).reshape(shape)
        for b in xs:
            b -= m
            b /= s
    arrays = (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
    return FileData(arrays, tuple(int(d) for d in xs[0].shape[1:]), num_classes, augment)


def _stamp(paths: list[Path]) -> str:
    """A fingerprint of files: their resolved paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in paths:
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- npz ---------------------------------------------------------------------------------------


def _load_npz(config: NPZConfig) -> FileData:
    path, roles, _ = npz_plan(config)
    shown = config.path
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {role: npz[array] for role, array in roles.items()}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataPathError(f"npz path {shown!r} cannot be read: {exc}") from None

    def x_of(role: str) -> np.ndarray:
        x = raw[role]
        if x.ndim == 2:
            return x[:, None, :]
        return np.moveaxis(x, -1, 1) if config.channels_last else x

    def pair(split: str) -> tuple[np.ndarray, np.ndarray] | None:
        xr, yr = (f"x_{split}", f"y_{split}") if split else ("x", "y")
        if xr not in raw:
            return None
        y = check_labels(f"npz path {shown!r}: array {roles[yr]!r}", raw[yr].reshape(-1))
        return x_of(xr), y

    if "x" in raw:
        splits = _complete_splits(f"npz path {shown!r}", pair(""), None, None)  # type: ignore[arg-type]
    else:
        splits = _complete_splits(f"npz path {shown!r}", pair("train"), pair("val"), pair("test"))  # type: ignore[arg-type]
    num_classes = int(max(int(y.max()) for y in splits[1::2] if len(y))) + 1
    if num_classes < 2:
        raise DataPathError(f"npz path {shown!r}: the labels name a single class; at least 2 are needed")
    return _finish(f"npz path {shown!r}", splits, num_classes=num_classes, normalise=config.normalise,
                   augment=config.augment)


def _npz_fingerprint(config: NPZConfig) -> str:
    return _stamp([resolve_data_path(config.path, what="npz path")])


DATASETS.implement("npz", DatasetSource(_load_npz, standardise=False, fingerprint=_npz_fingerprint))


# -- image folder ------------------------------------------------------------------------------


def _load_image_folder(config: ImageFolderConfig) -> FileData:
    from PIL import Image, UnidentifiedImageError

    shown = config.path
    _, classes = image_plan(config)
    height, width = config.height_width
    mode, channels = ("RGB", 3) if config.color == "rgb" else ("L", 1)
    files = [(label, file) for label, (_, paths) in enumerate(classes) for file in paths]
    x = np.empty((len(files), channels, height, width), dtype=np.uint8)
    y = np.empty(len(files), dtype=np.int64)
    for i, (label, file) in enumerate(files):
        try:
            with Image.open(file) as image:
                image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise DataPathError(f"image_folder path {shown!r}: cannot read image {user_path(file)!r}: {exc}") from None
        x[i] = pixels.reshape(height, width, channels).transpose(2, 0, 1)
        y[i] = label
    splits = _complete_splits(f"image_folder path {shown!r}", (x, y), None, None)
    return _finish(f"image_folder path {shown!r}", splits, num_classes=len(classes), normalise=config.normalise,
                   augment=config.augment)


def _image_folder_fingerprint(config: ImageFolderConfig) -> str:
    _, classes = image_plan(config)
    return _stamp([f for _, files in classes for f in files])


DATASETS.implement(
    "image_folder",
    DatasetSource(_load_image_folder, standardise=False, fingerprint=_image_folder_fingerprint),
)


# -- CIFAR-10 / CIFAR-100 (python pickle layout) -----------------------------------------------

_PICKLE_SLACK = 64 * 1024  # bytes a file's arrays and strings may hold beyond twice its size (small headers)


class _Bounded(np.ndarray):
    """An array being unpickled: its data, given by its pickle state, is checked against the
    unpickler's budget before numpy copies it in."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise pickle.UnpicklingError("a numpy array's state is not the plain shape, dtype and bytes numpy writes")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)
                and isinstance(dtype, np.dtype) and not dtype.hasobject and isinstance(raw, (bytes, str))):
            raise pickle.UnpicklingError("a numpy array's state is not the plain shape, dtype and bytes numpy writes")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != len(raw):
            raise pickle.UnpicklingError(f"a numpy array of shape {shape} {dtype} comes with {len(raw):,} bytes")
        self._unpickler.spend(nbytes)
        super().__setstate__(state)
        del self._unpickler  # the array outlives the unpickler and what it read


_numpy_scalar = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar  # numpy 2 renamed core
_AS_NUMPY_PICKLES = "numpy arrays are allowed in a CIFAR file only as numpy pickles them (an empty array filled " \
                    "from the file's bytes)"


def _ndarray(*args: Any) -> None:
    """What numpy.ndarray names in a CIFAR pickle: an argument of numpy's _reconstruct, never called,
    since ``numpy.ndarray(shape)`` would allocate any size before anything could check it."""
    raise pickle.UnpicklingError(f"numpy.ndarray(...) is not allowed: {_AS_NUMPY_PICKLES}")


_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _Unpickler(pickle.Unpickler):
    """Only what the CIFAR pickles contain (numpy arrays, lists, dicts, bytes), built only the way
    numpy and Python pickle them: a file cannot make the worker run code, nor allocate more than it
    holds. Numpy arrays are made empty and then filled from bytes in the file; every array, scalar
    and byte string made holds at most twice the file's size in all (``budget``: a byte string
    made from the file's text, then an array from it), so ``numpy.ndarray(shape)``, or one string
    made again and again, is refused before numpy allocates."""

    def __init__(self, file: Any, budget: int) -> None:
        super().__init__(file, encoding="latin1")
        self._left = budget

    def spend(self, nbytes: int) -> None:
        self._left -= nbytes
        if self._left < 0:
            raise pickle.UnpicklingError("its arrays and strings hold more bytes than the file could")

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key == ("numpy", "ndarray"):
            return _ndarray
        if key in _RECONSTRUCT:
            return self._reconstruct
        if key in _SCALAR:
            return self._scalar
        if key == ("numpy", "dtype"):
            return _dtype
        if key == ("_codecs", "encode"):
            return self._encode
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file")

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _ndarray or shape != (0,):
            raise pickle.UnpicklingError(_AS_NUMPY_PICKLES)
        array = np.ndarray((0,), np.uint8).view(_Bounded)
        array._unpickler = self
        return array

    def _scalar(self, dtype: Any, raw: Any = None) -> Any:
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, (bytes, str)) \
                or len(raw) != dtype.itemsize:
            raise pickle.UnpicklingError("a numpy scalar in a CIFAR file is a plain dtype and its bytes")
        self.spend(dtype.itemsize)
        return _numpy_scalar(dtype, raw)

    def _encode(self, text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(text, str) or encoding != "latin1":
            raise pickle.UnpicklingError("strings in a CIFAR file are latin-1 bytes")
        self.spend(len(text))
        return codecs.encode(text, encoding, errors)


def _dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy dtype {dtype} (Python objects) is not allowed in a CIFAR file")
    return dtype


def _labels(kind: str, path: Path, label_key: str, value: Any) -> np.ndarray:
    """A batch's labels as an array, from a flat list of ints or a 1-d array only: a list of lists
    (each perhaps the same one, named again) would make an array of any shape."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return np.asarray(value)
    if isinstance(value, list) and all(type(v) is int or isinstance(v, np.integer) for v in value):
        try:
            return np.array(value, dtype=np.int64)
        except OverflowError:
            pass
    raise DataPathError(f"{kind} file {user_path(path)!r}: {label_key!r} is not a list of class indices")


def _read_cifar_file(kind: str, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _Unpickler(f, budget=2 * path.stat().st_size + _PICKLE_SLACK).load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
        raise DataPathError(f"{kind} file {user_path(path)!r} cannot be unpickled: {exc}") from None
    if not isinstance(batch, dict):
        raise DataPathError(f"{kind} file {user_path(path)!r} holds a {type(batch).__name__}, not a CIFAR batch dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        keys = ", ".join(map(str, batch))
        raise DataPathError(f"{kind} file {user_path(path)!r} lacks 'data' or {label_key!r}; keys: {keys}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise DataPathError(f"{kind} file {user_path(path)!r}: 'data' is {what}; expected uint8 (N, {CIFAR_PIXELS})")
    data, labels = np.asarray(data), _labels(kind, path, label_key, batch[label_key])
    if labels.shape != (len(data),):
        raise DataPathError(f"{kind} file {user_path(path)!r}: {len(data)} images but {label_key!r} has shape "
                            f"{labels.shape}")
    return data.reshape(-1, 3, 32, 32), check_labels(f"{kind} file {user_path(path)!r} {label_key!r}", labels)


def _load_cifar(config: CIFAR10Config | CIFAR100Config) -> FileData:
    kind = config.type
    if isinstance(config, CIFAR100Config):
        label_key, num_classes = f"{config.labels}_labels", (100 if config.labels == "fine" else 20)
    else:
        label_key, num_classes = "labels", 10
    train_files, test_file = cifar_files(config)
    parts = [_read_cifar_file(kind, p, label_key) for p in train_files]
    x_train = np.concatenate([x for x, _ in parts]) if len(parts) > 1 else parts[0][0]
    y_train = np.concatenate([y for _, y in parts]) if len(parts) > 1 else parts[0][1]
    test = _read_cifar_file(kind, test_file, label_key)
    for name, y in (("training", y_train), ("test", test[1])):
        if len(y) and int(y.max()) >= num_classes:
            raise DataPathError(f"{kind} path {config.path!r}: {name} labels reach {int(y.max())}; "
                                f"{kind} has {num_classes} classes")
    splits = _complete_splits(f"{kind} path {config.path!r}", (x_train, y_train), None, test)
    return _finish(f"{kind} path {config.path!r}", splits, num_classes=num_classes, normalise=config.normalise,
                   augment=config.augment)


def _cifar_fingerprint(config: CIFAR10Config | CIFAR100Config) -> str:
    train_files, test_file = cifar_files(config)
    return _stamp([*train_files, test_file])


DATASETS.implement("cifar10", DatasetSource(_load_cifar, standardise=False, fingerprint=_cifar_fingerprint))
DATASETS.implement("cifar100", DatasetSource(_load_cifar, standardise=False, fingerprint=_cifar_fingerprint))

__all__ = ["FileData"]
