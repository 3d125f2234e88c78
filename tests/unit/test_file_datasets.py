"""Datasets from the user's files (npz, image folder, CIFAR-10/100 pickles), the data roots they must
lie under, and image augmentation; every file is small and written by the test itself."""
from __future__ import annotations

import io
import json
import os
import pickle
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ValidationError

from scion.configs.datasets import describe_datasets, split_sizes
from scion.data_paths import DataPathError, resolve_data_path
from scion.settings import Settings, get_settings
from scion.spec import JobSpec
from worker.evaluators import TrialFailed
from worker.evaluators.tabular import TabularConfig
from worker.evaluators.train import TrainConfig
from worker.training import datasets as ds
from worker.training.augment import augment_batch, crop_padding, epoch_generator
from worker.training.file_datasets import CIFAR10Config, CIFAR100Config, ImageFolderConfig, NPZConfig
from worker.training.trainer import train

# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data root (and only it) for this test's files."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("SCION_DATA_ROOTS", str(data))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a}


def write_npz(path: Path, n: int = 60, classes: int = 3, seed: int = 0, **extra: np.ndarray) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, 2, 6, 6)).astype(np.float32)
    y = np.arange(n) % classes
    np.savez(path, x=x, y=y, **extra)
    return x, y


def write_png(path: Path, size: tuple[int, int], value: int, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.full((size[1], size[0], channels), value, dtype=np.uint8)
    pixels[0, :, 0] = 255 - value  # not quite constant
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


def write_cifar(folder: Path, per_batch: int = 60, n_test: int = 50, hundred: bool = False) -> dict[str, np.ndarray]:
    """The python-version layout with small batches: dict pickles (protocol 2) of uint8 (N, 3072) + labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    written: dict[str, np.ndarray] = {}
    sizes = [*((b, per_batch * (5 if hundred else 1)) for b in names), ("test" if hundred else "test_batch", n_test)]
    for name, n in sizes:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        if hundred:
            fine = rng.integers(0, 100, n)
            batch = {"data": data, "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                     "filenames": [f"{i}.png" for i in range(n)]}
        else:
            batch = {"batch_label": name, "data": data, "labels": rng.integers(0, 10, n).tolist(),
                     "filenames": [f"{i}.png" for i in range(n)]}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = data
    (folder / ("meta" if hundred else "batches.meta")).write_bytes(pickle.dumps({"label_names": []}, protocol=2))
    return written


# ---------------------------------------------------------------------------------- npz


def test_npz_splits_normalises_and_caches(root: Path) -> None:
    x, _ = write_npz(root / "arrays.npz", n=60)
    config = NPZConfig(path="arrays.npz")  # relative: found under the data root
    d = ds.load_dataset(config)
    assert d.input_shape == (2, 6, 6) and d.num_classes == 3 and not d.augment
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (42, 9, 9) == split_sizes(60)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert not (rows(d.x_train) & rows(d.x_val)) and not (rows(d.x_train) & rows(d.x_test))
    mean, std = d.x_train.mean(axis=(0, 2, 3)), d.x_train.std(axis=(0, 2, 3))
    assert np.allclose(mean, 0, atol=1e-5) and np.allclose(std, 1, atol=1e-4)  # per channel, train statistics
    assert set(np.unique(d.y_test)) == {0, 1, 2}  # stratified
    assert ds.load_dataset(NPZConfig(path="arrays.npz")) is d  # one load per process
    with pytest.raises(ValueError):
        d.x_train[0, 0, 0, 0] = 1.0

    ds.clear_cache()
    again = ds.load_dataset(config)
    assert again is not d and np.array_equal(again.x_val, d.x_val) and np.array_equal(again.y_test, d.y_test)

    write_npz(root / "arrays.npz", n=80, seed=2)  # a changed file is read again
    later = time.time() + 5
    os.utime(root / "arrays.npz", (later, later))
    assert len(ds.load_dataset(config).y_train) == split_sizes(80)[0]


def test_npz_explicit_splits_keys_and_layouts(root: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(40, 5, 5, 3), dtype=np.uint8)  # channels last
    np.savez(root / "named.npz", images=images, labels=np.arange(40) % 4,
             x_test=images[:8], y_test=np.arange(8) % 4)
    d = ds.load_dataset(NPZConfig(path=str(root / "named.npz"), keys={"x_train": "images", "y_train": "labels"},
                                  channels_last=True, augment=True))
    assert d.input_shape == (3, 5, 5) and d.num_classes == 4 and d.augment
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (34, 6, 8)  # the file's test split is kept
    assert np.array_equal(d.y_test, np.arange(8) % 4)

    np.savez(root / "features.npz", x=rng.normal(size=(30, 7)), y=(np.arange(30) % 2).astype(np.float64))
    d = ds.load_dataset(NPZConfig(path="features.npz", normalise=False))
    assert d.input_shape == (1, 7) and d.num_classes == 2  # (N, D) features read as 1-channel sequences


def test_npz_refused_at_validation_with_the_path_named(root: Path) -> None:
    cases = {
        "not-a-zip.npz": (lambda p: p.write_bytes(b"hello"), "not a .npz archive"),
        "no-y.npz": (lambda p: np.savez(p, x=np.zeros((20, 1, 4))), "needs arrays 'x' and 'y'"),
        "mismatch.npz": (lambda p: np.savez(p, x=np.zeros((20, 1, 4)), y=np.zeros(19, int)), "19 labels"),
        "tiny.npz": (lambda p: np.savez(p, x=np.zeros((5, 1, 4)), y=np.zeros(5, int)), "at least 10"),
        "rank5.npz": (lambda p: np.savez(p, x=np.zeros((20, 1, 2, 2, 2)), y=np.zeros(20, int)), "expected (N, D)"),
        "strings.npz": (lambda p: np.savez(p, x=np.zeros((20, 4)), y=np.array(["a"] * 20)), "integer class labels"),
        "half-val.npz": (lambda p: np.savez(p, x_train=np.zeros((20, 4)), y_train=np.zeros(20, int),
                                            x_val=np.zeros((5, 4))), "not 'y_val'"),
        "aug-seq.npz": (lambda p: np.savez(p, x=np.zeros((20, 1, 4)), y=np.zeros(20, int)), "augment needs images"),
    }
    for name, (write, message) in cases.items():
        write(root / name)
        with pytest.raises(ValidationError) as info:
            NPZConfig(path=name, augment=name == "aug-seq.npz")
        assert name in str(info.value) and message in str(info.value), (name, str(info.value))


def test_an_npz_of_many_members_costs_a_submission_milliseconds(root: Path) -> None:
    write_npz(root / "wide.npz", **{f"extra{i}": np.zeros(1) for i in range(1000)})
    NPZConfig(path="wide.npz")  # x, y and 1,000 more: read from two headers
    write_npz(root / "wider.npz", **{f"extra{i}": np.zeros(1) for i in range(1100)})
    with pytest.raises(ValidationError, match="'wider.npz' holds 1,102 members; an npz for Scion holds at most 1,024"):
        NPZConfig(path="wider.npz")
    header = io.BytesIO()
    np.lib.format.write_array(header, np.zeros(1))
    write_npz(root / "huge.npz")
    with zipfile.ZipFile(root / "huge.npz", "a") as zf:  # a zip64 archive: its end record cannot count them
        for i in range(70_000):
            zf.writestr(f"a{i}.npy", header.getvalue())
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="holds 65,535 or more members"):
        NPZConfig(path="huge.npz")
    assert time.perf_counter() - started < 0.5  # listing its members alone took longer than this


# ---------------------------------------------------------------------------------- image folder


def test_image_folder_resizes_to_rgb_or_grey(root: Path) -> None:
    folder = root / "pets"
    for c, (cls, value) in enumerate((("cat", 30), ("dog", 120), ("owl", 220))):
        for i in range(5):
            mode = ("RGB", "RGBA", "L")[i % 3]
            write_png(folder / cls / f"{i}.png", (9 + i + c, 7 + i), value + i, mode)
    (folder / "dog" / "notes.txt").write_text("not an image, ignored")
    (folder / ".hidden").mkdir()

    d = ds.load_dataset(ImageFolderConfig(path="pets", size=16))
    assert d.input_shape == (3, 16, 16) and d.num_classes == 3
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == split_sizes(15)
    assert d.x_train.shape[1:] == (3, 16, 16)
    grey = ds.load_dataset(ImageFolderConfig(path="pets", size=(8, 12), color="grayscale", augment=True))
    assert grey.input_shape == (1, 8, 12) and grey.augment
    # classes in sorted folder order: cat=0 is darkest, owl=2 brightest, before standardisation
    raw = ds.load_dataset(ImageFolderConfig(path="pets", size=4, normalise=False))
    means = [raw.x_train[raw.y_train == k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]


def test_image_folder_refused_when_malformed(root: Path) -> None:
    write_png(root / "one" / "only" / "a.png", (4, 4), 10)
    with pytest.raises(ValidationError, match="'one' has 1 class sub-folder"):
        ImageFolderConfig(path="one")
    for cls in ("a", "b"):
        for i in range(6):
            write_png(root / "broken" / cls / f"{i}.png", (4, 4), 10)
    (root / "broken" / "a" / "0.png").write_bytes(b"not a png at all")
    with pytest.raises(ValidationError, match=r"cannot read image .*broken/a/0\.png"):
        ImageFolderConfig(path="broken")
    (root / "empty" / "a").mkdir(parents=True)
    (root / "empty" / "b").mkdir()
    with pytest.raises(ValidationError, match="hold no images"):
        ImageFolderConfig(path="empty")
    (root / "file.png").write_bytes(b"x")
    with pytest.raises(ValidationError, match="not a directory"):
        ImageFolderConfig(path="file.png")


# ---------------------------------------------------------------------------------- CIFAR


def test_cifar10_pickle_layout_keeps_the_official_test_set(root: Path) -> None:
    written = write_cifar(root / "cifar-10-batches-py", per_batch=60, n_test=50)
    d = ds.load_dataset(CIFAR10Config())  # the default path, found under the data root
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (255, 45, 50)  # 15% of training held out
    with (root / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        test = pickle.load(f)
    assert np.array_equal(d.y_test, test["labels"])  # official test set, in order
    raw = ds.load_dataset(CIFAR10Config(path=str(root), normalise=False))  # the parent folder works too
    assert np.array_equal(raw.x_test[0], written["test_batch"][0].reshape(3, 32, 32))
    assert rows(raw.x_val) <= rows(np.concatenate([w.reshape(-1, 3, 32, 32) for n, w in written.items()
                                                   if n != "test_batch"]).astype(np.float32))
    assert abs(float(d.x_train[:, 0].mean())) < 1e-4


def test_cifar100_fine_and_coarse_labels(root: Path) -> None:
    write_cifar(root / "cifar-100-python", per_batch=60, hundred=True)
    fine = ds.load_dataset(CIFAR100Config())
    coarse = ds.load_dataset(CIFAR100Config(labels="coarse"))
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert len(fine.y_test) == 50 and len(fine.y_train) + len(fine.y_val) == 300


def test_cifar_refused_when_missing_or_malformed(root: Path) -> None:
    with pytest.raises(ValidationError, match="'cifar-10-batches-py' does not exist"):
        CIFAR10Config()
    folder = root / "c10"
    write_cifar(folder, per_batch=4, n_test=4)
    (folder / "test_batch").unlink()
    with pytest.raises(ValidationError, match="lacks test_batch"):
        CIFAR10Config(path="c10")
    (folder / "test_batch").write_text("label,pixels\n")
    with pytest.raises(ValidationError, match="test_batch' is not a pickle"):
        CIFAR10Config(path="c10")

    # a pickle that would run code is refused while loading, on the worker, as a failed trial
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    config = CIFAR10Config(path="c10")
    with pytest.raises(TrialFailed, match="cifar10 file .*test_batch.* not allowed"):
        ds.load_dataset(config)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}))
    with pytest.raises(TrialFailed, match=r"'data' is uint8 \(4, 100\)"):
        ds.load_dataset(config)


# ---------------------------------------------------------------------------------- data roots


def test_paths_outside_the_data_roots_are_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.npz"
    write_npz(outside)
    with pytest.raises(ValidationError) as info:
        NPZConfig(path=str(outside))
    assert "outside the data roots" in str(info.value) and str(root) not in str(info.value)  # the server's layout
    (root / "link.npz").symlink_to(outside)  # a symlink does not let it in
    with pytest.raises(ValidationError, match="outside the data roots"):
        NPZConfig(path="link.npz")
    with pytest.raises(ValidationError, match="outside the data roots"):
        NPZConfig(path="../elsewhere.npz")
    with pytest.raises(ValidationError, match="does not exist") as info:
        NPZConfig(path="missing.npz")
    assert str(root) not in str(info.value)

    table = tmp_path / "nb201.csv"  # the tabular evaluator's table obeys the same roots
    table.write_text("arch,val_acc_12ep,test_acc_200ep\n")
    with pytest.raises(ValidationError, match="table .* outside the data roots"):
        TabularConfig(table=table)
    (root / "nb201.csv").write_text("arch,val_acc_12ep,test_acc_200ep\n")
    assert TabularConfig(table=root / "nb201.csv").table == root / "nb201.csv"


def test_links_inside_a_data_root_that_lead_outside_are_refused(root: Path, tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        for i in range(6):
            write_png(root / "pets" / cls / f"{i}.png", (4, 4), 10 * i)
            write_png(tmp_path / "private" / cls / f"{i}.png", (4, 4), 10 * i)
    accepted = ImageFolderConfig(path="pets")  # checked at submission, as the worker reads it later
    (root / "pets" / "owl").symlink_to(tmp_path / "private" / "cat", target_is_directory=True)
    with pytest.raises(ValidationError, match="class folder 'owl': '0.png' is a link to outside the data roots"):
        ImageFolderConfig(path="pets")
    with pytest.raises(TrialFailed, match="link to outside the data roots"):  # planted after the job was accepted
        ds.load_dataset(accepted)
    (root / "pets" / "owl").unlink()
    (root / "pets" / "dog" / "0.png").unlink()
    (root / "pets" / "dog" / "0.png").symlink_to(tmp_path / "private" / "dog" / "0.png")
    with pytest.raises(ValidationError, match="class folder 'dog': '0.png' is a link to outside"):
        ImageFolderConfig(path="pets")

    write_cifar(root / "c10", per_batch=4, n_test=4)
    write_cifar(tmp_path / "secret", per_batch=4, n_test=4)
    (root / "c10" / "data_batch_3").unlink()
    (root / "c10" / "data_batch_3").symlink_to(tmp_path / "secret" / "data_batch_3")
    with pytest.raises(ValidationError, match="'data_batch_3' is a link to outside the data roots"):
        CIFAR10Config(path="c10")
    (root / "c10" / "data_batch_3").unlink()
    (root / "c10" / "data_batch_3").symlink_to(root / "c10" / "data_batch_2")  # a link within the roots is data
    assert len(ds.load_dataset(CIFAR10Config(path="c10")).y_test) == 4


def test_data_roots_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCION_DATA_ROOTS", raising=False)
    settings = Settings(home=tmp_path / "home")
    assert settings.data_roots == [tmp_path / "home" / "data", Path("data"), Path("../shared/data")]
    shared = (Path.cwd().parent / "shared" / "data").resolve()  # ../shared may itself be a link
    assert shared in settings.resolved_data_roots()  # ../shared/data/nb201_cifar10.csv stays allowed
    monkeypatch.setenv("SCION_DATA_ROOTS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert Settings().data_roots == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.setenv("SCION_DATA_ROOTS", json.dumps([str(tmp_path / "c")]))
    assert Settings().data_roots == [tmp_path / "c"]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "f.csv").write_text("x")
    found = resolve_data_path(tmp_path / "link" / "f.csv", roots=[(tmp_path / "link").resolve()])
    assert found == tmp_path / "real" / "f.csv"
    with pytest.raises(DataPathError, match="is empty"):
        resolve_data_path("", roots=[tmp_path])


def test_job_spec_with_a_bad_path_fails_validation_naming_it(root: Path) -> None:
    spec = {"space": {"type": "nb201"}, "strategy": {"type": "random"},
            "evaluator": {"type": "train", "dataset": {"type": "npz", "path": "nowhere/x.npz"}}}
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(spec)
    assert "evaluator" in str(info.value) and "'nowhere/x.npz' does not exist" in str(info.value)
    spec["evaluator"]["dataset"] = {"type": "image_folder", "path": "/etc"}
    with pytest.raises(ValidationError, match="'/etc' is outside the data roots"):
        JobSpec.model_validate(spec)
    write_npz(root / "ok.npz")
    spec["evaluator"] = {"type": "proxy", "dataset": {"type": "npz", "path": "ok.npz"}}
    assert JobSpec.model_validate(spec).evaluator.dataset.path == "ok.npz"
    assert TrainConfig(dataset={"type": "npz", "path": "ok.npz"}).dataset.type == "npz"


def test_a_file_gone_at_load_fails_the_trial_naming_the_path(root: Path) -> None:
    write_npz(root / "gone.npz")
    config = NPZConfig(path="gone.npz")  # valid at submission
    (root / "gone.npz").unlink()
    with pytest.raises(TrialFailed, match="dataset npz: npz path 'gone.npz' does not exist"):
        ds.load_dataset(config)


def test_describe_lists_file_datasets_without_reading_files() -> None:
    info = {e["name"]: e for e in describe_datasets()}
    assert {"npz", "image_folder", "cifar10", "cifar100"} <= set(info)
    assert info["npz"]["details"]["splits"] is None and "path" in info["npz"]["json_schema"]["required"]
    assert info["cifar10"]["details"]["input_shape"] == [3, 32, 32]
    json.dumps(info)


# ---------------------------------------------------------------------------------- augmentation


def test_augmentation_shapes_determinism_and_flips() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert crop_padding(32, 32) == 4 and crop_padding(8, 8) == 1
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    outs = [augment_batch(x, torch.Generator().manual_seed(s), padding=0) for s in range(8)]
    for out in outs:  # no padding: each example is itself or its mirror image
        for i in range(2):
            assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    assert any(not torch.equal(o, x) for o in outs)
    with pytest.raises(ValueError, match="image batches"):
        augment_batch(torch.zeros(4, 1, 10), torch.Generator())


def test_trainer_augments_image_batches(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.training.trainer as trainer

    write_npz(root / "img.npz", n=40)
    data = ds.load_dataset(NPZConfig(path="img.npz", augment=True))
    seen: list[tuple[int, ...]] = []

    def spy(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(tuple(xb.shape))
        return augment_batch(xb, generator)

    monkeypatch.setattr(trainer, "augment_batch", spy)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))
    result = train(model, data, epochs=2, batch_size=16, lr=0.05, device="cpu", seed=1)
    assert seen == [(16, 2, 6, 6), (12, 2, 6, 6)] * 2 and result["val_acc"] >= 0
    gen = epoch_generator("cpu", 1, 1)
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=epoch_generator("cpu", 1, 1)))


def test_the_worker_dataset_cache_is_bounded_by_bytes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(4):
        write_npz(root / f"part{i}.npz", n=2000, seed=i)  # about 0.6 MB of float32 each, once loaded
    monkeypatch.setenv("SCION_WORKER_DATA_CACHE_MB", "1")
    get_settings.cache_clear()
    ds.clear_cache()
    loaded = [ds.load_dataset(NPZConfig(path=f"part{i}.npz")) for i in range(4)]
    assert 0 < sum(data.nbytes for data in ds._cache.values()) <= 1 << 20  # the oldest went out
    assert ds.load_dataset(NPZConfig(path="part3.npz")) is loaded[3]  # the latest stays
    assert ds.load_dataset(NPZConfig(path="part0.npz")) is not loaded[0]  # read again
    monkeypatch.setenv("SCION_WORKER_DATA_CACHE_MB", "0")
    get_settings.cache_clear()
    ds.clear_cache()
    assert ds.load_dataset(NPZConfig(path="part1.npz")) is not ds.load_dataset(NPZConfig(path="part1.npz"))
    assert not ds._cache
    monkeypatch.delenv("SCION_WORKER_DATA_CACHE_MB")
    get_settings.cache_clear()
    ds.clear_cache()  # the default size again, for the tests after this one


# ---------------------------------------------------------------------------------- data that expands
# Small files that declare large data (a compressed npz, a few tiny images resized to 1024 pixels, a
# CIFAR pickle that builds arrays of any shape) are sized before anything is allocated and refused
# above SCION_MAX_DATASET_MB, at submission and again in the worker, which allocates next to nothing
# on the way (issue 16, item 4).

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
    # 2 GiB of float64 from 69 bytes
    "ndarray(shape)": (lambda: pickle.dumps({"data": NdarrayOfShape((87_382, 3072)), "labels": []}, protocol=2),
                       "numpy arrays are allowed in a CIFAR file only as numpy pickles them"),
    # 100 MiB of bytes from a 1 MiB file
    "one string encoded 100 times": (lambda: encode_again_and_again(MIB, 100),
                                     "its arrays and strings hold more bytes than the file could"),
    # 153 MiB of int64 labels from 54 KiB
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
    assert peak < 4 * len(payload) + 8 * MIB, f"{peak / MIB:.1f} MiB allocated reading a {len(payload):,}-byte file"
    assert isinstance(raised, TrialFailed), raised
    assert "cifar10 file 'c10/data_batch_1'" in str(raised) and message in str(raised), raised


def test_ordinary_cifar_pickles_still_load_whatever_their_protocol(root: Path) -> None:
    written = write_cifar(root / "c10", per_batch=300, n_test=20)  # arrays over 1000 bytes: numpy keeps the file's
    batch = {"data": written["data_batch_2"], "labels": list(np.arange(300) % 10), "filenames": ["a.png"] * 300}
    (root / "c10" / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=4))  # numpy ints, protocol 4 bytes
    d = ds.load_dataset(CIFAR10Config(path="c10", normalise=False))
    assert (len(d.y_train) + len(d.y_val), len(d.y_test)) == (1500, 20)
    kept = {r.tobytes() for r in d.x_train.astype(np.uint8).reshape(len(d.x_train), -1)}
    assert {r.tobytes() for r in written["data_batch_2"]} & kept


def test_loading_tiny_images_resized_large_peaks_near_their_counted_size(root: Path) -> None:
    for i in range(10):
        write_png(root / "pets" / ("cat" if i % 2 else "dog") / f"{i}.png", (2, 2), 20 * i)
    counted = 10 * (3 * 1024 * 1024 * 4 + 8)  # 120 MiB: what SCION_MAX_DATASET_MB is compared with
    _, peak = peak_while(lambda: ds.load_dataset(ImageFolderConfig(path="pets", size=1024)))
    # the images (uint8), their split copies, the float32 result and statistics in 16 MiB chunks: 2.5 x
    # here (1.7 x at 100 images); the statistics were whole float64 copies: 4.3 x (and 4.3 x)
    assert peak < 3 * counted, f"{peak / MIB:.0f} MiB at the peak, for {counted / MIB:.0f} MiB counted"
