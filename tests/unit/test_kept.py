"""What the API keeps in memory (api/kept.py), under requests arriving together: one computation
serves them all, whatever its outcome, and an outcome not to keep leaves each to its own."""
from __future__ import annotations

import asyncio

import pytest

from api.kept import Kept


class Slow:
    """A computation that takes a moment and counts its runs; ``outcome`` is what it gives."""

    def __init__(self, outcome: object) -> None:
        self.outcome, self.runs = outcome, 0

    async def __call__(self, _in_background: bool) -> object:
        self.runs += 1
        await asyncio.sleep(0.05)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def together(kept: Kept, compute: Slow, n: int = 10, ttl: float = 5.0) -> list:
    return await asyncio.gather(*(kept.get("key", ttl, compute) for _ in range(n)), return_exceptions=True)


def test_requests_arriving_together_share_one_computation_and_later_ones_get_it_kept() -> None:
    async def scenario() -> tuple[list, object, int]:
        kept, compute = Kept(limit=8), Slow("value")
        burst = await together(kept, compute)
        return burst, await kept.get("key", 5.0, compute), compute.runs

    burst, later, runs = asyncio.run(scenario())
    assert burst == ["value"] * 10 and later == "value" and runs == 1


def test_a_failure_is_shared_by_the_requests_that_waited_for_it_and_not_kept() -> None:
    async def scenario() -> tuple[list, int]:
        kept, compute = Kept(limit=8), Slow(PermissionError("revoked"))
        burst = await together(kept, compute)
        await together(kept, compute, n=1)
        return burst, compute.runs

    burst, runs = asyncio.run(scenario())
    assert all(isinstance(outcome, PermissionError) for outcome in burst)
    assert runs == 2  # one for the burst, one for the next request: nothing was kept


@pytest.mark.parametrize("leader_cancelled", [False, True])
def test_an_outcome_not_to_keep_or_a_leader_gone_leaves_each_waiting_request_to_compute_its_own(
        leader_cancelled: bool) -> None:
    async def scenario() -> tuple[list, int]:
        kept, compute = Kept(limit=8), Slow("value" if leader_cancelled else None)
        leader = asyncio.create_task(kept.get("key", 5.0, compute))
        await asyncio.sleep(0.01)
        followers = [asyncio.create_task(kept.get("key", 5.0, compute)) for _ in range(3)]
        await asyncio.sleep(0.01)
        if leader_cancelled:
            leader.cancel()
        return await asyncio.gather(*followers), compute.runs

    outcomes, runs = asyncio.run(scenario())
    assert outcomes == (["value"] * 3 if leader_cancelled else [None] * 3)
    assert runs == 4


def test_requests_arriving_together_past_half_its_time_renew_it_once_and_are_not_kept_waiting() -> None:
    async def scenario() -> tuple[list, float, int]:
        kept, compute = Kept(limit=8), Slow("value")
        await kept.get("key", 0.2, compute)
        await asyncio.sleep(0.12)  # past half of its 0.2 s
        started = asyncio.get_running_loop().time()
        burst = await together(kept, compute, ttl=0.2)
        waited = asyncio.get_running_loop().time() - started
        await asyncio.sleep(0.1)  # the renewal finishes
        return burst, waited, compute.runs

    burst, waited, runs = asyncio.run(scenario())
    assert burst == ["value"] * 10 and waited < 0.03
    assert runs == 2  # the first computation and one renewal, not one per request
