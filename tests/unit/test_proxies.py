"""Zero-cost proxies (NASWOT, synflow, grad_norm, jacob_cov) and the ``proxy`` evaluator (CPU, seconds)."""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from scion.spec import JobSpec
from spaces.nb201 import NB201Config, NB201Space
from worker.evaluators import EVALUATORS, make_evaluator
from worker.evaluators.proxy import ProxyConfig, proxy_batch
from worker.training import proxies
from worker.training.datasets import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = NB201Space(NB201Config(channels=8, cells_per_stage=1))
ARCHS = [
    ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "skip_connect", "nor_conv_3x3"],
    ["avg_pool_3x3", "none", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3"],
    ["skip_connect"] * 6,
]


class Ctx:
    device, fidelity, number = "cpu", None, 0

    def __init__(self) -> None:
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.costs: dict[str, float] = {}

    def check_costs(self, costs: dict[str, float]) -> None:
        self.costs = costs

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.reports.append((epoch, metrics))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return proxy_batch(load_dataset("digits"), 64, "cpu")


def build(arch: list[str], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SMALL.build(arch, (1, 8, 8), 10)


def test_proxies_are_finite_and_fast_at_small_width(batch) -> None:
    """All four proxies in well under a second of CPU time per network, on one thread (CPU time, not
    wall time: the test machine's cores are shared, and waiting for them is not the proxies' cost)."""
    x, y = batch
    proxies.compute(build(ARCHS[0]), x, y)  # warm-up
    for arch in ARCHS:
        model = build(arch)
        best = math.inf
        for _ in range(2):
            started = time.process_time()
            scores, seconds = proxies.compute(model, x, y)
            best = min(best, time.process_time() - started)
        assert set(scores) == set(proxies.PROXIES) == set(seconds)
        assert all(math.isfinite(v) for v in scores.values()), (arch, scores)
        assert best < 1.0, f"{best:.2f} s of CPU for {arch}"


def test_proxies_are_deterministic_and_leave_the_model_alone(batch) -> None:
    x, y = batch
    model = build(ARCHS[0], seed=3)
    before = copy.deepcopy(model.state_dict())
    first, _ = proxies.compute(model, x, y)
    second, _ = proxies.compute(build(ARCHS[0], seed=3), x, y)
    assert first == second
    for name, tensor in model.state_dict().items():  # signs, BatchNorm statistics, gradients untouched
        assert torch.equal(tensor, before[name]), name
    assert all(p.grad is None for p in model.parameters())
    other, _ = proxies.compute(build(ARCHS[0], seed=4), x, y)
    assert other["naswot"] != first["naswot"]  # the seed matters: it sets the initial weights


def test_naswot_rewards_distinct_activation_patterns() -> None:
    """Shifting the ReLUs' bias up turns more units on for every input: the examples' binary codes
    grow alike (Hamming distances shrink), and the score falls; two identical codes make K singular."""
    torch.manual_seed(0)
    x = torch.randn(32, 16)
    base = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    scores, distances = [], []
    for shift in (0.0, 0.3, 0.8, 1.2):
        net = copy.deepcopy(base)
        with torch.no_grad():
            net[0].bias.fill_(shift)
        codes = (net[0](x) > 0).float()
        distances.append(float(torch.cdist(codes, codes, p=1).mean()))
        scores.append(proxies.naswot(net, x))
    assert distances == sorted(distances, reverse=True)
    assert scores[0] > scores[1] > scores[2] and math.isnan(scores[3])  # NaN: stored as null
    assert math.isnan(proxies.naswot(nn.Linear(16, 4), x))  # no ReLU at all: undefined


def test_synflow_is_the_abs_weight_path_sum_without_batchnorm() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.BatchNorm1d(2), nn.Linear(2, 1, bias=False))
    w1, w2 = net[0].weight.detach().double().abs(), net[2].weight.detach().double().abs()
    # R = w2 @ w1 @ 1; each weight's |θ ∂R/∂θ| summed: R for each layer, so 2R in all
    expected = 2 * float((w2 @ w1 @ torch.ones(3, 1, dtype=torch.float64)).sum())
    assert proxies.synflow(net, (3,)) == pytest.approx(expected, rel=1e-9)
    assert isinstance(net[1], nn.BatchNorm1d)  # removed in a copy only


def test_a_network_that_ignores_its_input_scores_lowest(batch) -> None:
    x, y = batch
    dead = proxies.compute(build(["none"] * 6), x, y)[0]
    alive = proxies.compute(build(ARCHS[0]), x, y)[0]
    assert dead["synflow"] == 0.0 and dead["grad_norm"] < alive["grad_norm"]
    assert math.isfinite(dead["jacob_cov"]) and dead["jacob_cov"] < alive["jacob_cov"]
    assert math.isnan(dead["naswot"])  # every input gives the same code: singular kernel


def test_the_proxy_evaluator_returns_every_objective() -> None:
    assert "proxy" in EVALUATORS.names() and ProxyConfig.queue == "gpu"
    evaluator = make_evaluator({"type": "proxy", "dataset": "digits", "batch_size": 32, "latency_repeats": 2})
    ctx = Ctx()
    result = evaluator.evaluate(SMALL, ARCHS[0], ctx)
    expected = {m.name for m in ProxyConfig.objectives} | set(ProxyConfig.recorded)
    assert expected <= set(result)
    assert all(math.isfinite(float(result[name])) for name in expected)
    assert result["params"] > 0 and result["flops"] > 0 and result["latency_ms"] > 0
    assert set(ctx.costs) == set(ProxyConfig.constraint_metrics)  # checked before any proxy
    assert ctx.reports == [(1, {p: result[p] for p in proxies.PROXIES})]
    again = evaluator.evaluate(SMALL, list(ARCHS[0]), Ctx())
    assert all(again[p] == result[p] for p in proxies.PROXIES)  # same initial weights, same batch

    only = make_evaluator({"type": "proxy", "proxies": ["synflow", "synflow"], "latency_repeats": 1})
    assert only.config.proxies == ["synflow"]
    assert "naswot" not in only.evaluate(SMALL, ARCHS[1], Ctx())


def test_proxy_job_specs() -> None:
    spec = JobSpec.model_validate({
        "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1}, "strategy": {"type": "random"},
        "evaluator": {"type": "proxy", "dataset": "mnist1d"},
        "objectives": [{"metric": "synflow"}, {"metric": "latency_ms"}],
        "constraints": [{"metric": "params", "max": 1e5}],
    })
    assert [(o.metric, o.mode) for o in spec.objectives] == [("synflow", "max"), ("latency_ms", "min")]
    assert JobSpec.model_validate({**spec.model_dump(), "objectives": []}).primary.metric == "naswot"
    with pytest.raises(ValidationError, match="snip"):
        ProxyConfig(proxies=["snip"])
    with pytest.raises(ValidationError, match="unknown dataset 'svhn'"):
        ProxyConfig(dataset="svhn")


def test_proxy_batch_is_fixed() -> None:
    data = load_dataset("digits")
    x1, y1 = proxy_batch(data, 16, "cpu")
    x2, _ = proxy_batch(data, 16, "cpu")
    assert x1.shape == (16, 1, 8, 8) and torch.equal(x1, x2) and len(np.unique(y1.numpy())) > 1
