"""Performance predictors shared by the predictor-guided strategies (BANANAS, PNAS).

The surrogate is the one of BANANAS (White, Neiswanger & Savani, "BANANAS: Bayesian
Optimization with Neural Architectures for Neural Architecture Search", AAAI 2021): an
ensemble of small fully connected networks over the space's encoding, each member trained from
its own random initialisation on the same data; the mean of the members' predictions is the
estimate and their spread the uncertainty that an acquisition function trades against it. It is
plain numpy (the scheduler never imports torch): all members are trained at once as one batched
network by full-batch Adam, on one BLAS thread, so a fit on a hundred results takes a few
milliseconds and one on 500 well under a second.

- Scores are warped with a Gaussian copula before fitting (the rank of each score through the
  standard normal quantile function; Salinas, Shen & Perrone, "A quantile-based approach for
  hyperparameter transfer learning", ICML 2020). Accuracy tables have a long tail of broken
  architectures (NAS-Bench-201: 10 % to 85 % after 12 epochs); fitted raw, that tail dominates
  the squared error and the few tenths that separate the best cells vanish. Warped, the targets
  are standard normal whatever the dataset, metric or scale, so one set of defaults serves all.
- The ensemble is refitted from scratch every ``refit_every`` results and brought up to date
  in between by a short warm-started fine-tune (``update_epochs``), a fraction of the cost.
- Fits are deterministic given their seed, so a strategy keeps in its state the results and the
  short trail of fits that made its current ensemble, and a restored strategy replays the trail
  to get the very same ensemble back (the weights themselves are never stored).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from scheduler.strategies.base import Proposal, Strategy, TrialResult
from scheduler.strategies.dedup import propose_unseen
from scion.configs.strategies import PredictorConfig
from spaces.base import Arch, SearchSpace

_NORMAL = NormalDist()
_DTYPE = np.float32  # faster than float64 on these small products; plenty for a ranking
_CONTROLLER: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the small matrix products of a fit on one BLAS thread.

    On matrices this small, OpenBLAS' thread pool costs far more than it saves, and on a busy
    machine (the scheduler beside other work, or a benchmark running one process per core) its
    spinning threads make a 10 ms fit take a second. threadpoolctl ships with scikit-learn.
    """
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        limiter = _CONTROLLER.limit(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - threadpoolctl missing or unable: run as is
        yield
        return
    with limiter:
        yield


def ranks(y: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``y`` (ties share the mean of the ranks they span)."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(y, kind="stable")
    result = np.empty(len(y), dtype=np.float64)
    result[order] = np.arange(1, len(y) + 1, dtype=np.float64)
    uniq, inverse = np.unique(y, return_inverse=True)
    if len(uniq) < len(y):
        result = (np.bincount(inverse, weights=result) / np.bincount(inverse))[inverse]
    return result


def copula_warp(y: Sequence[float]) -> np.ndarray:
    """Scores → standard-normal quantiles of their ranks, Φ⁻¹(rank / (n + 1)).

    Monotone, so the order of the scores, the only thing the search is judged by, is kept;
    equal scores get equal targets.
    """
    r = ranks(y)
    n = len(r)
    return np.array([_NORMAL.inv_cdf(v / (n + 1)) for v in r])


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (no scipy needed on the scheduler)."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


@dataclass(frozen=True)
class MLPEnsembleParams:
    members: int = 5
    hidden: int = 32
    layers: int = 2
    epochs: int = 100
    lr: float = 0.01
    weight_decay: float = 1e-4


class MLPEnsemble:
    """``members`` independent MLPs (ReLU, ``layers`` hidden layers of ``hidden`` units), trained
    together by full-batch Adam on the mean squared error.

    All members share the batched weight tensors (member axis first), so a fit is a few dozen
    numpy calls per epoch whatever the ensemble size.
    """

    def __init__(self, params: MLPEnsembleParams, seed: int) -> None:
        self.params = params
        self.seed = int(seed)
        self._weights: list[np.ndarray] = []
        self._flat: np.ndarray | None = None
        self._adam_m = self._adam_v = np.zeros(0, dtype=_DTYPE)
        self._adam_t = 0
        self.x_mean: np.ndarray | None = None

    # -- parameters ------------------------------------------------------------------------

    def _init(self, dim: int, rng: np.random.Generator) -> None:
        p = self.params
        sizes = [dim] + [p.hidden] * p.layers + [1]
        shapes: list[tuple[int, ...]] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            shapes.append((p.members, fan_in, fan_out))
            shapes.append((p.members, 1, fan_out))
        total = sum(int(np.prod(s)) for s in shapes)
        self._flat = np.zeros(total, dtype=_DTYPE)
        self._weights = self._views(self._flat, shapes)
        for w in self._weights:
            if w.shape[1] != 1:  # a weight matrix: He-uniform for the ReLU layers
                bound = np.sqrt(6.0 / w.shape[1])
                w[...] = rng.uniform(-bound, bound, size=w.shape)
        self._adam_m = np.zeros_like(self._flat)
        self._adam_v = np.zeros_like(self._flat)
        self._adam_t = 0

    @staticmethod
    def _views(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        views, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            views.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return views

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """x: (n, d) shared by all members → (members, n) outputs and the hidden activations."""
        acts = []
        h = x
        n_layers = len(self._weights) // 2
        for i in range(n_layers):
            h = np.matmul(h, self._weights[2 * i])
            h += self._weights[2 * i + 1]
            if i < n_layers - 1:
                np.maximum(h, 0.0, out=h)
                acts.append(h)
        return h[:, :, 0], acts

    # -- fitting and prediction ------------------------------------------------------------

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int | None = None,
            warm: bool = False) -> MLPEnsemble:
        """Fit on inputs ``x`` (n, d) and targets ``y`` (n,): ``epochs`` full-batch Adam steps
        (the params' by default) from a fresh initialisation, or with ``warm`` from the current
        weights and optimiser state (to fold new points into a fitted model cheaply)."""
        with single_threaded_blas():
            return self._fit(x, y, epochs=self.params.epochs if epochs is None else epochs, warm=warm)

    def _fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, warm: bool) -> MLPEnsemble:
        p = self.params
        x = np.asarray(x, dtype=_DTYPE)
        y = np.asarray(y, dtype=_DTYPE)
        n, dim = x.shape
        if not warm or self._flat is None:
            self._init(dim, np.random.default_rng(self.seed))
            self.x_mean = x.mean(axis=0)
        xc = x - self.x_mean
        xt = np.ascontiguousarray(xc.T)
        flat, m, v = self._flat, self._adam_m, self._adam_v
        assert flat is not None
        grads_flat = np.zeros_like(flat)
        grads = self._views(grads_flat, [w.shape for w in self._weights])
        tmp = np.empty_like(flat)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        n_layers = len(self._weights) // 2
        target = (y * (2.0 / n))[None, :, None]
        for _ in range(epochs):
            self._adam_t += 1
            t = self._adam_t
            out, acts = self._forward(xc)
            # d (mean squared error) / d out, (members, n, 1)
            d = out[:, :, None] * (2.0 / n)
            d -= target
            for i in range(n_layers - 1, -1, -1):
                if i > 0:
                    np.matmul(acts[i - 1].transpose(0, 2, 1), d, out=grads[2 * i])
                else:
                    np.matmul(xt, d, out=grads[0])
                np.sum(d, axis=1, keepdims=True, out=grads[2 * i + 1])
                if i > 0:
                    d = np.matmul(d, self._weights[2 * i].transpose(0, 2, 1))
                    d *= acts[i - 1] > 0
            if p.weight_decay:
                np.multiply(flat, p.weight_decay, out=tmp)
                grads_flat += tmp
            m *= beta1
            np.multiply(grads_flat, 1 - beta1, out=tmp)
            m += tmp
            v *= beta2
            np.multiply(grads_flat, grads_flat, out=tmp)
            tmp *= 1 - beta2
            v += tmp
            lr = p.lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
            np.sqrt(v, out=tmp)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= lr
            flat -= tmp
        return self

    def copy(self) -> MLPEnsemble:
        """An independent ensemble with the same weights and optimiser state."""
        other = MLPEnsemble(self.params, self.seed)
        if self._flat is not None:
            other._flat = self._flat.copy()
            other._weights = self._views(other._flat, [w.shape for w in self._weights])
            other._adam_m = self._adam_m.copy()
            other._adam_v = self._adam_v.copy()
            other._adam_t = self._adam_t
            other.x_mean = self.x_mean
        return other

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """(members, n) predictions, one row per member."""
        if self._flat is None:
            raise RuntimeError("predict before fit")
        with single_threaded_blas():
            out, _ = self._forward(np.asarray(x, dtype=_DTYPE) - self.x_mean)
        return out.astype(np.float64)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and standard deviation for each row of ``x``."""
        out = self.predict_members(x)
        return out.mean(axis=0), out.std(axis=0)


# -- the part of a predictor-guided strategy that BANANAS and PNAS share ------------------------


_CACHE_LIMIT = 200_000  # memoised keys; neighbourhoods: a hundredth of it
_CACHE_FLOATS = 4_000_000  # memoised encodings, in numbers (32 MB)


_LIST, _DICT = object(), object()  # markers that no JSON value equals


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON architecture value: equal values, equal stand-ins."""
    if isinstance(value, (list, tuple)):
        if all(type(v) is str for v in value):
            return (_LIST, *value)
        return (_LIST, *(_freeze(v) for v in value))
    if isinstance(value, dict):
        return (_DICT, *sorted((str(k), _freeze(v)) for k, v in value.items()))
    return value


class PredictorStrategy(Strategy):
    """What BANANAS and PNAS share: the history of results, the trials still in flight, the
    encodings, candidate pools, and an ensemble brought up to date lazily when results arrive.

    Each proposal and result carries a *tag* (BANANAS' region of the search, 0 for PNAS); the
    surrogate learns from the results tagged ``data_tag`` or later, so a strategy that restarts
    its search in a new region can also start a fresh, local model there.

    The fitted ensemble is never stored: the state keeps the results and the seeds and sizes of
    the fits that made the current ensemble, and a restored strategy replays them (fits are
    deterministic), so it continues with the very same surrogate.
    """

    config: PredictorConfig

    def __init__(self, space: SearchSpace, config: PredictorConfig, rng: np.random.Generator) -> None:
        super().__init__(space, config, rng)
        self.results: list[tuple[Arch, float]] = []  # completed trials with a score, in tell order
        self.tags: list[int] = []  # the tag of each result
        # How many results there were when each result's architecture was asked: a result could
        # only have learnt from results[:known].
        self.known: list[int] = []
        self.pending: dict[str, tuple[Arch, int, int]] = {}  # asked, not told: key → (arch, tag, known)
        self.seen: set[str] = set()  # every key asked or told: never proposed again
        self.asked = 0
        self.tag = 0  # the tag of new proposals
        self.data_tag = 0  # the surrogate learns from results tagged data_tag or later
        # How the current ensemble came about: [data_tag, count, seed] for a fresh fit on the
        # data among the first ``count`` results, then [data_tag, count, None] for each warm
        # update since.
        self._trail: list[list[Any]] = []
        self._model: MLPEnsemble | None = None
        self._encodings: dict[str, np.ndarray] = {}
        self._keys: dict[Any, str] = {}  # frozen architecture → space key (a pure cache)
        self._neighbours: dict[str, list[Arch]] = {}  # key → its neighbours (a pure cache)

    # -- keys and encodings ----------------------------------------------------------------

    def key(self, arch: Arch) -> str:
        """``space.key``, memoised: pools meet the same architectures ask after ask."""
        frozen = _freeze(arch)
        key = self._keys.get(frozen)
        if key is None:
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            key = self._keys[frozen] = self.space.key(arch)
        return key

    def neighbours(self, arch: Arch, key: str) -> list[Arch]:
        """``space.neighbours``, memoised."""
        found = self._neighbours.get(key)
        if found is None:
            if len(self._neighbours) >= _CACHE_LIMIT // 100:
                self._neighbours.clear()
            found = self._neighbours[key] = list(self.space.neighbours(arch))
        return found

    def encode(self, archs: Sequence[Arch], keys: Sequence[str] | None = None) -> np.ndarray:
        """``space.encode`` of each architecture (memoised), stacked."""
        if keys is None:
            keys = [self.key(a) for a in archs]
        if self._encodings and len(self._encodings) * next(iter(self._encodings.values())).size > _CACHE_FLOATS:
            self._encodings.clear()
        rows = []
        for arch, key in zip(archs, keys):
            vec = self._encodings.get(key)
            if vec is None:
                vec = self._encodings[key] = np.asarray(self.space.encode(arch), dtype=np.float64)
            rows.append(vec)
        return np.stack(rows)

    # -- the surrogate ---------------------------------------------------------------------

    def data(self, count: int | None = None) -> list[tuple[Arch, float]]:
        """What the surrogate learns from: the results (of the first ``count``) tagged
        ``data_tag`` or later."""
        end = len(self.results) if count is None else count
        return [r for r, tag in zip(self.results[:end], self.tags[:end]) if tag >= self.data_tag]

    def model(self) -> MLPEnsemble | None:
        """The ensemble fitted on ``data()``, brought up to date lazily (None without data).

        A fresh fit (``epochs`` Adam steps from a new initialisation) when ``refit_every``
        results have arrived since the last one; in between, new results are folded in by a warm
        update (``update_epochs`` more steps from the current weights), a fraction of the cost.
        """
        n = len(self.results)
        if not self.data():
            return None
        if self._model is None and self._trail:  # restored: replay how the ensemble was made
            for data_tag, count, seed in self._trail:
                self._model = self._fit_step(self._model, data_tag, count, seed)
        if self._model is not None and self._trail[-1][:2] == [self.data_tag, n]:
            return self._model
        if (self._model is None or self._trail[0][0] != self.data_tag
                or n - self._trail[0][1] >= self.config.refit_every):
            seed = int(self.rng.integers(2**31 - 1))
            self._trail = [[self.data_tag, n, seed]]
            self._model = self._fit_step(None, self.data_tag, n, seed)
        else:
            self._trail.append([self.data_tag, n, None])
            self._model = self._fit_step(self._model, self.data_tag, n, None)
        return self._model

    def _fit_step(self, model: MLPEnsemble | None, data_tag: int, count: int, seed: int | None) -> MLPEnsemble:
        data = [r for r, tag in zip(self.results[:count], self.tags[:count]) if tag >= data_tag]
        x = self.encode([arch for arch, _ in data])
        y = copula_warp([score for _, score in data])
        if seed is not None or model is None:
            return MLPEnsemble(_ensemble_params(self.config), int(seed or 0)).fit(x, y)
        return model.fit(x, y, epochs=self.config.update_epochs, warm=True)

    def fantasised(self, model: MLPEnsemble, epochs: int) -> MLPEnsemble:
        """Fold the trials in flight into ``model`` as if they had scored what it predicts for
        them (the kriging believer of Ginsbourger, Le Riche & Carraro, 2010): the members are
        pulled to their consensus there, so the uncertainty around a pending architecture
        shrinks and the next ask looks elsewhere rather than at its twin. A short warm-started
        fine-tune of a copy; ``model`` itself is left as it is."""
        pending = [(key, arch) for key, (arch, tag, _) in self.pending.items() if tag >= self.data_tag]
        if not pending or epochs <= 0:
            return model
        data = self.data()
        x = self.encode([arch for arch, _ in data] + [arch for _, arch in pending],
                        [self.key(arch) for arch, _ in data] + [key for key, _ in pending])
        believed, _ = model.predict(x[len(data):])
        y = np.concatenate([copula_warp([score for _, score in data]), believed])
        return model.copy().fit(x, y, epochs=epochs, warm=True)

    # -- candidates ------------------------------------------------------------------------

    def ranked(self, min_tag: int = 0) -> list[Arch]:
        """Completed architectures tagged ``min_tag`` or later, best first (ties: earliest)."""
        order = sorted((i for i, tag in enumerate(self.tags) if tag >= min_tag),
                       key=lambda i: (-self.results[i][1], i))
        return [self.results[i][0] for i in order]

    def candidate_pool(self, ranked: Sequence[Arch], *, parents: int, mutations: int,
                       neighbours_of: int, random: int, max_edits: int) -> tuple[list[Arch], list[str]]:
        """Unseen architectures near the best ones of ``ranked``, plus random ones.

        Every neighbour of the first ``neighbours_of``; ``mutations`` random mutations (each of
        1 to ``max_edits`` edits) of each of the first ``parents``; ``random`` random samples.
        """
        archs: list[Arch] = []
        keys: list[str] = []
        taken: set[str] = set()

        def add(arch: Arch) -> None:
            key = self.key(arch)
            if key not in self.seen and key not in taken:
                taken.add(key)
                archs.append(arch)
                keys.append(key)

        for arch in ranked[:neighbours_of]:
            for other in self.neighbours(arch, self.key(arch)):
                add(other)
        for arch in ranked[:parents]:
            for _ in range(mutations):
                child = self.space.mutate(arch, self.rng)
                for _ in range(int(self.rng.integers(1, max_edits + 1)) - 1):
                    child = self.space.mutate(child, self.rng)
                add(child)
        for _ in range(random):
            add(self.space.sample(self.rng))
        return archs, keys

    def climb(self, value: Callable[[np.ndarray], np.ndarray], starts: Sequence[Arch],
              max_steps: int) -> tuple[list[Arch], list[str]]:
        """Optimise the surrogate ``value`` (a function of encodings) by steepest-ascent hill
        climbing over ``space.neighbours`` from every start at once; each climb stops at a local
        optimum of ``value`` or after ``max_steps`` moves.

        A climb walks through seen architectures too (the surrogate's landscape does not care
        what was evaluated). Returns, for each climb, the best unseen architecture it looked at
        (its end point, or the best unseen neighbour on its way): few candidates, each the
        surrogate's local optimum some edits away from a start.
        """
        archs: dict[str, Arch] = {}
        values: dict[str, float] = {}

        def evaluate(batch: list[tuple[Arch, str]]) -> None:
            fresh = []
            for arch, key in batch:
                if key not in archs:
                    archs[key] = arch
                    fresh.append((arch, key))
            if fresh:
                got = value(self.encode([a for a, _ in fresh], [k for _, k in fresh]))
                for (_, key), v in zip(fresh, got):
                    values[key] = float(v)

        climbs = [(arch, self.key(arch)) for arch in starts]
        evaluate(climbs)
        best_unseen: list[str | None] = [key if key not in self.seen else None for _, key in climbs]
        active = list(range(len(climbs)))
        for _ in range(max_steps):
            if not active:
                break
            moves = {i: [(o, self.key(o)) for o in self.neighbours(*climbs[i])] for i in active}
            evaluate([pair for i in active for pair in moves[i]])
            still = []
            for i in active:
                for _, key in moves[i]:
                    current = best_unseen[i]
                    if key not in self.seen and (current is None or values[key] > values[current]):
                        best_unseen[i] = key
                if moves[i]:
                    step = max(moves[i], key=lambda pair: values[pair[1]])
                    if values[step[1]] > values[climbs[i][1]]:
                        climbs[i] = step
                        still.append(i)
            # Climbs that meet follow the same path from there: keep one of them going.
            at: dict[str, int] = {}
            active = [at.setdefault(climbs[i][1], i) for i in still if climbs[i][1] not in at]
        keys = list(dict.fromkeys(k for k in best_unseen if k is not None))
        return [archs[k] for k in keys], keys

    # -- proposing and telling -------------------------------------------------------------

    def propose(self, arch: Arch, key: str | None = None) -> Proposal:
        key = self.key(arch) if key is None else key
        self.seen.add(key)
        self.pending[key] = (arch, self.tag, len(self.results))
        self.asked += 1
        return Proposal(copy.deepcopy(arch))  # the caller may change it; our caches must not

    def propose_random(self) -> Proposal | None:
        arch = propose_unseen(self.space, self.seen, lambda: self.space.sample(self.rng),
                              self.config.max_resample)
        return None if arch is None else self.propose(arch)

    def tell(self, result: TrialResult) -> None:
        key = self.key(result.arch)
        # A trial nobody asked for (a warm start) belongs to the current region.
        _, tag, known = self.pending.pop(key, (None, self.tag, len(self.results)))
        self.seen.add(key)
        score = result.score
        if score is not None and np.isfinite(score):
            self.results.append((result.arch, float(score)))
            self.tags.append(tag)
            self.known.append(known)

    # -- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "results": [[arch, score, tag, known] for (arch, score), tag, known
                        in zip(self.results, self.tags, self.known)],
            "pending": [list(entry) for entry in self.pending.values()],
            "seen": sorted(self.seen),
            "asked": self.asked,
            "tag": self.tag,
            "data_tag": self.data_tag,
            "fit_trail": self._trail,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.results = [(arch, float(score)) for arch, score, _, _ in state["results"]]
        self.tags = [int(tag) for _, _, tag, _ in state["results"]]
        self.known = [int(known) for _, _, _, known in state["results"]]
        self.pending = {self.key(arch): (arch, int(tag), int(known)) for arch, tag, known in state["pending"]}
        self.seen = set(state["seen"])
        self.asked = int(state["asked"])
        self.tag = int(state["tag"])
        self.data_tag = int(state["data_tag"])
        self._trail = [[int(t), int(count), seed] for t, count, seed in state["fit_trail"]]
        self._model = None


def _ensemble_params(config: PredictorConfig) -> MLPEnsembleParams:
    return MLPEnsembleParams(
        members=config.ensemble_size, hidden=config.hidden_units, layers=config.hidden_layers,
        epochs=config.epochs, lr=config.learning_rate, weight_decay=config.weight_decay,
    )
