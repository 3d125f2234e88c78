"""The one-shot methods on the worker (SPOS / FairNAS, DARTS / DARTS- / DARTS-ES, ENAS), their per-epoch
checkpoint and resume, and the search phase's inherited-weight scoring, on a tiny nb201 supernet
and MNIST-1D (CPU, seconds)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from scion.configs.evaluators import TrainConfig
from scion.configs.one_shot import DARTSMethodConfig, OneShotConfig
from spaces import SPACES
from spaces.nb201 import EDGES, OPS, NB201Config, NB201Space
from spaces.nb201_supernet import NB201Supernet
from tests.contract.test_spaces import SMALL
from worker.evaluators import inherited
from worker.evaluators.inherited import InheritedEvaluator, recalibrate_batchnorm
from worker.evaluators.supernet import SupernetEvaluator
from worker.one_shot.darts import DARTS
from worker.one_shot.data import supernet_data
from worker.one_shot.epochs import load_checkpoint
from worker.one_shot.hessian import dominant_eigenvalue, early_stop_epoch, hvp_function
from worker.one_shot.method import preserved_buffers
from worker.outcomes import TrialFailed, TrialStopped
from worker.training.datasets import load_dataset
from worker.training.trainer import Split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = NB201Space(NB201Config(channels=4, cells_per_stage=1))
TRAIN = TrainConfig(dataset={"type": "mnist1d", "num_samples": 1000}, latency_repeats=1)
DATA = load_dataset(TRAIN.dataset)  # 700 training examples, 150 validation
METHODS: dict[str, dict[str, Any]] = {
    "spos": {"type": "spos", "batch_size": 128},
    "darts": {"type": "darts", "batch_size": 128},
    "enas": {"type": "enas", "batch_size": 128, "controller_steps": 2, "controller_aggregate": 3, "samples": 4},
}
ARCH_A = ["nor_conv_3x3", "skip_connect", "nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"]
ARCH_B = ["nor_conv_1x1", "nor_conv_3x3", "none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"]


class Ctx:
    """The worker's EvalContext in process (as bench/proxies.py's): it keeps every report, notes
    the epoch the checkpoint held when each was made, and can stop the trial after an epoch."""

    def __init__(self, artifacts: Path, stop_after: int | None = None) -> None:
        self.device, self.fidelity, self.number, self.attempt = "cpu", None, 0, 1
        self.artifacts, self.stop_after = artifacts, stop_after
        self.reports: list[tuple[int, dict[str, Any]]] = []
        self.checkpointed: list[int] = []

    def artifact_path(self, number: int) -> Path:
        return self.artifacts / f"trial-{number}" / "checkpoint.pt"

    def check_costs(self, costs: dict[str, float]) -> None:
        pass

    def report(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.reports.append((epoch, metrics))
        self.checkpointed.append(int(load_checkpoint(self.artifact_path(self.number))["epoch"]))
        if epoch == self.stop_after:
            raise TrialStopped(f"stop requested after epoch {epoch}")


def make_space(name: str) -> Any:
    entry = SPACES[name]
    return entry.factory(entry.config(**SMALL[name]))


def one_shot(method: str, **settings: Any) -> OneShotConfig:
    return OneShotConfig(method={**METHODS[method], **settings})


def train_supernet(config: OneShotConfig, ctx: Ctx, space: NB201Space = SPACE) -> dict[str, Any]:
    return SupernetEvaluator(config, TRAIN, seed=0).evaluate(space, None, ctx)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supernet trained by SPOS for one epoch: its checkpoint."""
    ctx = Ctx(tmp_path_factory.mktemp("spos"))
    train_supernet(one_shot("spos", epochs=1), ctx)
    return ctx.artifact_path(0)


# -- every method ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_reports_and_checkpoints_every_epoch_and_proposes_candidates(method: str, tmp_path: Path) -> None:
    ctx = Ctx(tmp_path)
    result = train_supernet(one_shot(method, epochs=2), ctx)

    assert [epoch for epoch, _ in ctx.reports] == [1, 2]
    assert ctx.checkpointed == [1, 2]  # each epoch saved before it was reported
    for _, metrics in ctx.reports:
        assert {"train_loss", "train_acc", "val_acc", "epoch_seconds"} <= set(metrics)
        assert np.isfinite(metrics["train_loss"]) and 0 <= metrics["val_acc"] <= 100
    assert result["val_acc"] == ctx.reports[-1][1]["val_acc"]
    assert result["supernet_params"] == SPACE.supernet_params(DATA.input_shape, DATA.num_classes)
    assert result["train_seconds"] > 0
    candidates = result["candidates"]
    expected = {"spos": 0, "darts": 1, "enas": 4}[method]  # SPOS leaves the search to the job's strategy
    assert len({SPACE.key(SPACE.validate(arch)) for arch in candidates}) == len(candidates) == expected


