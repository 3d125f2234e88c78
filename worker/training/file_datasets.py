"""Datasets read from files the user points at on the worker machines.

* ``npz``: a NumPy ``.npz`` with ``x``/``y`` arrays, or ``x_train``/``y_train`` and optionally
  ``x_val``/``y_val`` and ``x_test``/``y_test`` (``keys`` renames them);
* ``image_folder``: one sub-folder per class, images read with Pillow and resized;
* ``cifar10`` / ``cifar100``: the "python version" pickle layout (``data_batch_1..5`` +
  ``test_batch``; ``train`` + ``test``).

Paths are resolved under the data roots (worker.training.data_roots). Each config checks its files
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

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from worker.training.data_roots import DataPathError, resolve_data_path
from worker.training.datasets import (
    DATASETS,
    TEST_FRACTION,
    VAL_FRACTION,
    DatasetSource,
    _split,
    _split_off,
)

MIN_EXAMPLES = 10  # fewer cannot give non-empty train, validation and test splits
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_CHUNK = 4096  # examples per chunk when computing statistics (bounded float64 temporaries)


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
    total = np.zeros(x.shape[1])
    for start in range(0, len(flat), _CHUNK):
        total += flat[start : start + _CHUNK].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(x.shape[1])
    for start in range(0, len(flat), _CHUNK):
        chunk = flat[start : start + _CHUNK].astype(np.float64) - mean[None, :, None]
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


def _check_labels(what: str, y: np.ndarray) -> np.ndarray:
    """Labels as int64 class indices 0..K-1 (integral floats accepted)."""
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise DataPathError(f"{what} must hold integer class labels 0..K-1, not {y.dtype} values")
    if y.dtype.kind == "f" and (not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y))):
        raise DataPathError(f"{what} must hold integer class labels 0..K-1; it has non-integer values")
    if len(y) and y.min() < 0:
        raise DataPathError(f"{what} must hold class labels 0..K-1; it has {y.min()}")
    return y.astype(np.int64)


class _FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # type and path are narrowed by every source; declared here so that they come first in the schema
    type: str
    path: str
    normalise: bool = Field(
        True, description="Standardise inputs per channel with the training split's mean and std."
    )


# -- npz ---------------------------------------------------------------------------------------

NPZ_ROLES = ("x", "y", "x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
NpzRole = Literal["x", "y", "x_train", "y_train", "x_val", "y_val", "x_test", "y_test"]


class NPZConfig(_FileConfig):
    type: Literal["npz"] = Field("npz", description="Arrays in a NumPy .npz file.")
    path: str = Field(
        description=(
            "The .npz on the workers, under a data root: arrays x (N, ...) and y (N,) split here, or "
            "x_train/y_train with optional x_val/y_val and x_test/y_test. x is (N, C, H, W) images, "
            "(N, C, L) sequences or (N, D) features (read as (N, 1, D)); y holds class indices 0..K-1."
        )
    )
    keys: dict[NpzRole, str] = Field(
        default_factory=dict,
        description='Array names in the file where they differ from the roles, e.g. {"x": "images", "y": "labels"}.',
    )
    channels_last: bool = Field(False, description="x is (N, H, W, C) or (N, L, C): move channels first.")
    augment: bool = Field(False, description="Random crop with padding and horizontal flips (4-D images only).")

    @model_validator(mode="after")
    def _check_file(self) -> NPZConfig:
        _npz_plan(self)
        return self


def _read_npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        shape, _, dtype = fmt._read_array_header(f, version)  # 3.0: no public reader
    return tuple(shape), np.dtype(dtype)


def _npz_headers(path: Path, shown: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array name → (shape, dtype), from the headers only."""
    if not path.is_file():
        raise DataPathError(f"npz path {shown!r} is not a file")
    if not zipfile.is_zipfile(path):
        raise DataPathError(f"npz path {shown!r} is not a .npz archive (not a zip file)")
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                with zf.open(member) as f:
                    headers[member[: -len(".npy")]] = _read_npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataPathError(f"npz path {shown!r} cannot be read: {exc}") from None
    return headers


