"""Local search (hill climbing with random restarts) over the space's ``neighbours``.

White, Nolen, Savani & Bhatt, "Exploring the Loss Landscape in Neural Architecture Search"
(UAI 2021; first circulated as "Local Search is State of the Art for Neural Architecture Search
Benchmarks", 2020).
"""
from __future__ import annotations

from typing import Any

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.dedup import propose_unseen
from scion.configs.strategies import LocalSearchConfig


class LocalSearch(Strategy):
    """Hill climbing over ``space.neighbours`` with random restarts (White et al., UAI 2021,
    "Exploring the Loss Landscape in Neural Architecture Search", who found this simple method
    as good as or better than the sophisticated ones on NAS-Bench-101/201 at moderate budgets).

    Start from the best of ``initial_samples`` random architectures (the centre), evaluate its
    neighbours in random order, and move to a better one as soon as it appears
    (``first_improvement``) or to the best once the whole neighbourhood is known. When every
    neighbour is known and none beats the centre, the centre is a local optimum: restart from
    the best of ``initial_samples`` fresh random architectures. Results already known are used
    without re-evaluation, so moving to an architecture whose better neighbour was seen earlier
    moves on at once.

    Use it on spaces with a small neighbourhood and a smooth landscape (cell spaces such as
    NAS-Bench-201, where a neighbourhood is 24 cells), when you want a strong, transparent
    baseline with no hyper-parameters to speak of. It is less suited to very large
    neighbourhoods or many parallel workers, where evolution or a surrogate spend evaluations
    better.

    Asynchronous: while results are outstanding each ask takes the next unevaluated neighbour of
    the centre; if the centre's neighbourhood is all asked, unevaluated neighbours of the best
    known architectures; an architecture is never proposed twice while unseen ones remain.
    """

    Config = LocalSearchConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.seen: set[str] = set()  # every key ever proposed (or told)
        self.results: dict[str, tuple[Any, float | None]] = {}  # key -> (arch, score); None = failed
        self.centre: tuple[Any, float] | None = None  # (arch, score)
        self.queue: list[Any] = []  # the centre's neighbours not yet proposed, in proposal order
        self.restart_keys: list[str] = []  # random architectures proposed since the last (re)start
        self.restart_pool: list[tuple[Any, float]] = []  # their successful results so far
        self.restarts = 0

    # -- asking ----------------------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        arch = self._propose()
        return None if arch is None else Proposal(arch)

    def _propose(self) -> Any | None:
        space = self.space
        if self.centre is None:
            arch = self._random()
            if arch is not None:
                self.restart_keys.append(space.key(arch))
            return arch
        while self.queue:
            arch = self.queue.pop(0)
            key = space.key(arch)
            if key not in self.seen:
                self.seen.add(key)
                return arch
        # The centre's neighbourhood is all proposed and some of it still running: meanwhile,
        # explore around the best architectures known, best first.
        for arch, _ in self._ranked():
            candidates = [n for n in space.neighbours(arch) if space.key(n) not in self.seen]
            if candidates:
                pick = candidates[int(self.rng.integers(len(candidates)))]
                self.seen.add(space.key(pick))
                return pick
        return self._random()

    def _random(self) -> Any | None:
        return propose_unseen(self.space, self.seen, lambda: self.space.sample(self.rng),
                              self.config.max_resample)

    def _ranked(self) -> list[tuple[Any, float]]:
        done = [(a, s) for a, s in self.results.values() if s is not None]
        done.sort(key=lambda item: -item[1])
        return done

    # -- telling ---------------------------------------------------------------------------------

    def tell(self, result: TrialResult) -> None:
        key = self.space.key(result.arch)
        self.seen.add(key)
        self.results[key] = (result.arch, result.score)
        if self.centre is None:
            if key in self.restart_keys and result.score is not None:
                self.restart_pool.append((result.arch, result.score))
            all_back = all(k in self.results for k in self.restart_keys)
            enough = len(self.restart_pool) >= self.config.initial_samples
            if self.restart_pool and (enough or (len(self.restart_keys) >= self.config.initial_samples and all_back)):
                self._move_to(max(self.restart_pool, key=lambda item: item[1]))
            return
        if result.score is not None and result.score > self.centre[1] and self.config.first_improvement:
            self._move_to((result.arch, result.score))
            return
        self._check_neighbourhood()

    def _move_to(self, member: tuple[Any, float]) -> None:
        """Make ``member`` the centre, following already-known better neighbours at once."""
        space = self.space
        while True:
            arch, score = member
            known = [self.results[k] for k in map(space.key, space.neighbours(arch)) if k in self.results]
            better = [(a, s) for a, s in known if s is not None and s > score]
            if not better:
                break
            member = max(better, key=lambda item: item[1])  # known results are free: take the best
        self.centre = (member[0], member[1])
        self.restart_pool = []
        self.restart_keys = []
        queue = [n for n in space.neighbours(member[0]) if space.key(n) not in self.seen]
        order = self.rng.permutation(len(queue))
        self.queue = [queue[int(i)] for i in order]
        self._check_neighbourhood()

    def _check_neighbourhood(self) -> None:
        """When the centre's whole neighbourhood is known: move to the best neighbour if it
        beats the centre, else restart (a local optimum)."""
        if self.centre is None or self.queue:
            return
        space = self.space
        arch, score = self.centre
        members = []
        for n in space.neighbours(arch):
            key = space.key(n)
            if key not in self.results:
                return  # still being evaluated (or proposed elsewhere and not back yet)
            members.append(self.results[key])
        scored = [(a, s) for a, s in members if s is not None]
        best = max(scored, key=lambda item: item[1]) if scored else None
        if best is not None and best[1] > score:
            self._move_to(best)
        else:
            self._restart()

    def _restart(self) -> None:
        self.centre = None
        self.queue = []
        self.restart_pool = []
        self.restart_keys = []
        self.restarts += 1

    # -- state -----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "seen": sorted(self.seen),
            "results": [[arch, score] for arch, score in self.results.values()],
            "centre": None if self.centre is None else list(self.centre),
            "queue": self.queue,
            "restart_keys": self.restart_keys,
            "restart_pool": [list(m) for m in self.restart_pool],
            "restarts": self.restarts,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        space = self.space
        self.seen = set(state["seen"])
        self.results = {space.key(arch): (arch, score) for arch, score in state["results"]}
        self.centre = None if state["centre"] is None else (state["centre"][0], state["centre"][1])
        self.queue = list(state["queue"])
        self.restart_keys = list(state["restart_keys"])
        self.restart_pool = [(a, s) for a, s in state["restart_pool"]]
        self.restarts = state["restarts"]