@pytest.mark.parametrize("method", sorted(METHODS))
def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_one_does(
    method: str, tmp_path: Path
) -> None:
    config = one_shot(method, epochs=3)
    interrupted = Ctx(tmp_path / "interrupted", stop_after=1)
    with pytest.raises(TrialStopped):
        train_supernet(config, interrupted)
    resumed = Ctx(tmp_path / "interrupted")
    result = train_supernet(config, resumed)
    straight = Ctx(tmp_path / "straight")
    expected = train_supernet(config, straight)

    assert [epoch for epoch, _ in resumed.reports] == [2, 3]  # epoch 1 is not trained again
    assert result["candidates"] == expected["candidates"]
    assert result["val_acc"] == expected["val_acc"]
    for (_, got), (_, want) in zip(resumed.reports, straight.reports[1:]):
        assert got["train_loss"] == want["train_loss"]
    got, want = (load_checkpoint(ctx.artifact_path(0)) for ctx in (resumed, straight))
    assert got["epoch"] == want["epoch"] == 3
    assert got["supernet"].keys() == want["supernet"].keys()
    for key, value in want["supernet"].items():
        assert torch.equal(got["supernet"][key], value), key  # on CPU, bit for bit


def test_a_nan_loss_fails_the_trial_without_a_checkpoint(tmp_path: Path) -> None:
    class Broken(NB201Space):
        def supernet(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
            net = super().supernet(input_shape, num_classes)
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
            return net

    ctx = Ctx(tmp_path)
    with pytest.raises(TrialFailed, match="NaN"):
        train_supernet(one_shot("spos", epochs=1), ctx, Broken(SPACE.config))
    assert ctx.reports == [] and not ctx.artifact_path(0).exists()


# -- SPOS / FairNAS ----------------------------------------------------------------------------


def _paths_per_step(monkeypatch: pytest.MonkeyPatch) -> list[list[list[str]]]:
    """Spies on the supernet's training forwards: the paths each SGD step applied."""
    steps: list[list[list[str]]] = [[]]
    forward, step = NB201Supernet.forward, torch.optim.SGD.step

    def spy_forward(self: NB201Supernet, x: Any, arch: Any = None, **kwargs: Any) -> Any:
        if self.training:
            steps[-1].append(list(arch))
        return forward(self, x, arch, **kwargs)

    def spy_step(self: torch.optim.SGD, *args: Any, **kwargs: Any) -> Any:
        steps.append([])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(NB201Supernet, "forward", spy_forward)
    monkeypatch.setattr(torch.optim.SGD, "step", spy_step)
    return steps


def test_fairnas_trains_every_option_of_every_decision_once_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _paths_per_step(monkeypatch)
    train_supernet(one_shot("spos", epochs=1, fair=True), Ctx(tmp_path))
    steps = steps[:-1]  # after the last step
    assert len(steps) == len(DATA.y_train) // 128 + 1
    for paths in steps:
        assert len(paths) == len(OPS)
        for edge in range(len(EDGES)):
            assert sorted(path[edge] for path in paths) == sorted(OPS)


def test_spos_trains_one_uniform_path_per_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = _paths_per_step(monkeypatch)
    train_supernet(one_shot("spos", epochs=2), Ctx(tmp_path))
    steps = steps[:-1]
    assert all(len(paths) == 1 for paths in steps)
    assert len({SPACE.key(paths[0]) for paths in steps}) > len(steps) // 2  # drawn afresh, not one path


# -- DARTS -------------------------------------------------------------------------------------


def test_darts_reports_its_architecture_weights_and_derived_architecture_each_epoch(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path)
    result = train_supernet(one_shot("darts", epochs=2, remedy="none", arch_lr=0.05), ctx)
    weights = [metrics["arch_weights"] for _, metrics in ctx.reports]
    for w in weights:
        rows = np.array(w["cell"])
        assert rows.shape == (len(EDGES), len(OPS)) and np.allclose(rows.sum(1), 1.0)
    assert not np.allclose(weights[0]["cell"], weights[1]["cell"])  # they learn
    assert result["candidates"] == [SPACE.derive(weights[-1])]
    derived = result["candidates"][0]
    last = ctx.reports[-1][1]
    assert last["skip_connect"] == derived.count("skip_connect")
    assert last["param_free"] == sum(op in ("none", "skip_connect", "avg_pool_3x3") for op in derived)
    assert "skip_beta" not in last


def test_darts_minus_decays_its_auxiliary_skip_linearly_to_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    betas: list[float] = []
    forward = NB201Supernet.forward

    def spy(self: NB201Supernet, x: Any, arch: Any = None, *, mix: Any = None, skip_beta: float = 0.0) -> Any:
        if mix is not None:
            betas.append(skip_beta)
        return forward(self, x, arch, mix=mix, skip_beta=skip_beta)

    monkeypatch.setattr(NB201Supernet, "forward", spy)
    ctx = Ctx(tmp_path)
    train_supernet(one_shot("darts", epochs=2, beta=0.8), ctx)
    steps = len(betas) // 2  # an architecture step and a weight step each
    assert betas[0] == pytest.approx(0.8)
    assert all(a >= b for a, b in zip(betas, betas[1:])) and betas[-1] < 0.8 / steps + 1e-9
    assert betas[2] == pytest.approx(0.8 * (1 - 1 / steps))  # linear in the step
    reported = [metrics["skip_beta"] for _, metrics in ctx.reports]
    assert reported[0] > reported[1] >= 0


def _darts(order: int, lr: float) -> tuple[DARTS, list[torch.Tensor]]:
    """A DARTS method on the tiny supernet, and one batch of each half."""
    torch.manual_seed(0)
    config = one_shot("darts", epochs=1, order=order, lr=lr).method
    data = supernet_data(DATA, torch.device("cpu"), halves=True)
    method = DARTS(SPACE, SPACE.supernet(DATA.input_shape, DATA.num_classes), data, config, autocast=False, seed=0)
    assert data.arch is not None
    batch = [*next(data.train.batches(64, 0, 1)), *next(data.arch.batches(64, 1, 1))]
    return method, batch


def test_darts_second_order_is_the_unrolled_gradient() -> None:
    """Against autograd through the look-ahead step itself: in float64, on 8 examples, with a
    finite-difference step small enough that no ReLU changes side, so that the two must agree."""
    method, batch = _darts(order=2, lr=0.5)
    method.supernet.double()
    for alpha in method.alphas.values():
        alpha.data = alpha.data.double()
    x, y, x_arch, y_arch = batch[0][:8].double(), batch[1][:8], batch[2][:8].double(), batch[3][:8]
    alphas, eta, decay = list(method.alphas.values()), 0.5, method.config.weight_decay

    def loss(weights: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(method.supernet, weights, (xb,), {"mix": method.mix()}), yb)

    with preserved_buffers(method.supernet):
        weights = dict(method.supernet.named_parameters())
        grads = torch.autograd.grad(loss(weights, x, y), list(weights.values()), create_graph=True)
        look_ahead = {name: w - eta * (g + decay * w) for (name, w), g in zip(weights.items(), grads)}
        exact = torch.autograd.grad(loss(look_ahead, x_arch, y_arch), alphas)
        frozen = {name: w.detach() for name, w in look_ahead.items()}
        first_order_term = torch.autograd.grad(loss(frozen, x_arch, y_arch), alphas)

    second = method.unrolled_grads(x, y, x_arch, y_arch, 0.0, epsilon=1e-6)
    assert torch.allclose(second[0], exact[0], rtol=1e-6, atol=1e-12)
    assert not torch.allclose(first_order_term[0], exact[0], rtol=1e-2)  # the Hessian term counts


def test_darts_look_ahead_leaves_the_weights_and_statistics_as_it_found_them() -> None:
    method, (x, y, x_arch, y_arch) = _darts(order=2, lr=0.5)
    weights = [p.detach().clone() for p in method.supernet.parameters()]
    stats = [b.clone() for b in method.supernet.buffers()]
    loss, _ = method.loss(x_arch, y_arch, mix=method.mix())
    first = torch.autograd.grad(loss, list(method.alphas.values()))
    stats_after_first = [b.clone() for b in method.supernet.buffers()]
    for b, s in zip(method.supernet.buffers(), stats):
        b.copy_(s)
    method.optimizer.param_groups[0]["lr"] = 0.0  # no look-ahead step at all: the first-order gradient
    again = method.unrolled_grads(x, y, x_arch, y_arch, 0.0)
    assert torch.allclose(again[0], first[0], atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(weights, method.supernet.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(stats, method.supernet.buffers()))
    assert not all(torch.equal(a, b) for a, b in zip(stats, stats_after_first))  # as a training forward would


def test_darts_second_order_trains(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path)
    result = train_supernet(one_shot("darts", epochs=1, order=2, batch_size=256), ctx)
    assert np.isfinite(ctx.reports[0][1]["train_loss"]) and len(result["candidates"]) == 1


# -- DARTS-ES: the Hessian's dominant eigenvalue and the stopping rule --------------------------


def _quadratic(spectrum: list[float]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Architecture-weight-shaped parameters (two kinds, as the darts space's) and the loss
    1/2 a^T A a + b^T a over them, A symmetric with eigenvalues ``spectrum``: (params, loss, A)."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 3), (1, 4)]
    n = sum(r * c for r, c in shapes)
    assert len(spectrum) == n
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    matrix = q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ q.T
    params = [torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_() for shape in shapes]
    flat = torch.cat([p.flatten() for p in params])
    return params, 0.5 * flat @ matrix @ flat + flat.sum(), matrix


@pytest.mark.parametrize("spectrum", [
    [5.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, 0.1, 0.2, 0.3],  # the largest is the largest in magnitude
    [-6.0, 3.0, 2.5, 1.0, 0.0, -1.0, -2.0, 0.1, 0.2, 0.3],  # a larger negative one: the largest still
])
def test_power_iteration_finds_the_largest_eigenvalue_of_a_known_quadratic(spectrum: list[float]) -> None:
    params, loss, matrix = _quadratic(spectrum)
    largest = float(torch.linalg.eigvalsh(matrix).max())
    assert largest == pytest.approx(max(spectrum))
    hvp = hvp_function(loss, params)
    assert dominant_eigenvalue(hvp, params, iterations=500, tolerance=0.0) == pytest.approx(largest, rel=1e-6)
    ones = [torch.ones_like(p) for p in params]
    assert torch.allclose(torch.cat([h.flatten() for h in hvp(ones)]), matrix @ torch.ones(len(spectrum),
                                                                                          dtype=torch.float64))


def test_darts_hessian_eigenvalue_is_the_largest_of_the_explicit_hessian_of_its_loss() -> None:
    """The method's eigenvalue against ``eigvalsh`` of the Hessian formed explicitly: the same loss
    (the architecture half's first batch, batch statistics) as a function of the flattened weights."""
    method, _ = _darts(order=1, lr=0.5)
    method.config = method.config.model_copy(update={"batch_size": 32})  # a small batch: seconds
    assert method.config.hessian_batches == 1 and method.data.arch is not None
    alpha = method.alphas["cell"]
    x, y = method.data.arch.x[:32], method.data.arch.y[:32]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(method.supernet(x, mix={"cell": F.softmax(flat.view(alpha.shape), dim=-1)}), y)

    with preserved_buffers(method.supernet):
        explicit = torch.autograd.functional.hessian(loss, alpha.detach().flatten())
    spectrum = torch.linalg.eigvalsh((explicit + explicit.T) / 2)
    stats = [b.clone() for b in method.supernet.buffers()]

    found = method.hessian_eigenvalue(steps=100, tolerance=0.0)
    assert found == pytest.approx(float(spectrum.max()), rel=1e-4)
    assert -float(spectrum.min()) > float(spectrum.max()) > 0  # the shifted second run found it
    assert all(torch.equal(a, b) for a, b in zip(stats, method.supernet.buffers()))  # not a training step


def _first_stop(eigenvalues: list[float], **rule: Any) -> tuple[int, int] | None:
    """(the epoch DARTS-ES stops after, the epoch whose architecture it returns), or None."""
    for last in range(1, len(eigenvalues) + 1):
        chosen = early_stop_epoch(eigenvalues[:last], **rule)
        if chosen is not None:
            return last, chosen
    return None


def test_the_stopping_rule_fires_on_a_growing_eigenvalue_and_not_on_a_flat_or_noisy_one() -> None:
    assert DARTSMethodConfig().remedy == "darts-"  # the default remedy stays DARTS-
    assert (DARTSMethodConfig().stop_window, DARTSMethodConfig().stop_ratio) == (5, 0.75)  # published
    assert _first_stop([0.3] * 50) is None
    noisy = [0.3 * (1 + 0.2 * np.sin(e)) for e in range(50)]  # +-20%, no trend
    assert _first_stop(noisy) is None
    # Flat, then three times larger from epoch 13: with k = 5 the window around epoch i = 11 (9..13)
    # averages 1.4, the one around epoch 6 (4..8) 1.0 < 0.75 * 1.4, so it stops after epoch 13 and
    # returns epoch 6's architecture (i - k).
    assert _first_stop([1.0] * 12 + [3.0] * 38) == (13, 6)
    assert _first_stop([1.0] * 12 + [1.3] * 38) is None  # a rise by less than 1 / 0.75
    growing = [1.1**e for e in range(1, 51)]  # 1.1^-5 = 0.62 < 0.75 from the first complete windows
    assert _first_stop(growing) == (10, 3)  # the earliest it can: epoch 2k, i = 8
    assert _first_stop(growing, ratio=0.5) is None  # a stricter threshold than 1.1^-5
    assert _first_stop([-1.0] * 20 + [-5.0] * 30) is None  # no positive curvature: nothing to stop


SYNTHETIC = [1.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0]  # with k = 2: stops after epoch 5, returns epoch 3


def test_darts_es_stops_returns_the_architecture_k_epochs_back_and_a_resume_keeps_the_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def synthetic(self: DARTS, beta: float = 0.0, **_: Any) -> float:
        calls.append(len(self.history))
        return SYNTHETIC[len(self.history) - 1]  # the epoch just trained, counted by the restored history

    monkeypatch.setattr(DARTS, "hessian_eigenvalue", synthetic)
    config = one_shot("darts", epochs=6, remedy="early-stop", stop_window=2, arch_lr=0.05)
    straight = Ctx(tmp_path / "straight")
    result = train_supernet(config, straight)

    assert [epoch for epoch, _ in straight.reports] == [1, 2, 3, 4, 5]  # stopped after epoch 5 of 6
    assert [m["hessian_eigenvalue"] for _, m in straight.reports] == SYNTHETIC[:5]
    assert [m.get("early_stop_epoch") for _, m in straight.reports] == [None, None, None, None, 3]
    assert result["epochs_trained"] == 5
    chosen = straight.reports[2][1]["arch_weights"]
    assert not np.allclose(chosen["cell"], straight.reports[4][1]["arch_weights"]["cell"])  # they moved on
    assert result["candidates"] == [SPACE.derive(chosen)]
    assert result["val_acc"] == straight.reports[-1][1]["val_acc"]  # the last epoch trained

    for stop_after, expected in ((3, [4, 5]), (5, [])):  # before the stop, and at the stopping epoch
        calls.clear()
        interrupted = Ctx(tmp_path / f"after-{stop_after}", stop_after=stop_after)
        with pytest.raises(TrialStopped):
            train_supernet(config, interrupted)
        resumed = Ctx(tmp_path / f"after-{stop_after}")
        calls.clear()
        again = train_supernet(config, resumed)
        assert [epoch for epoch, _ in resumed.reports] == expected
        assert calls == expected  # a stopped run computes nothing more
        assert again["candidates"] == result["candidates"] and again["epochs_trained"] == 5
        assert load_checkpoint(resumed.artifact_path(0))["method"]["stopped_at"] == 3


def test_the_eigenvalue_is_reported_each_epoch_with_early_stop_only(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path / "es")
    result = train_supernet(one_shot("darts", epochs=2, remedy="early-stop"), ctx)
    values = [metrics["hessian_eigenvalue"] for _, metrics in ctx.reports]
    assert len(values) == 2 and all(isinstance(v, float) and np.isfinite(v) for v in values)
    assert result["epochs_trained"] == 2 and "early_stop_epoch" not in ctx.reports[-1][1]  # too soon to stop
    plain = Ctx(tmp_path / "plain")
    train_supernet(one_shot("darts", epochs=1, remedy="none"), plain)
    assert "hessian_eigenvalue" not in plain.reports[0][1]  # it costs a large share of a small epoch


# -- the search phase: inherited weights -------------------------------------------------------


def test_inherited_scores_load_the_supernet_once_per_process(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    load = inherited.supernet_weights

    def spy(path: Path, *args: Any) -> Any:
        loads.append(path)
        return load(path, *args)

    monkeypatch.setattr(inherited, "supernet_weights", spy)
    monkeypatch.setattr(inherited, "_SUPERNETS", {})
    evaluator = InheritedEvaluator(one_shot("spos", recalibration_batches=2), TRAIN, trained)
    a = evaluator.evaluate(SPACE, ARCH_A, Ctx(tmp_path))
    b = evaluator.evaluate(SPACE, ARCH_B, Ctx(tmp_path))
    assert loads == [trained]
    assert {"val_acc", "params", "flops", "latency_ms", "latency_ms_batch", "train_seconds"} <= set(a)
    assert a["params"] != b["params"]  # each candidate's own network
    assert evaluator.evaluate(SPACE, ARCH_A, Ctx(tmp_path))["val_acc"] == a["val_acc"]  # deterministic

    copy = tmp_path / "other.pt"
    copy.write_bytes(trained.read_bytes())
    InheritedEvaluator(one_shot("spos"), TRAIN, copy).evaluate(SPACE, ARCH_A, Ctx(tmp_path))
    assert loads == [trained, copy]


def test_inherited_scores_fail_when_the_checkpoint_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TrialFailed, match="missing"):
        InheritedEvaluator(one_shot("spos"), TRAIN, tmp_path / "none.pt").evaluate(SPACE, ARCH_A, Ctx(tmp_path))


def test_batchnorm_recalibration_sets_each_sub_network_its_own_statistics(trained: Path, tmp_path: Path) -> None:
    supernet = inherited.loaded_supernet(SPACE, trained, DATA.input_shape, DATA.num_classes, "cpu")
    model = SPACE.build(ARCH_A, DATA.input_shape, DATA.num_classes)
    model.load_state_dict(supernet.subnet_state_dict(ARCH_A))
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inherited_mean = norm.running_mean.clone()
    batch_means: list[torch.Tensor] = []
    hook = norm.register_forward_hook(lambda _m, inputs, _o: batch_means.append(inputs[0].mean((0, 2, 3))))
    train = Split(torch.from_numpy(DATA.x_train.copy()), torch.from_numpy(DATA.y_train.copy()))
    recalibrate_batchnorm(model, train, batches=3, batch_size=100)
    hook.remove()

    assert len(batch_means) == 3
    assert not torch.allclose(norm.running_mean, inherited_mean)
    assert torch.allclose(norm.running_mean, torch.stack(batch_means).mean(0), atol=1e-6)  # the plain average
    assert not model.training

    ctx = Ctx(tmp_path)
    scores = {
        batches: InheritedEvaluator(one_shot("spos", recalibration_batches=batches), TRAIN, trained)
        .evaluate(SPACE, ARCH_A, ctx)["val_acc"]
        for batches in (0, 5)
    }
    assert scores[0] != scores[5]


# -- the other spaces' supernets ---------------------------------------------------------------


@pytest.mark.parametrize(("space_name", "method", "settings"), [
    ("darts", "darts", {"order": 2}),
    ("darts", "enas", {}),
    ("chain", "spos", {"fair": True}),
    ("chain", "enas", {}),
])
def test_methods_train_every_spaces_supernet_and_its_candidates_score_with_inherited_weights(
    space_name: str, method: str, settings: dict[str, Any], tmp_path: Path
) -> None:
    space = make_space(space_name)
    config = one_shot(method, epochs=1, batch_size=256, recalibration_batches=1, **settings)
    ctx = Ctx(tmp_path)
    result = train_supernet(config, ctx, space)
    assert np.isfinite(ctx.reports[0][1]["train_loss"])
    archs = result["candidates"] or [space.sample(np.random.default_rng(0))]
    for arch in archs[:2]:
        scored = InheritedEvaluator(config, TRAIN, ctx.artifact_path(0)).evaluate(space, space.validate(arch), ctx)
        assert 0 <= scored["val_acc"] <= 100 and scored["params"] > 0
