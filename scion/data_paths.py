"""Where files named in a job spec may come from: only under the configured data roots.

A job spec names dataset files and benchmark tables by path; the API checks them at submission
and every worker resolves them again on its own machine. A path is taken as given when absolute;
a relative one is looked for from the working directory first, then under each data root in
order (so ``path: cifar-10-batches-py`` finds ``<root>/cifar-10-batches-py`` on every machine).
Whatever it names, after symlinks are resolved it must lie under one of ``Settings.data_roots``
(``SCION_DATA_ROOTS``): a job cannot make the service read arbitrary files. Paths outside every
root are refused without saying whether they exist.

What a user is told names the path as their spec wrote it, or a file relative to its data root
(``user_path``), never where the roots lie on the server's disk: that goes to this process's log.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from scion.settings import get_settings

log = logging.getLogger(__name__)


class DataPathError(ValueError):
    """A path named in a job spec that is missing, malformed or outside the data roots.

    A ValueError, so that raised inside a pydantic validator it becomes a 422 naming the field."""


def data_roots() -> list[Path]:
    """This process's data roots, absolute, symlinks resolved."""
    return get_settings().resolved_data_roots()


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_data_path(path: str | Path, *, what: str = "path", roots: Sequence[Path] | None = None) -> Path:
    """The absolute, symlink-free path that ``path`` names, which exists and lies under a data root.

    Raises DataPathError naming ``what`` and ``path`` (and the roots, when it lies outside them)."""
    roots = list(roots) if roots is not None else data_roots()
    text = str(path)
    if not text.strip():
        raise DataPathError(f"{what} is empty; give a path under one of the data roots")
    raw = Path(text).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, *(root / raw for root in roots)]
    looked: list[Path] = []
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory
            raise DataPathError(f"{what} {text!r} cannot be resolved: {exc}") from None
        if not _within(resolved, roots):
            continue
        if resolved.exists():
            return resolved
        if resolved not in looked:
            looked.append(resolved)
    if looked:
        log.info("%s %r does not exist; looked for %s", what, text, ", ".join(map(str, looked)))
        where = "the working directory and " * (not raw.is_absolute()) + f"{len(roots)} data root(s)"
        raise DataPathError(f"{what} {text!r} does not exist (looked under {where})")
    log.info("%s %r is outside the data roots %s", what, text, _list(roots))
    raise DataPathError(
        f"{what} {text!r} is outside the data roots; give a path relative to one of them, or ask the "
        "operator to add its directory to SCION_DATA_ROOTS"
    )


def confined(paths: Sequence[Path], *, what: str, roots: Sequence[Path] | None = None) -> list[Path]:
    """``paths`` found inside a resolved data path (a class folder's images, a CIFAR folder's
    batch files), each resolved: a symlink in the data that leads outside every root is refused,
    so what is opened is what was checked. Raises DataPathError naming ``what`` and the entry."""
    roots = list(roots) if roots is not None else data_roots()
    resolved = []
    for path in paths:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise DataPathError(f"{what}: {path.name!r} cannot be resolved: {exc}") from None
        if not _within(real, roots):
            raise DataPathError(f"{what}: {path.name!r} is a link to outside the data roots; copy its data under "
                                "one of them instead")
        resolved.append(real)
    return resolved


def user_path(path: Path, roots: Sequence[Path] | None = None) -> str:
    """``path`` as a user may see it: relative to the data root it lies under (its name alone
    when it lies under none)."""
    for root in roots if roots is not None else data_roots():
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def _list(roots: Sequence[Path]) -> str:
    return ", ".join(map(str, roots)) or "none configured"


__all__ = ["DataPathError", "confined", "data_roots", "resolve_data_path", "user_path"]
