"""The example specs a user copies from: each is a valid job as written, and every search space
has one, so a new space cannot ship without showing how to use it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scion.spec import JobSpec
from spaces import SPACES

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_a_valid_job(path: Path) -> None:
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    assert spec.name and spec.budget.max_trials >= 1


def test_every_space_has_an_example() -> None:
    shown = {yaml.safe_load(p.read_text())["space"]["type"] for p in EXAMPLES}
    assert set(SPACES.names()) <= shown, f"spaces without an example in examples/: {set(SPACES.names()) - shown}"
