"""The job-spec side of datasets: the built-in ones and those read from the user's files.

A built-in dataset declares its input shape and class count here, so a job is checked against its
space without loading any data. A file dataset knows them only from its files: its config checks
at submission that the files are there, under a data root, and look right (``scion.data_paths``);
a stored spec is loaded as trusted (validation context ``{"trusted": True}``), which skips those
checks, and each worker resolves the paths again when it loads the data
(``worker/training/file_datasets.py``)."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from scion.configs.bounds import MAX_CLASSES
from scion.configs.dataset_size import INPUT_BYTES, LABEL_BYTES, check_loaded_size
from scion.data_paths import DataPathError, confined, resolve_data_path, user_path
from scion.registry import Registry


def trusted(info: ValidationInfo) -> bool:
    """Whether a config is being loaded from the database, where it was checked at submission:
    then paths are not resolved nor files read again (the scheduler's host need not see them)."""
    return bool(info.context and info.context.get("trusted"))


DATASETS: Registry[Any] = Registry("dataset")  # filled at the end of this module; worker/training implements


class DatasetConfig(BaseModel):
    """A dataset's settings; ``input_shape`` and ``num_classes`` are known here for built-ins and
    None for file datasets, whose files alone can tell."""

    input_shape: ClassVar[tuple[int, ...] | None] = None
    num_classes: ClassVar[int | None] = None

    def num_examples(self) -> int | None:
        """Examples in all (before splitting), where known without the data."""
        return None


VAL_FRACTION = 0.15
TEST_FRACTION = 0.15


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes for ``n`` examples: 15% validation, 15% test, the rest train."""
    n_val = round(n * VAL_FRACTION)
    n_test = round(n * TEST_FRACTION)
    return n - n_val - n_test, n_val, n_test

def dataset_by_name(value: Any) -> Any:
    """An evaluator's ``dataset`` may be just a name: the object with that ``type``, or an error
    listing the datasets there are."""
    if isinstance(value, str):
        if value not in DATASETS:
            raise ValueError(f"unknown dataset {value!r}; allowed: {', '.join(DATASETS.names())}")
        return {"type": value}
    return value


class DigitsConfig(DatasetConfig):
    input_shape: ClassVar[tuple[int, ...] | None] = (1, 8, 8)
    num_classes: ClassVar[int | None] = 10
    model_config = ConfigDict(extra="forbid")

    type: Literal["digits"] = Field("digits", description="scikit-learn's 8x8 handwritten digits.")

    def num_examples(self) -> int:
        return 1797


class MNIST1DConfig(DatasetConfig):
    input_shape: ClassVar[tuple[int, ...] | None] = (1, 40)
    num_classes: ClassVar[int | None] = 10
    model_config = ConfigDict(extra="forbid")

    type: Literal["mnist1d"] = Field(
        "mnist1d", description="Greydanus' MNIST-1D, generated offline."
    )
    num_samples: int = Field(
        4000,
        ge=1000,
        le=100_000,
        description="Examples to generate (rounded down to a multiple of 10, one tenth per class).",
    )

    def num_examples(self) -> int:
        return self.num_samples // 10 * 10



IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def check_labels(what: str, y: np.ndarray) -> np.ndarray:
    """Labels as int64 class indices 0..K-1 (integral floats accepted)."""
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise DataPathError(f"{what} must hold integer class labels 0..K-1, not {y.dtype} values")
    if y.dtype.kind == "f" and (not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y))):
        raise DataPathError(f"{what} must hold integer class labels 0..K-1; it has non-integer values")
    if len(y) and y.min() < 0:
        raise DataPathError(f"{what} must hold class labels 0..K-1; it has {y.min()}")
    if len(y) and y.max() >= MAX_CLASSES:
        raise DataPathError(f"{what} has label {y.max():.0f}; labels are class indices 0..{MAX_CLASSES - 1:,} (at "
                            f"most {MAX_CLASSES:,} classes)")
    return y.astype(np.int64)


class _FileConfig(DatasetConfig):
    model_config = ConfigDict(extra="forbid")

    # type and path are narrowed by every source; declared here so that they come first in the schema
    type: str
    path: str
    normalise: bool = Field(
        True, description="Standardise inputs per channel with the training split's mean and std."
    )


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
    def _check_file(self, info: ValidationInfo) -> NPZConfig:
        if trusted(info):
            return self
        npz_plan(self)
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


NPZ_MAX_ARRAYS = 1024  # an archive with more costs a submission the time to list them, for arrays no job reads
_ZIP_END = b"PK\x05\x06"  # the end-of-central-directory record, within the last 64 KiB + 22 bytes


def _zip_entries(path: Path, shown: str) -> int:
    """How many entries a zip archive holds, from its end record alone (its last bytes), so an
    archive of a million members is refused before its directory is parsed; 0xFFFF stands for
    that many or more (a zip64 archive)."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - 22 - 0xFFFF))
        tail = f.read()
    at = tail.rfind(_ZIP_END)
    if at < 0 or len(tail) - at < 22:
        raise DataPathError(f"npz path {shown!r} is not a .npz archive (not a zip file)")
    return int.from_bytes(tail[at + 10:at + 12], "little")


def _npz_headers(path: Path, shown: str, wanted: set[str]) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]],
                                                                 list[str]]:
    """(array name → (shape, dtype) for the ``wanted`` arrays present, from their headers only;
    every array's name). The work is bounded by NPZ_MAX_ARRAYS whatever the file holds."""
    if not path.is_file():
        raise DataPathError(f"npz path {shown!r} is not a file")
    if (entries := _zip_entries(path, shown)) > NPZ_MAX_ARRAYS:
        many = "65,535 or more" if entries == 0xFFFF else f"{entries:,}"
        raise DataPathError(f"npz path {shown!r} holds {many} members; an npz for Scion holds at most "
                            f"{NPZ_MAX_ARRAYS:,} (save only the arrays the job reads: x, y or x_train, y_train, ...)")
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = [member[: -len(".npy")] for member in zf.namelist() if member.endswith(".npy")]
            for name in wanted.intersection(names):
                with zf.open(f"{name}.npy") as f:
                    headers[name] = _read_npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataPathError(f"npz path {shown!r} cannot be read: {exc}") from None
    return headers, names


