"""Tree-structured Parzen Estimator, through Optuna's ``TPESampler`` and its ask-and-tell API.

Bergstra, Bardenet, Bengio & Kégl, "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011;
Falkner, Klein & Hutter, "BOHB", ICML 2018 (the multivariate kernel); Watanabe, "Tree-Structured
Parzen Estimator: Understanding Its Algorithm Components...", 2023; Akiba et al., "Optuna",
KDD 2019.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scion.configs.strategies import TPEConfig

_STATES = ("RUNNING", "COMPLETE", "FAIL")


_FIXED_SPACE_TPE: Any = None


def _optuna() -> Any:
    """Optuna, imported on first use (the API process never needs it) and kept quiet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _fixed_space_tpe() -> Any:
    """``TPESampler`` told the search space up front.

    Optuna infers a multivariate search space as the intersection of the finished trials'
    distributions and caches it inside the sampler; since every ask here builds a fresh sampler
    (see ``TPE``), that inference would rescan every trial on every ask. The space of a job never
    changes, so the sampler is given it instead: the same result, without the rescan.
    """
    global _FIXED_SPACE_TPE
    if _FIXED_SPACE_TPE is None:
        optuna = _optuna()

        class FixedSpaceTPESampler(optuna.samplers.TPESampler):
            def __init__(self, search_space: dict[str, Any], **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self._fixed_space = {n: d for n, d in search_space.items() if not d.single()}

            def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
                return dict(self._fixed_space) if self._multivariate else {}

        _FIXED_SPACE_TPE = FixedSpaceTPESampler
    return _FIXED_SPACE_TPE


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


class TPE(Strategy):
    """Optuna's TPE sampler (Bergstra et al., NeurIPS 2011; multivariate as in BOHB, Falkner et
    al., ICML 2018) driven through the ask-and-tell interface, as a well-kept library baseline
    rather than a re-implementation.

    Each decision of the space is one ``suggest_categorical``. Trials that are asked but not yet
    told stay RUNNING in the study and, with ``constant_liar``, count as bad results, so a batch
    of asks made while workers are busy spreads out instead of repeating itself. Failed trials
    are told as FAIL and ignored by the model. An ask whose architecture was already proposed is
    told FAIL and asked again (up to ``max_resample`` times), then replaced by an unseen
    neighbour, so no architecture is evaluated twice.

    Use it as the standard Bayesian-optimisation baseline over categorical choices, or when a
    job mixes architecture decisions that behave like hyper-parameters; it is cheap (no neural
    surrogate) and robust, but models decisions through a kernel on each option, not through the
    graph structure, so the predictor-guided strategies usually beat it on cell spaces.

    State and determinism: the state is the list of every Optuna trial in ask order (choice
    indices, value or None, state) plus a base seed drawn from the job's generator. A restore
    rebuilds the in-memory study with ``study.add_trial(create_trial(...))`` for every trial,
    RUNNING ones included, so trial numbers line up. Optuna's sampler keeps a random state of its
    own that the study does not persist, so instead of carrying it, every ask uses a fresh
    ``TPESampler`` seeded from (base seed, number of trials so far): the same history always
    gives the same next ask, in the original and in a restored instance alike.
    """

    Config = TPEConfig

    def __init__(self, space, config, rng) -> None:
        super().__init__(space, config, rng)
        optuna = _optuna()
        self._optuna = optuna
        self.decisions = [(name, tuple(options)) for name, options in space.decisions()]
        self.distributions = {
            name: optuna.distributions.CategoricalDistribution(options)
            for name, options in self.decisions
        }
        self.base_seed = int(rng.integers(0, 2**31 - 1))
        # Every Optuna trial in ask order: [choice indices, value or None, state name].
        self.records: list[list[Any]] = []
        self.pending: dict[str, int] = {}  # arch key -> Optuna trial number, asked and not told
        self.seen: set[str] = set()
        self.study = self._new_study()

    # -- Optuna plumbing -------------------------------------------------------------------------

    def _new_study(self) -> Any:
        return self._optuna.create_study(direction="maximize", sampler=self._sampler())

    def _sampler(self) -> Any:
        cfg = self.config
        seed = int(np.random.SeedSequence([self.base_seed, len(self.records)]).generate_state(1)[0])
        extra = {}
        if _version(self._optuna.__version__) < (4, 9):  # deprecated (and quiet) from 4.9 on
            extra["warn_independent_sampling"] = False
        return _fixed_space_tpe()(
            self.distributions,
            n_startup_trials=cfg.n_startup_trials,
            n_ei_candidates=cfg.n_ei_candidates,
            multivariate=cfg.multivariate,
            constant_liar=cfg.constant_liar,
            seed=seed,
            **extra,
        )

    def _params(self, choices: list[int]) -> dict[str, Any]:
        return {name: options[c] for (name, options), c in zip(self.decisions, choices)}

    def _add(self, choices: list[int], value: float | None, state: str) -> int:
        """Add a trial that Optuna did not sample (a restore, a fallback, a foreign result)."""
        optuna = self._optuna
        trial = optuna.trial.create_trial(
            params=self._params(choices),
            distributions=self.distributions,
            value=value,
            state=getattr(optuna.trial.TrialState, state),
        )
        self.study.add_trial(trial)
        self.records.append([list(choices), value, state])
        return len(self.records) - 1

    # -- asking ----------------------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        space = self.space
        arch = None
        for _ in range(self.config.max_resample):
            self.study.sampler = self._sampler()
            trial = self.study.ask()
            choices = [
                options.index(trial.suggest_categorical(name, options))
                for name, options in self.decisions
            ]
            self.records.append([choices, None, "RUNNING"])
            assert trial.number == len(self.records) - 1
            arch = space.from_choices(choices)
            key = space.key(arch)
            if key not in self.seen:
                self.seen.add(key)
                self.pending[key] = trial.number
                return Proposal(arch)
            # A repeat: worthless to evaluate, and invisible to the model once failed.
            self.study.tell(trial.number, state=self._optuna.trial.TrialState.FAIL)
            self.records[-1][2] = "FAIL"
        pick = self._unseen_near(arch)
        if pick is None:
            return None
        key = space.key(pick)
        self.seen.add(key)
        self.pending[key] = self._add(space.to_choices(pick), None, "RUNNING")
        return Proposal(pick)

    def _unseen_near(self, arch: Any) -> Any | None:
        """An unseen neighbour of ``arch`` (TPE's repeated favourite), else a random unseen one."""
        space = self.space
        candidates = [n for n in space.neighbours(arch) if space.key(n) not in self.seen]
        if candidates:
            return candidates[int(self.rng.integers(len(candidates)))]
        last = None
        for _ in range(1000):
            last = space.sample(self.rng)
            if space.key(last) not in self.seen:
                return last
        size = space.size()
        return None if size is not None and len(self.seen) >= size else last

    # -- telling ---------------------------------------------------------------------------------

    def tell(self, result: TrialResult) -> None:
        space = self.space
        key = space.key(result.arch)
        self.seen.add(key)
        value = result.score
        if value is not None and not math.isfinite(value):
            value = None
        number = self.pending.pop(key, None)
        if number is None:  # a result this instance did not ask for: still worth learning from
            if value is not None:
                self._add(space.to_choices(result.arch), float(value), "COMPLETE")
            return
        TrialState = self._optuna.trial.TrialState
        if value is None:
            self.study.tell(number, state=TrialState.FAIL)
            self.records[number][1:] = [None, "FAIL"]
        else:
            self.study.tell(number, float(value))
            self.records[number][1:] = [float(value), "COMPLETE"]

    # -- state -----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "base_seed": self.base_seed,
            "trials": [[list(c), v, s] for c, v, s in self.records],
            "seen": sorted(self.seen),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.base_seed = int(state["base_seed"])
        self.records = []
        self.pending = {}
        self.study = self._new_study()
        for choices, value, trial_state in state["trials"]:
            if trial_state not in _STATES:
                raise ValueError(f"unknown TPE trial state {trial_state!r}")
            number = self._add(choices, value, trial_state)
            if trial_state == "RUNNING":
                self.pending[self.space.key(self.space.from_choices(choices))] = number
        self.seen = set(state["seen"])
