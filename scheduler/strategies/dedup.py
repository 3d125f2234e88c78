"""Keeping a strategy from spending trials on architectures it already proposed."""
from __future__ import annotations

from collections.abc import Callable

from spaces.base import Arch, SearchSpace


def propose_unseen(space: SearchSpace, seen: set[str], draw: Callable[[], Arch], tries: int) -> Arch | None:
    """Draw until an unseen architecture comes up and mark it seen.

    After ``tries`` repeats, a finite space that is fully seen yields None (nothing left);
    otherwise the last draw is accepted even though it repeats, so a search over a nearly
    exhausted neighbourhood keeps moving.
    """
    arch = None
    for _ in range(tries):
        arch = draw()
        key = space.key(arch)
        if key not in seen:
            seen.add(key)
            return arch
    size = space.size()
    if size is not None and len(seen) >= size:
        return None
    return arch