def _npz_plan(config: NPZConfig) -> tuple[Path, dict[str, str], tuple[int, ...]]:
    """(resolved path, role → array name for the roles used, x's feature shape after layout);
    raises DataPathError saying what is wrong with the file."""
    shown = config.path
    path = resolve_data_path(config.path, what="npz path")
    headers = _npz_headers(path, shown)
    name = {role: config.keys.get(role, role) for role in NPZ_ROLES}
    present = {role for role in NPZ_ROLES if name[role] in headers}
    have = ", ".join(sorted(headers)) or "none"
    if {"x_train", "y_train"} <= present:
        pairs = [("x_train", "y_train")]
        for split in ("val", "test"):
            xr, yr = f"x_{split}", f"y_{split}"
            if (xr in present) != (yr in present):
                missing = yr if xr in present else xr
                raise DataPathError(f"npz path {shown!r} has {name[xr if xr in present else yr]!r} "
                                    f"but not {name[missing]!r}; arrays in the file: {have}")
            if xr in present:
                pairs.append((xr, yr))
    elif {"x", "y"} <= present:
        pairs = [("x", "y")]
    else:
        raise DataPathError(
            f"npz path {shown!r} needs arrays {name['x']!r} and {name['y']!r} (or {name['x_train']!r} and "
            f"{name['y_train']!r}); arrays in the file: {have}"
        )
    feature_shape: tuple[int, ...] | None = None
    for xr, yr in pairs:
        (x_shape, x_dtype), (y_shape, y_dtype) = headers[name[xr]], headers[name[yr]]
        if x_dtype.kind not in "biuf":
            raise DataPathError(f"npz path {shown!r}: array {name[xr]!r} must be numeric, not {x_dtype}")
        if y_dtype.kind not in "iuf":
            raise DataPathError(f"npz path {shown!r}: array {name[yr]!r} must hold integer class labels, not {y_dtype}")
        if len(x_shape) not in (2, 3, 4):
            raise DataPathError(
                f"npz path {shown!r}: array {name[xr]!r} has shape {x_shape}; expected (N, D), (N, C, L) or "
                "(N, C, H, W)" + (" (or channels last with channels_last)" if config.channels_last else "")
            )
        if len(y_shape) != 1 and not (len(y_shape) == 2 and y_shape[1] == 1):
            raise DataPathError(f"npz path {shown!r}: array {name[yr]!r} has shape {y_shape}; expected (N,)")
        if x_shape[0] != y_shape[0]:
            raise DataPathError(f"npz path {shown!r}: {name[xr]!r} has {x_shape[0]} examples but "
                                f"{name[yr]!r} has {y_shape[0]} labels")
        if x_shape[0] < 1:
            raise DataPathError(f"npz path {shown!r}: array {name[xr]!r} is empty")
        features = _layout(x_shape[1:], config.channels_last)
        if feature_shape is not None and features != feature_shape:
            raise DataPathError(f"npz path {shown!r}: {name[xr]!r} has examples of shape {x_shape[1:]}, "
                                f"unlike {name[pairs[0][0]]!r}")
        feature_shape = features
    assert feature_shape is not None
    n_train = headers[name[pairs[0][1]]][0][0]
    needed = MIN_EXAMPLES if len(pairs) == 1 else MIN_EXAMPLES // 2
    if n_train < needed:
        raise DataPathError(f"npz path {shown!r}: {name[pairs[0][0]]!r} has {n_train} examples; at least "
                            f"{needed} are needed")
    if config.augment and len(feature_shape) != 3:
        raise DataPathError(f"npz path {shown!r}: augment needs images (N, C, H, W); examples have shape "
                            f"{feature_shape}")
    return path, {role: name[role] for pair in pairs for role in pair}, feature_shape


