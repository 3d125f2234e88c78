"""The GPU benchmark's honesty where there is no GPU, and its reading of nvidia-smi samples."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bench.gpu import parse_samples
from client.cli import app


def test_nvidia_smi_samples_are_read_and_unreported_values_skipped():
    lines = ["35, 1024", "[N/A], 1024", "", "100, 2048", "7"]
    assert parse_samples(lines) == [(35.0, 1024.0), (100.0, 2048.0)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the benchmark measures it")
def test_without_a_gpu_the_benchmark_says_so_and_reports_nothing_measured(tmp_path):
    out = tmp_path / "gpu.json"
    result = CliRunner().invoke(app, ["bench", "gpu", "--json", str(out)])
    assert result.exit_code == 2
    said = " ".join(result.output.split())  # as wrapped to the terminal
    assert "no CUDA GPU" in said and "nothing measured" in said
    report = json.loads(out.read_text())
    assert report["measured"] is False and "no CUDA GPU" in report["reason"] and "results" not in report
