"""How much memory a file dataset takes once loaded, known before its data is read, and this
server's limit on it (``max_dataset_mb``, ``SCION_MAX_DATASET_MB``).

Small files can declare large data: an npz's compressed arrays, an image folder's few tiny images
resized to 1024 pixels a side, a pickle's arrays. Each file dataset is sized from what costs
nothing to read (an npz's array headers, an image folder's image count and settings, a CIFAR
folder's file sizes, which bound what its pickles may hold: the loader's unpickler refuses arrays
larger than their file) and refused above the limit: at submission, as a 422 naming the path, the
size and the limit, and again by the worker before it reads the data, as a failed trial.

A worker holds a dataset's inputs as float32 (``worker/training/file_datasets.py``), so an input
value counts 4 bytes, or its file's width where that is wider (an npz of float64 is read whole
first); a label counts 8 (int64).
"""
from __future__ import annotations

from scion.data_paths import DataPathError
from scion.settings import get_settings

MIB = 1024 * 1024
INPUT_BYTES = 4  # float32, as the worker keeps inputs
LABEL_BYTES = 8  # int64


def size_text(nbytes: int | float) -> str:
    """A byte count as a person reads it: '12.3 MiB', '4.0 GiB'."""
    return f"{nbytes / MIB:,.1f} MiB" if nbytes < 1024 * MIB else f"{nbytes / (1024 * MIB):,.1f} GiB"


def check_loaded_size(what: str, nbytes: int, holding: str, advice: str) -> None:
    """Raise DataPathError when a dataset of ``nbytes`` once loaded is above this server's limit:
    ``what`` names the path as the spec gave it, ``holding`` what was counted, ``advice`` what to shrink."""
    limit = get_settings().max_dataset_mb
    if nbytes > limit * MIB:
        raise DataPathError(
            f"{what}: {holding} take {size_text(nbytes)} once loaded, above this server's limit of "
            f"{limit:,g} MiB (SCION_MAX_DATASET_MB); {advice}"
        )