def _layout(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    """One example's shape as the networks take it: (C, H, W), (C, L), or (1, D) for features."""
    if len(shape) == 1:
        return (1, *shape)
    if channels_last:
        return (shape[-1], *shape[:-1])
    return shape


def _load_npz(config: NPZConfig) -> FileData:
    path, roles, _ = _npz_plan(config)
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
        y = _check_labels(f"npz path {shown!r}: array {roles[yr]!r}", raw[yr].reshape(-1))
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


DATASETS.register(
    "npz",
    NPZConfig,
    DatasetSource(None, None, None, _load_npz, standardise=False, fingerprint=_npz_fingerprint),
    "Your arrays in a .npz file on the workers (x/y, or x_train/y_train[/x_val/y_val/x_test/y_test]).",
)


# -- image folder ------------------------------------------------------------------------------


class ImageFolderConfig(_FileConfig):
    type: Literal["image_folder"] = Field("image_folder", description="A folder of class sub-folders of images.")
    path: str = Field(
        description="Directory on the workers, under a data root, with one sub-folder of images per class "
        "(classes in sorted folder-name order)."
    )
    size: int | tuple[int, int] = Field(
        32, description="Images are resized to size x size, or (height, width), pixels."
    )
    color: Literal["rgb", "grayscale"] = Field("rgb", description="Read images as RGB (3 channels) or grey (1).")
    augment: bool = Field(False, description="Random crop with padding and horizontal flips while training.")

    @field_validator("size")
    @classmethod
    def _size_in_range(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        sides = (value, value) if isinstance(value, int) else value
        if not all(1 <= s <= 1024 for s in sides):
            raise ValueError(f"size {value} out of range: each side must be 1..1024 pixels")
        return value

    @property
    def height_width(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _check_folder(self) -> ImageFolderConfig:
        root, classes = _image_plan(self)
        _probe_images(self.path, [files[0] for _, files in classes])
        return self


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _image_plan(config: ImageFolderConfig) -> tuple[Path, list[tuple[str, list[Path]]]]:
    """(resolved root, [(class name, sorted image files)]) in sorted class order."""
    shown = config.path
    root = resolve_data_path(config.path, what="image_folder path")
    if not root.is_dir():
        raise DataPathError(f"image_folder path {shown!r} is not a directory")
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        classes = [(f.name, sorted(p for p in f.iterdir() if _is_image(p))) for f in folders]
    except OSError as exc:
        raise DataPathError(f"image_folder path {shown!r} cannot be listed: {exc}") from None
    if len(classes) < 2:
        raise DataPathError(
            f"image_folder path {shown!r} has {len(classes)} class sub-folder(s); it needs one sub-folder of "
            "images per class, at least 2"
        )
    empty = [name for name, files in classes if not files]
    if empty:
        raise DataPathError(
            f"image_folder path {shown!r}: class folder(s) {', '.join(map(repr, empty[:5]))} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    total = sum(len(files) for _, files in classes)
    if total < MIN_EXAMPLES:
        raise DataPathError(f"image_folder path {shown!r} has {total} images; at least {MIN_EXAMPLES} are needed")
    return root, classes


def _probe_images(shown: str, files: list[Path]) -> None:
    """Open (header only) one image per class, so that a folder of non-images is refused early."""
    from PIL import Image, UnidentifiedImageError

    for file in files:
        try:
            with Image.open(file) as image:
                image.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise DataPathError(f"image_folder path {shown!r}: cannot read image {str(file)!r}: {exc}") from None


def _load_image_folder(config: ImageFolderConfig) -> FileData:
    from PIL import Image, UnidentifiedImageError

    shown = config.path
    _, classes = _image_plan(config)
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
            raise DataPathError(f"image_folder path {shown!r}: cannot read image {str(file)!r}: {exc}") from None
        x[i] = pixels.reshape(height, width, channels).transpose(2, 0, 1)
        y[i] = label
    splits = _complete_splits(f"image_folder path {shown!r}", (x, y), None, None)
    return _finish(f"image_folder path {shown!r}", splits, num_classes=len(classes), normalise=config.normalise,
                   augment=config.augment)


def _image_folder_fingerprint(config: ImageFolderConfig) -> str:
    _, classes = _image_plan(config)
    return _stamp([f for _, files in classes for f in files])


DATASETS.register(
    "image_folder",
    ImageFolderConfig,
    DatasetSource(None, None, None, _load_image_folder, standardise=False, fingerprint=_image_folder_fingerprint),
    "Your images on the workers, one sub-folder per class (Pillow), resized (32x32 by default).",
)


# -- CIFAR-10 / CIFAR-100 (python pickle layout) -----------------------------------------------

CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
    "cifar100": ("cifar-100-python", ["train"], "test"),
}
CIFAR_PIXELS = 3 * 32 * 32


class _Unpickler(pickle.Unpickler):
    """Only what the CIFAR pickles contain (numpy arrays, lists, dicts, bytes): a file cannot make
    the worker run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file")
        if module == "numpy.core.multiarray":  # the files predate numpy 2's rename
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


class _CIFARConfig(_FileConfig):
    augment: bool = Field(False, description="Random crop (padding 4) and horizontal flips while training.")

    @model_validator(mode="after")
    def _check_files(self) -> _CIFARConfig:
        _cifar_files(self)
        return self


class CIFAR10Config(_CIFARConfig):
    type: Literal["cifar10"] = Field("cifar10", description="CIFAR-10, python version, from local files.")
    path: str = Field(
        "cifar-10-batches-py",
        description="Directory on the workers, under a data root, holding data_batch_1..5 and test_batch (the "
        "extracted cifar-10-python.tar.gz), or its parent.",
    )


class CIFAR100Config(_CIFARConfig):
    type: Literal["cifar100"] = Field("cifar100", description="CIFAR-100, python version, from local files.")
    path: str = Field(
        "cifar-100-python",
        description="Directory on the workers, under a data root, holding train and test (the extracted "
        "cifar-100-python.tar.gz), or its parent.",
    )
    labels: Literal["fine", "coarse"] = Field("fine", description="The 100 fine classes or the 20 superclasses.")


def _cifar_files(config: _CIFARConfig) -> tuple[list[Path], Path]:
    """(training files, test file), resolved; raises DataPathError when one is missing or not a pickle."""
    kind = config.type  # type: ignore[attr-defined]
    folder_name, train_names, test_name = CIFAR_LAYOUT[kind]
    shown = config.path  # type: ignore[attr-defined]
    folder = resolve_data_path(shown, what=f"{kind} path")
    if (folder / folder_name).is_dir():
        folder = folder / folder_name
    if not folder.is_dir():
        raise DataPathError(f"{kind} path {shown!r} is not a directory")
    paths = [folder / name for name in (*train_names, test_name)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataPathError(
            f"{kind} path {shown!r} ({folder}) lacks {', '.join(missing)}; expected the python-version layout "
            f"({', '.join(p.name for p in paths)})"
        )
    for p in paths:
        with p.open("rb") as f:
            if f.read(1) != b"\x80":
                raise DataPathError(f"{kind} file {str(p)!r} is not a pickle (the python-version CIFAR layout)")
    return paths[:-1], paths[-1]


def _read_cifar_file(kind: str, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _Unpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
        raise DataPathError(f"{kind} file {str(path)!r} cannot be unpickled: {exc}") from None
    if not isinstance(batch, dict):
        raise DataPathError(f"{kind} file {str(path)!r} holds a {type(batch).__name__}, not a CIFAR batch dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        keys = ", ".join(map(str, batch))
        raise DataPathError(f"{kind} file {str(path)!r} lacks 'data' or {label_key!r}; keys: {keys}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise DataPathError(f"{kind} file {str(path)!r}: 'data' is {data.dtype} {data.shape}; expected uint8 "
                            f"(N, {CIFAR_PIXELS})")
    if labels.shape != (len(data),):
        raise DataPathError(f"{kind} file {str(path)!r}: {len(data)} images but {label_key!r} has shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), _check_labels(f"{kind} file {str(path)!r} {label_key!r}", labels)


def _load_cifar(config: CIFAR10Config | CIFAR100Config) -> FileData:
    kind = config.type
    if isinstance(config, CIFAR100Config):
        label_key, num_classes = f"{config.labels}_labels", (100 if config.labels == "fine" else 20)
    else:
        label_key, num_classes = "labels", 10
    train_files, test_file = _cifar_files(config)
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
    train_files, test_file = _cifar_files(config)
    return _stamp([*train_files, test_file])


DATASETS.register(
    "cifar10",
    CIFAR10Config,
    DatasetSource((3, 32, 32), 10, None, _load_cifar, standardise=False, fingerprint=_cifar_fingerprint),
    "CIFAR-10 from its python-version files on the workers: 50,000 training images (7,500 held out for "
    "validation) and the official 10,000 test images.",
)
DATASETS.register(
    "cifar100",
    CIFAR100Config,
    DatasetSource((3, 32, 32), 100, None, _load_cifar, standardise=False, fingerprint=_cifar_fingerprint),
    "CIFAR-100 from its python-version files on the workers (fine or coarse labels); official test set.",
)

__all__ = ["CIFAR10Config", "CIFAR100Config", "FileData", "ImageFolderConfig", "NPZConfig"]
