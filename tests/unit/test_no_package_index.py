"""Packages come from wherever pip is configured to take them (a mirror, a proxy, an offline
wheelhouse): no file of the repository names a package index, so no build or install goes around
that configuration (the Dockerfile takes PIP_INDEX_URL as a build argument, without a default)."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO

INDEX = re.compile(r"pypi\.org|pypi\.python\.org|pythonhosted\.org|download\.pytorch\.org|index-url\s*[=\s]\s*\S*://",
                   re.IGNORECASE)


def test_no_tracked_file_names_a_package_index() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    named = []
    for name in filter(None, tracked.decode().split("\0")):
        path = REPO / name
        if path.suffix in {".png", ".jpg", ".ico"} or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if INDEX.search(line):
                named.append(f"{name}:{number}: {line.strip()}")
    assert not named, "package index named in:\n" + "\n".join(named)
