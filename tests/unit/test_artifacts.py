"""Every search space's networks export: build, train one (short) epoch with the real trainer, checkpoint
it the way a worker does, export with the worker's exporter into the artifact store and check that the ONNX model
(onnxruntime), the TorchScript module and the state_dict all predict what the trained network
predicts, at a batch size other than the one traced."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spaces import SPACES
from storage import artifacts
from tests.contract.test_spaces import SMALL
from worker import export as exporter
from worker.training.datasets import DATASETS, load_dataset
from worker.training.trainer import train

pytestmark = pytest.mark.timeout(300)

DATASET_FOR: dict[str, dict[str, Any]] = {"conv1d": {"type": "mnist1d", "num_samples": 1000}}


@pytest.mark.parametrize("name", SPACES.names())
def test_a_trained_network_of_every_space_exports_to_every_format(name: str, tmp_path: Path) -> None:
    space_config = SPACES[name].config(**SMALL.get(name, {}))
    assert_exports_match(space_config, DATASET_FOR.get(name, {"type": "digits"}), tmp_path)


def assert_exports_match(space_config: Any, dataset: dict[str, Any], tmp_path: Path) -> None:
    """Train a sampled network of the space one short epoch, checkpoint and export it as the
    service does, and check that every format predicts what the trained network predicts."""
    import onnxruntime as ort

    name = space_config.type
    spec = {"space": space_config.model_dump(mode="json"), "evaluator": {"type": "train", "dataset": dataset}}
    space = SPACES[name].factory(space_config)
    arch = space.sample(np.random.default_rng(1))
    data = load_dataset(DATASETS[dataset["type"]].config.model_validate(dataset))
    assert exporter.signature(spec) == (tuple(data.input_shape), data.num_classes)

    torch.manual_seed(0)
    model = space.build(arch, data.input_shape, data.num_classes)
    checkpoint = artifacts.checkpoint_path(1, 0, root=tmp_path)
    short = dataclasses.replace(data, x_train=data.x_train[:256], y_train=data.y_train[:256])  # 2 CPU cores
    train(model, short, epochs=1, batch_size=64, lr=0.05, checkpoint=checkpoint)
    model.eval()
    x = np.array(data.x_test[:37])  # not the traced batch size
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()

    paths = {fmt: exporter.export(spec, 1, 0, arch, fmt, root=tmp_path) for fmt in artifacts.FORMATS}
    fresh = space.build(arch, data.input_shape, data.num_classes).eval()
    fresh.load_state_dict(torch.load(paths["state_dict"], weights_only=True))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(paths["torchscript"]))
        got = {"state_dict": fresh(torch.from_numpy(x)).numpy(), "torchscript": scripted(torch.from_numpy(x)).numpy()}
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    got["onnx"] = session.run(["logits"], {"input": x})[0]
    for fmt, logits in got.items():
        np.testing.assert_allclose(logits, expected, atol=1e-4, err_msg=f"{name} {fmt}")
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"]


def test_formats_and_api_literal_agree() -> None:
    from api.routes.artifacts import Format

    assert set(Format.__args__) == set(artifacts.FORMATS)


def test_a_network_trained_on_a_file_dataset_exports_once_its_files_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file dataset's input shape is known only from its files: the architecture record has
    none until an export has read them (and recorded it); a missing file is an ExportFailed."""
    from scion.settings import get_settings

    data_root = tmp_path / "data"
    data_root.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data_root / "toy.npz", x=rng.normal(size=(60, 2, 6, 6)).astype(np.float32), y=np.arange(60) % 3)
    monkeypatch.setenv("SCION_DATA_ROOTS", str(data_root))
    get_settings.cache_clear()
    try:
        space_config = SPACES["nb201"].config(**SMALL["nb201"])
        dataset = DATASETS["npz"].config.model_validate({"type": "npz", "path": str(data_root / "toy.npz")})
        spec = {"space": space_config.model_dump(mode="json"),
                "evaluator": {"type": "train", "dataset": dataset.model_dump(mode="json")}}
        arch = ["nor_conv_3x3"] * 6
        assert artifacts.recorded_signature(1, 0, root=tmp_path) is None

        model = SPACES["nb201"].factory(space_config).build(arch, (2, 6, 6), 3)
        checkpoint = artifacts.checkpoint_path(1, 0, root=tmp_path)
        checkpoint.parent.mkdir(parents=True)
        torch.save({"model": model.state_dict(), "epoch": 0}, checkpoint)
        onnx_path = exporter.export(spec, 1, 0, arch, "onnx", root=tmp_path)
        assert artifacts.recorded_signature(1, 0, root=tmp_path) == ((2, 6, 6), 3) and onnx_path.stat().st_size > 0
        record = artifacts.read_json(artifacts.record_path(1, 0, root=tmp_path))
        assert record["arch"] == arch and record["space"] == spec["space"] and record["dataset"]["type"] == "npz"

        (data_root / "toy.npz").unlink()
        with pytest.raises(exporter.ExportFailed, match="readable by the worker"):
            exporter.export(spec, 1, 0, arch, "torchscript", root=tmp_path)
    finally:
        get_settings.cache_clear()
