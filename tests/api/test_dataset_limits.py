"""A job whose file dataset would take more memory once loaded than SCION_MAX_DATASET_MB allows is
refused at submission (issue 16, item 4): a 422 naming the field, the dataset's size and the limit,
and nothing stored. The real app in a TestClient against a fresh SQLite file."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from scion.settings import get_settings


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's data root, holding its files."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SCION_DATA_ROOTS", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def client(sqlite_env: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SCION_MAX_DATASET_MB", "4")
    get_settings.cache_clear()
    with TestClient(create_app()) as c:
        yield c


def test_a_dataset_over_the_limit_is_refused_naming_field_size_and_limit(client: TestClient, root: Path) -> None:
    np.savez_compressed(root / "big.npz", x=np.zeros((2000, 3, 32, 32), np.uint8), y=np.arange(2000) % 2)
    spec = {"space": {"type": "nb201"}, "strategy": {"type": "random"},
            "evaluator": {"type": "train", "dataset": {"type": "npz", "path": "big.npz"}}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "evaluator.train.dataset.npz", error
    assert "npz path 'big.npz'" in error["message"] and "take 23.5 MiB once loaded" in error["message"] \
        and "limit of 4 MiB (SCION_MAX_DATASET_MB)" in error["message"], error
    assert str(root) not in r.text
    assert client.get("/v1/jobs").json()["total"] == 0

    np.savez_compressed(root / "small.npz", x=np.zeros((200, 3, 32, 32), np.uint8), y=np.arange(200) % 2)
    spec["evaluator"]["dataset"]["path"] = "small.npz"
    assert client.post("/v1/jobs", json=spec).status_code == 201
