"""What the API is asked over and over, kept in memory for a moment (``api_cache_seconds``).

Two things are kept this way: whether a token is live (api/deps.py) and the reads clients poll
(api/poll_cache.py). Each is asked for far more often than it changes, and often by many requests
at once: fifty users polling one job, with one token. So a value is computed once at a time per
key, and the requests arriving meanwhile share that computation's outcome; it is kept for ``ttl``
seconds counted from when its computation began, never longer; and once it is half that old, the
next request for it has it computed afresh in the background and is answered meanwhile from the
one kept, so that a key asked for steadily is never waited for.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Kept(Generic[V]):
    value: V
    expires: float  # monotonic
    renew_after: float


class Kept(Generic[K, V]):
    """``limit`` values at most, the least recently computed dropped first; ``renewing_at_most``
    background computations at once (each may hold a database connection)."""

    def __init__(self, limit: int, renewing_at_most: int = 4) -> None:
        self.limit, self.renewing_at_most = limit, renewing_at_most
        self._kept: OrderedDict[K, _Kept[V]] = OrderedDict()
        self._computing: dict[K, asyncio.Future[V | None]] = {}
        self._renewing: set[asyncio.Task] = set()

    async def get(self, key: K, ttl: float, compute: Callable[[bool], Awaitable[V | None]]) -> V | None:
        """The value kept for ``key`` if it is younger than ``ttl``; else the outcome (value or
        exception) of the computation of it under way, or of ``compute(False)`` run now.
        ``compute(in_background)`` returns None for an outcome not to keep nor share: each request
        that waited for it then runs its own, which is not kept either. A value half ``ttl`` old
        is returned as it is, and ``compute(True)`` renews it in the background."""
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and kept.expires > now:
            if (now >= kept.renew_after and key not in self._computing
                    and len(self._renewing) < self.renewing_at_most):
                task = asyncio.create_task(self._renew(key, ttl, compute))
                self._renewing.add(task)
                task.add_done_callback(self._renewing.discard)
            return kept.value
        if key in self._computing:
            shared = await asyncio.shield(self._computing[key])
            return shared if shared is not None else await compute(False)
        return await self._compute(key, ttl, compute, in_background=False)

    def forget(self, stale: Callable[[K], bool]) -> None:
        """Drop the values whose key ``stale`` picks (a write made them wrong)."""
        for key in [key for key in self._kept if stale(key)]:
            del self._kept[key]

    async def _renew(self, key: K, ttl: float, compute: Callable[[bool], Awaitable[V | None]]) -> None:
        if key in self._computing:  # another request asked for the same renewal before this task ran
            return
        try:
            await self._compute(key, ttl, compute, in_background=True)
        except Exception:  # nothing renewed: the first request past the value's time computes it
            log.debug("renewing %r failed", key, exc_info=True)

    async def _compute(self, key: K, ttl: float, compute: Callable[[bool], Awaitable[V | None]], *,
                       in_background: bool) -> V | None:
        computing = self._computing[key] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        try:
            value = await compute(in_background)
        except asyncio.CancelledError:  # this request's own end (its client left): the others run theirs
            computing.set_result(None)
            raise
        except BaseException as exc:
            computing.set_exception(exc)
            computing.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            computing.set_result(value)
            if value is not None:
                self._kept[key] = _Kept(value, started + ttl, started + ttl / 2)
                self._kept.move_to_end(key)
                if len(self._kept) > self.limit:
                    self._kept.popitem(last=False)
            return value
        finally:
            del self._computing[key]
