"""A job's strategy answers its asks aside, so that one job's thinking never stalls the others.

A scheduler drives all its jobs from one loop, a pass per job in turn. Most strategies answer an
ask in microseconds, but a predictor-guided one (BANANAS, PNAS) fits an ensemble of networks for
an ask or a round, and at the largest sizes a spec may set (docs/security.md) a fit takes tens of
seconds: run in the pass, it would hold every other job of the scheduler, whoever owns it, for as
long. So a pass hands the job's asks to a thread of the job's own and waits for their answers at
most ``scheduler_aside_seconds``: a strategy that answers by then is served in the same pass, as
always; one still thinking is left to it, and the loop goes on with the job's other work (reaping,
stopping, sending) and the other jobs. While its asks run, the job's strategy is the thread's
alone: its passes neither tell it nor relay reports to it nor save it, and the first pass after
the asks end writes their trials with the logged calls, in one transaction as before.

A thread, not a process: the fits are NumPy products, which release the GIL, so they run beside
the loop on another core, and the strategy stays where its calls are logged and saved
(docs/benchmarks.md compares this with a time budget per pass). With ``scheduler_aside_seconds``
0 the asks run in the pass itself, however long they take.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class Aside(Generic[T]):
    """One job's: the asks it has running aside, if any (one batch at a time)."""

    def __init__(self, wait_seconds: float, name: str) -> None:
        self.wait_seconds, self.name = wait_seconds, name
        self._future: Future[T] | None = None

    @property
    def held(self) -> bool:
        """The strategy is the thread's: asks are running, or have ended and are not yet taken."""
        return self._future is not None

    @property
    def ready(self) -> bool:
        """Asks ran aside and ended: the next pass takes their answers."""
        return self._future is not None and self._future.done()

    def run(self, work: Callable[[], T]) -> T | None:
        """``work``'s answer if it comes within ``wait_seconds`` (at once with 0: run here), else
        None: it goes on aside, and ``take`` gives its answer once ``ready``."""
        if self.wait_seconds <= 0:
            return work()
        future: Future[T] = Future()

        def target() -> None:
            try:
                future.set_result(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the pass that takes it
                future.set_exception(exc)

        self._future = future
        threading.Thread(target=target, name=self.name, daemon=True).start()
        try:
            future.exception(timeout=self.wait_seconds)
        except TimeoutError:
            return None
        return self.take()

    def take(self) -> T:
        """The answer of the asks that ended aside (their error, raised here, fails the pass)."""
        future, self._future = self._future, None
        assert future is not None and future.done()
        return future.result()
