"""Where files named in a job spec may come from: only under the configured data roots.

A job spec names dataset files and benchmark tables by path; the API checks them at submission
and every worker resolves them again on its own machine. A path is taken as given when absolute;
a relative one is looked for from the working directory first, then under each data root in
order (so ``path: cifar-10-batches-py`` finds ``<root>/cifar-10-batches-py`` on every machine).
Whatever it names, after symlinks are resolved it must lie under one of ``Settings.data_roots``
(``SCION_DATA_ROOTS``): a job cannot make the service read arbitrary files. Paths outside every
root are refused without saying whether they exist.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scion.settings import get_settings


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
        raise DataPathError(f"{what} is empty; give a path under one of the data roots ({_list(roots)})")
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
        where = str(looked[0]) if len(looked) == 1 else "any of " + ", ".join(map(str, looked))
        raise DataPathError(f"{what} {text!r} does not exist (looked for {where})")
    raise DataPathError(
        f"{what} {text!r} is outside the data roots ({_list(roots)}); move the data under one of them "
        "or add its directory to SCION_DATA_ROOTS"
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


def _list(roots: Sequence[Path]) -> str:
    return ", ".join(map(str, roots)) or "none configured"


__all__ = ["DataPathError", "confined", "data_roots", "resolve_data_path"]
