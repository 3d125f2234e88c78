"""One-shot (weight-sharing) NAS on the worker: the methods that train a supernet in one long
trial (phase ``supernet``). Each method is a ``Method`` (``method.py``) run by the one epoch loop
with its per-epoch checkpoint (``epochs.py``) on the one data split (``data.py``); the
evaluators ``worker/evaluators/supernet.py`` and ``inherited.py`` use them."""
from __future__ import annotations

from worker.one_shot.darts import DARTS
from worker.one_shot.enas import ENAS
from worker.one_shot.method import Method
from worker.one_shot.spos import SPOS

METHODS: dict[str, type[Method]] = {"spos": SPOS, "darts": DARTS, "enas": ENAS}

__all__ = ["DARTS", "ENAS", "METHODS", "SPOS", "Method"]