def npz_plan(config: NPZConfig) -> tuple[Path, dict[str, str], tuple[int, ...]]:
    """(resolved path, role → array name for the roles used, x's feature shape after layout);
    raises DataPathError saying what is wrong with the file."""
    shown = config.path
    path = resolve_data_path(config.path, what="npz path")
    name = {role: config.keys.get(role, role) for role in NPZ_ROLES}
    headers, arrays = _npz_headers(path, shown, set(name.values()))
    present = {role for role in NPZ_ROLES if name[role] in headers}
    have = ", ".join(sorted(arrays)[:20]) + (f", ... ({len(arrays)} in all)" if len(arrays) > 20 else "") or "none"
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
        features = layout(x_shape[1:], config.channels_last)
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
    loaded = sum(math.prod(headers[name[xr]][0]) * max(INPUT_BYTES, headers[name[xr]][1].itemsize)
                 + math.prod(headers[name[yr]][0]) * max(LABEL_BYTES, headers[name[yr]][1].itemsize)
                 for xr, yr in pairs)
    x_shapes = ", ".join(f"{name[xr]!r} {headers[name[xr]][0]} {headers[name[xr]][1]}" for xr, _ in pairs)
    check_loaded_size(f"npz path {shown!r}", loaded, f"its arrays ({x_shapes}, by their headers)",
                      "save fewer or smaller examples")
    return path, {role: name[role] for pair in pairs for role in pair}, feature_shape


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
    def _check_folder(self, info: ValidationInfo) -> ImageFolderConfig:
        if trusted(info):
            return self
        root, classes = image_plan(self)
        probe_images(self.path, [files[0] for _, files in classes])
        return self


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def image_plan(config: ImageFolderConfig) -> tuple[Path, list[tuple[str, list[Path]]]]:
    """(resolved root, [(class name, sorted image files)]) in sorted class order."""
    shown = config.path
    root = resolve_data_path(config.path, what="image_folder path")
    if not root.is_dir():
        raise DataPathError(f"image_folder path {shown!r} is not a directory")
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        classes = [(f.name, confined(sorted(p for p in f.iterdir() if _is_image(p)),
                                     what=f"image_folder path {shown!r}, class folder {f.name!r}"))
                   for f in folders]
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
    (height, width), channels = config.height_width, (3 if config.color == "rgb" else 1)
    loaded = total * (channels * height * width * INPUT_BYTES + LABEL_BYTES)
    check_loaded_size(f"image_folder path {shown!r}", loaded, f"its {total:,} images at size {height}x{width}, "
                      f"{config.color},", "lower size or use fewer images")
    return root, classes


def probe_images(shown: str, files: list[Path]) -> None:
    """Open (header only) one image per class, so that a folder of non-images is refused early."""
    from PIL import Image, UnidentifiedImageError

    for file in files:
        try:
            with Image.open(file) as image:
                image.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise DataPathError(f"image_folder path {shown!r}: cannot read image {user_path(file)!r}: {exc}") from None


CIFAR_PIXELS = 3 * 32 * 32  # bytes of one image in a batch's uint8 'data'

CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
    "cifar100": ("cifar-100-python", ["train"], "test"),
}


class _CIFARConfig(_FileConfig):
    augment: bool = Field(False, description="Random crop (padding 4) and horizontal flips while training.")

    @model_validator(mode="after")
    def _check_files(self, info: ValidationInfo) -> _CIFARConfig:
        if trusted(info):
            return self
        cifar_files(self)
        return self


class CIFAR10Config(_CIFARConfig):
    input_shape: ClassVar[tuple[int, ...] | None] = (3, 32, 32)
    num_classes: ClassVar[int | None] = 10
    type: Literal["cifar10"] = Field("cifar10", description="CIFAR-10, python version, from local files.")
    path: str = Field(
        "cifar-10-batches-py",
        description="Directory on the workers, under a data root, holding data_batch_1..5 and test_batch (the "
        "extracted cifar-10-python.tar.gz), or its parent.",
    )


