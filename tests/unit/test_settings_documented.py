"""Every setting a user may set is listed in the README, by its environment variable."""
from __future__ import annotations

import re

from scion.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [f"SCION_{name.upper()}" for name in Settings.model_fields
               if not re.search(rf"`SCION_{name.upper()}(?![A-Z_])", readme)]
    assert not missing, f"README.md does not list {', '.join(missing)}"
