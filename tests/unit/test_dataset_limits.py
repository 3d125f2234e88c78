"""Data that expands (issue 16, item 4): small files that declare large data (a compressed npz, a few
tiny images resized to 1024 pixels, a CIFAR pickle that builds arrays of any shape) are sized
before anything is allocated and refused above SCION_MAX_DATASET_MB, at submission and again in
the worker, which allocates next to nothing on the way; ordinary datasets still load."""
from __future__ import annotations

import pickle
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from scion.settings import get_settings
from worker.evaluators import TrialFailed
from worker.training import datasets as ds
from worker.training.file_datasets import CIFAR10Config, ImageFolderConfig, NPZConfig
from tests.unit.test_file_datasets import root, write_cifar, write_png  # noqa: F401  (root: the fixture)

MIB = 1024 * 1024


@pytest.fixture
def limit_mb(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set this process's SCION_MAX_DATASET_MB."""
    def set_limit(mb: float) -> None:
        monkeypatch.setenv("SCION_MAX_DATASET_MB", str(mb))
        get_settings.cache_clear()
    return set_limit


def stored(config_type: type[BaseModel], **fields: Any) -> BaseModel:
    """The config as a worker gets it: from a stored spec, trusted, so nothing was checked on the way."""
    return config_type.model_validate(fields, context={"trusted": True})


def peak_while(load: Callable[[], object]) -> tuple[BaseException | None, int]:
    """(what ``load`` raised, the most memory it had allocated at once: Python's and numpy's)."""
    ds.clear_cache()
    tracemalloc.start()
    try:
        load()
        raised = None
    except Exception as exc:  # noqa: BLE001  (returned for the test to check)
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return raised, peak


# ---------------------------------------------------------------------------------- npz


def test_a_compressed_npz_declaring_large_arrays_is_refused_before_they_are_read(root: Path, limit_mb) -> None:
    x = np.zeros((2000, 3, 32, 32), np.uint8)  # 6 MiB of zeros: a 40 KiB file, 23.4 MiB once loaded as float32
    np.savez_compressed(root / "big.npz", x=x, y=np.arange(2000) % 2)
    assert (root / "big.npz").stat().st_size < 100_000
    limit_mb(4)
    expected = ("npz path 'big.npz': its arrays ('x' (2000, 3, 32, 32) uint8, by their headers) take 23.5 MiB once "
                "loaded, above this server's limit of 4 MiB (SCION_MAX_DATASET_MB); save fewer or smaller examples")
    with pytest.raises(ValidationError) as info:
        NPZConfig(path="big.npz")
    assert expected in str(info.value)

    raised, peak = peak_while(lambda: ds.load_dataset(stored(NPZConfig, type="npz", path="big.npz")))
    assert isinstance(raised, TrialFailed) and expected in str(raised), raised
    assert peak < 1 * MIB, peak  # the headers alone were read

    np.savez_compressed(root / "small.npz", x=x[:200], y=np.arange(200) % 2)  # 2.3 MiB once loaded
    assert ds.load_dataset(NPZConfig(path="small.npz")).input_shape == (3, 32, 32)
    limit_mb(64)  # the same file under a larger limit
    assert len(ds.load_dataset(NPZConfig(path="big.npz")).y_train) == 1400


# ---------------------------------------------------------------------------------- image folder


def test_tiny_images_resized_large_are_refused_before_they_are_decoded(root: Path, limit_mb) -> None:
    for i in range(10):
        write_png(root / "pets" / ("cat" if i % 2 else "dog") / f"{i}.png", (2, 2), 20 * i)
    limit_mb(16)
    expected = ("image_folder path 'pets': its 10 images at size 1024x1024, rgb, take 120.0 MiB once loaded, above "
                "this server's limit of 16 MiB (SCION_MAX_DATASET_MB); lower size or use fewer images")
    with pytest.raises(ValidationError) as info:
        ImageFolderConfig(path="pets", size=1024)
    assert expected in str(info.value)

    raised, peak = peak_while(lambda: ds.load_dataset(stored(ImageFolderConfig, type="image_folder", path="pets",
                                                            size=1024)))
    assert isinstance(raised, TrialFailed) and expected in str(raised), raised
    assert peak < 1 * MIB, peak

    d = ds.load_dataset(ImageFolderConfig(path="pets", size=64, color="grayscale"))  # 160 KiB: fine
    assert d.input_shape == (1, 64, 64) and d.num_classes == 2


# ---------------------------------------------------------------------------------- CIFAR


def test_cifar_files_too_large_once_loaded_are_refused_by_their_sizes(root: Path, limit_mb) -> None:
    write_cifar(root / "c10", per_batch=60, n_test=50)  # 350 images (and their names): 1.6 MiB of files
    write_cifar(root / "small", per_batch=4, n_test=4)
    limit_mb(1)
    with pytest.raises(ValidationError) as info:
        CIFAR10Config(path="c10")
    # each 3,072 bytes of its files may be an image (float32 once loaded, and its label)
    images = sum(f.stat().st_size for f in (root / "c10").glob("*_batch*")) // 3072
    assert images >= 350
    expected = (f"cifar10 path 'c10': its files, of at most {images} images by their sizes, take "
                f"{images * (3072 * 4 + 8) / MIB:.1f} MiB once loaded, above this server's limit of 1 MiB "
                "(SCION_MAX_DATASET_MB); use smaller batch files")
    assert expected in str(info.value)
    with pytest.raises(TrialFailed) as failed:
        ds.load_dataset(stored(CIFAR10Config, type="cifar10", path="c10"))
    assert expected in str(failed.value)
    assert len(ds.load_dataset(CIFAR10Config(path="small")).y_test) == 4


class NdarrayOfShape:
    """Pickles as ``numpy.ndarray(shape)``: an uninitialised array of any size from a few bytes."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        return (np.ndarray, (self.shape,))


def encode_again_and_again(text_bytes: int, times: int) -> bytes:
    """A pickle of a list holding one latin-1 string of the file made into bytes ``times`` times
    (``_codecs.encode`` called on the same memoised string): ``times`` × the file."""
    text = b"a" * text_bytes
    body = b"c_codecs\nencode\nq\x00X" + len(text).to_bytes(4, "little") + text + b"q\x01X\x06\x00\x00\x00latin1q\x02"
    body += b"](" + b"h\x00h\x01h\x02\x86R" * times + b"e."
    return b"\x80\x02" + body


def nested_labels(inner: int, outer: int) -> dict[str, Any]:
    """A batch whose labels are the same list of ``inner`` ints named ``outer`` times: a (outer, inner) array."""
    labels = list(range(inner))
    return {"data": np.zeros((4, 3072), np.uint8), "labels": [labels] * outer}


BOMBS = {
    # 2 GiB of float64 from 115 bytes
    "ndarray(shape)": (lambda: pickle.dumps({"data": NdarrayOfShape((87_382, 3072)), "labels": []}, protocol=2),
                       "numpy arrays are allowed in a CIFAR file only as numpy pickles them"),
    # 100 MiB of bytes from a 1 MiB file
    "one string encoded 100 times": (lambda: encode_again_and_again(MIB, 100),
                                     "its arrays and strings hold more bytes than the file could"),
    # 153 MiB of int64 labels from 43 KiB
    "labels: one list named 20,000 times": (lambda: pickle.dumps(nested_labels(1000, 20_000), protocol=2),
                                            "'labels' is not a list of class indices"),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_small_cifar_pickle_cannot_allocate_more_than_it_holds(root: Path, bomb: str) -> None:
    make, message = BOMBS[bomb]
    write_cifar(root / "c10", per_batch=4, n_test=4)
    payload = make()
    (root / "c10" / "data_batch_1").write_bytes(payload)
    config = CIFAR10Config(path="c10")  # its files are small: nothing tells at submission

    raised, peak = peak_while(lambda: ds.load_dataset(config))
    assert isinstance(raised, TrialFailed), raised
    assert "cifar10 file 'c10/data_batch_1'" in str(raised) and message in str(raised), raised
    assert peak < 4 * len(payload) + 8 * MIB, f"{peak / MIB:.1f} MiB allocated reading a {len(payload):,}-byte file"


def test_ordinary_cifar_pickles_still_load_whatever_their_protocol(root: Path) -> None:
    written = write_cifar(root / "c10", per_batch=300, n_test=20)  # arrays over 1000 bytes: numpy keeps the file's
    batch = {"data": written["data_batch_2"], "labels": list(np.arange(300) % 10), "filenames": ["a.png"] * 300}
    (root / "c10" / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=4))  # numpy ints, protocol 4 bytes
    d = ds.load_dataset(CIFAR10Config(path="c10", normalise=False))
    assert (len(d.y_train) + len(d.y_val), len(d.y_test)) == (1500, 20)
    kept = {r.tobytes() for r in d.x_train.astype(np.uint8).reshape(len(d.x_train), -1)}
    assert {r.tobytes() for r in written["data_batch_2"]} & kept