class CIFAR100Config(_CIFARConfig):
    input_shape: ClassVar[tuple[int, ...] | None] = (3, 32, 32)
    num_classes: ClassVar[int | None] = 100  # the fine labels; coarse ones give 20, known once loaded
    type: Literal["cifar100"] = Field("cifar100", description="CIFAR-100, python version, from local files.")
    path: str = Field(
        "cifar-100-python",
        description="Directory on the workers, under a data root, holding train and test (the extracted "
        "cifar-100-python.tar.gz), or its parent.",
    )
    labels: Literal["fine", "coarse"] = Field("fine", description="The 100 fine classes or the 20 superclasses.")


def cifar_files(config: _CIFARConfig) -> tuple[list[Path], Path]:
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
            f"{kind} path {shown!r} ({user_path(folder)}) lacks {', '.join(missing)}; expected the python-version "
            f"layout ({', '.join(p.name for p in paths)})"
        )
    paths = confined(paths, what=f"{kind} path {shown!r}")
    for p in paths:
        with p.open("rb") as f:
            if f.read(1) != b"\x80":
                raise DataPathError(f"{kind} file {user_path(p)!r} is not a pickle (the python-version CIFAR layout)")
    # an image is CIFAR_PIXELS bytes of its file (its arrays hold no more than their file: the loader's unpickler)
    images = sum(p.stat().st_size for p in paths) // CIFAR_PIXELS
    check_loaded_size(f"{kind} path {shown!r}", images * (CIFAR_PIXELS * INPUT_BYTES + LABEL_BYTES),
                      f"its files, of at most {images:,} images by their sizes,", "use smaller batch files")
    return paths[:-1], paths[-1]
MIN_EXAMPLES = 10  # fewer cannot give non-empty train, validation and test splits


def layout(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    """One example's shape as the networks take it: (C, H, W), (C, L), or (1, D) for features."""
    if len(shape) == 1:
        return (1, *shape)
    if channels_last:
        return (shape[-1], *shape[:-1])
    return shape


DATASETS.register(
    "digits", DigitsConfig,
    "scikit-learn's 1,797 handwritten digits, 8x8 grey images, 10 classes; "
    "seconds to train on a CPU.",
)
DATASETS.register(
    "mnist1d", MNIST1DConfig,
    "MNIST-1D: 10 classes of 1-D signals of length 40, generated offline; harder than its size.",
)
DATASETS.register(
    "npz", NPZConfig,
    "Your arrays in a .npz file on the workers (x/y, or x_train/y_train[/x_val/y_val/x_test/y_test]).",
)
DATASETS.register(
    "image_folder", ImageFolderConfig,
    "Your images on the workers, one sub-folder per class (Pillow), resized (32x32 by default).",
)
DATASETS.register(
    "cifar10", CIFAR10Config,
    "CIFAR-10 from its python-version files on the workers: 50,000 training images (7,500 held out for "
    "validation) and the official 10,000 test images.",
)
DATASETS.register(
    "cifar100", CIFAR100Config,
    "CIFAR-100 from its python-version files on the workers (fine or coarse labels); official test set.",
)


def describe_datasets() -> list[dict[str, Any]]:
    """Catalogue entries for every dataset, shaped like the API's ``CatalogEntry`` (name,
    summary, json_schema, details); details give input_shape, num_classes and the split sizes
    at default settings. Cheap: no data is loaded or generated. A file dataset's details are null
    where only its files can tell, and ``files`` says so."""
    result = []
    for entry in DATASETS.entries():
        details: dict[str, Any] = {
            "input_shape": list(entry.config.input_shape) if entry.config.input_shape else None,
            "num_classes": entry.config.num_classes,
            "splits": None,
        }
        if (examples := entry.config.model_construct().num_examples()) is not None:
            train, val, test = split_sizes(examples)
            details["splits"] = {"train": train, "val": val, "test": test}
        if issubclass(entry.config, _FileConfig):
            details["files"] = "read from 'path' on each worker, under its data roots (SCION_DATA_ROOTS)"
        result.append(
            {
                "name": entry.name,
                "summary": entry.summary,
                "json_schema": entry.config.model_json_schema(),
                "details": details,
            }
        )
    return result


def stored_dataset(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The job's dataset config as stored (a bare name is its ``type``), or None when its
    evaluator has none."""
    raw = (spec.get("evaluator") or {}).get("dataset")
    return {"type": raw} if isinstance(raw, str) else raw


def declared_signature(spec: dict[str, Any]) -> tuple[tuple[int, ...], int] | None:
    """(input_shape, num_classes) of a stored spec's dataset when its config declares them
    (built-ins), without loading it; None for a file dataset, whose files alone tell."""
    raw = stored_dataset(spec)
    config = DATASETS[raw["type"]].config if raw is not None and raw.get("type") in DATASETS else None
    if config is None or config.input_shape is None or config.num_classes is None:
        return None
    return tuple(config.input_shape), int(config.num_classes)
