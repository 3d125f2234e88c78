"""PNAS-style progressive, predictor-ranked sampling.

Liu, Zoph, Neumann, Shlens, Hua, Li, Fei-Fei, Yuille, Huang & Murphy, "Progressive Neural
Architecture Search", ECCV 2018.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.strategies.base import Proposal
from scheduler.strategies.surrogate import PredictorStrategy
from scion.configs.strategies import PNASConfig


class PNAS(PredictorStrategy):
    """Progressive, predictor-ranked sampling after PNAS (Liu et al., ECCV 2018).

    PNAS grows cells one block at a time: at each level it expands the K best cells of the
    previous level in every possible way, ranks the expansions with a learned predictor (an
    ensemble, scored by its mean), trains only the K best-ranked, and refits the predictor on
    everything trained so far. In a space of fixed size the analogue of "expanding" a good cell is
    editing it, so a round here is:

    1. refit the surrogate (the ensemble of ``surrogate.py``, the same as BANANAS') on every
       result so far;
    2. score ``pool_size`` unseen candidates: ``expand_fraction`` of them single-edit mutations of
       the ``top_k`` best results (the beam), the rest fresh random samples;
    3. queue the ``top_k`` candidates with the best predicted mean, and propose them one per ask.

    A new round starts when the queue is empty, with whatever results have arrived by then (trials
    still running are excluded from the pool), so parallel workers never wait for a whole round.
    The first ``initial_samples`` asks are random, like PNAS's exhaustively trained first level.

    Use it when you want the predictor's ranking without BANANAS' per-ask cost (one fit per round
    of ``top_k``): it exploits the predictor's mean only, so it explores less than BANANAS and
    can commit early to one region.
    """

    Config = PNASConfig
    config: PNASConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        self.queue: list[Any] = []  # this round's ranked candidates not yet proposed
        self.rounds = 0

    def ask(self) -> Proposal | None:
        cfg = self.config
        if self.asked < cfg.initial_samples or len(self.results) < 2:
            return self.propose_random()
        while True:
            while self.queue:
                arch = self.queue.pop(0)
                key = self.key(arch)
                if key not in self.seen:
                    return self.propose(arch, key)
            if not self._new_round():
                return self.propose_random()

    def _new_round(self) -> bool:
        cfg = self.config
        expansions = int(round(cfg.pool_size * cfg.expand_fraction))
        parents = min(cfg.top_k, len(self.results))
        pool, keys = self.candidate_pool(
            self.ranked(), parents=parents, mutations=-(-expansions // parents) if parents else 0,
            neighbours_of=0, random=cfg.pool_size - expansions, max_edits=1,
        )
        if not pool:
            return False
        model = self.model()
        assert model is not None
        mean, _ = model.predict(self.encode(pool, keys))
        order = np.argsort(-mean, kind="stable")[: cfg.top_k]
        self.queue = [pool[i] for i in order]
        self.rounds += 1
        return True

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "queue": self.queue, "rounds": self.rounds}

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self.queue = list(state["queue"])
        self.rounds = int(state["rounds"])
