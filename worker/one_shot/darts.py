"""Differentiable architecture search (Liu et al., ICLR 2019), first or second order, with the
DARTS- remedy (Chu et al., ICLR 2021) or DARTS-ES (Zela et al., ICLR 2020; its eigenvalue and
stopping rule in ``hessian.py``): see ``scion.configs.one_shot.DARTSMethodConfig``."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from scion.configs.one_shot import DARTSMethodConfig
from spaces.base import Arch
from worker.one_shot.hessian import dominant_eigenvalue, early_stop_epoch, hvp_function
from worker.one_shot.method import EpochTally, Method, preserved_buffers

HVP_EPSILON = 0.01  # the finite difference's step, over the vector's norm (DARTS' r)


def param_free(op: str) -> bool:
    """An operation without weights, the kind DARTS collapses onto: none, skip and pooling."""
    return op in ("none", "skip_connect") or "pool" in op


class DARTS(Method):
    """Per step, one architecture-weight step (Adam) on a batch of the training split's second
    half, then one weight step (SGD, cosine-annealed) on a batch of its first half, both through
    every edge's softmax mixture. Second order differentiates through one look-ahead weight step,
    its Hessian-vector product by finite differences, as DARTS' ``architect.py`` does (in float32:
    bf16 is too coarse for the difference). DARTS- adds each edge's skip connection with a
    coefficient decaying linearly from ``beta`` to 0 over all steps.

    The state keeps every epoch's architecture weights (``history``) and, with DARTS-ES, every
    epoch's dominant Hessian eigenvalue and the epoch the stopping rule chose (``stopped_at``), so
    that an attempt resumed from any epoch's checkpoint decides as the uninterrupted one did."""

    halves = True
    config: DARTSMethodConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.alphas = {
            kind: (1e-3 * torch.randn(edges, len(ops), device=self.device)).requires_grad_()
            for kind, (edges, ops) in self.space.mixed_edges().items()
        }
        self.op_names = {op for _, ops in self.space.mixed_edges().values() for op in ops}
        self.arch_optimizer = torch.optim.Adam(
            list(self.alphas.values()), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=cfg.arch_weight_decay
        )
        self.optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        assert self.data.arch is not None, "DARTS trains its architecture weights on the second half"
        self.steps = min(self.data.train.steps(cfg.batch_size), self.data.arch.steps(cfg.batch_size))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs * self.steps, eta_min=cfg.lr_min
        )
        self.history: list[dict[str, list[list[float]]]] = []  # the softmaxed weights after each epoch
        self.eigenvalues: list[float] = []  # DARTS-ES: the dominant eigenvalue after each epoch
        self.stopped_at: int | None = None  # DARTS-ES: the epoch whose architecture the rule chose

    # -- the mixture -----------------------------------------------------------------------------

    def mix(self, detach: bool = False) -> dict[str, Tensor]:
        return {kind: F.softmax(a.detach() if detach else a, dim=-1) for kind, a in self.alphas.items()}

    def skip_beta(self, step: int) -> float:
        """DARTS-'s auxiliary skip coefficient at global step ``step`` (0-based); 0 without the remedy."""
        if self.config.remedy != "darts-":
            return 0.0
        return self.config.beta * max(0.0, 1.0 - step / (self.config.epochs * self.steps))

    def arch_weights(self) -> dict[str, list[list[float]]]:
        """The softmaxed architecture weights, {cell kind: [[weight per op] per edge]}."""
        return {kind: w.tolist() for kind, w in self.mix(detach=True).items()}

    def derived(self) -> Arch:
        return self.space.derive(self.arch_weights())

    # -- DARTS-ES --------------------------------------------------------------------------------

    def hessian_eigenvalue(self, beta: float = 0.0, steps: int | None = None, tolerance: float | None = None) -> float:
        """The dominant eigenvalue of the Hessian of the architecture weights' loss (in float32, the
        batch statistics and auxiliary skip ``beta`` of their steps) in the architecture weights, on
        the first ``hessian_batches`` batches of their half: the same examples every epoch."""
        cfg = self.config
        assert self.data.arch is not None
        alphas = list(self.alphas.values())
        rank, processes = self.parallel.shard
        was_training = self.supernet.training
        self.supernet.train()
        try:
            with preserved_buffers(self.supernet):  # not a training step
                x, y = self.data.arch.x, self.data.arch.y
                losses = [F.cross_entropy(self.supernet(x[s:s + cfg.batch_size][rank::processes], mix=self.mix(),
                                                        skip_beta=beta), y[s:s + cfg.batch_size][rank::processes])
                          for s in range(0, min(len(y), cfg.hessian_batches * cfg.batch_size), cfg.batch_size)]
                hvp = hvp_function(sum(losses[1:], losses[0]) / len(losses), alphas, self.parallel.average)
                return dominant_eigenvalue(hvp, alphas, iterations=steps or cfg.hessian_steps, seed=self.seed,
                                           **({} if tolerance is None else {"tolerance": tolerance}))
        finally:
            self.supernet.train(was_training)

    def end_epoch(self, beta: float) -> dict[str, float]:
        """Keep the epoch's architecture weights; with DARTS-ES, its eigenvalue and the rule's verdict."""
        self.history.append(self.arch_weights())
        if self.config.remedy != "early-stop":
            return {}
        self.eigenvalues.append(self.hessian_eigenvalue(beta))
        if self.stopped_at is None:
            self.stopped_at = early_stop_epoch(self.eigenvalues, self.config.stop_window, self.config.stop_ratio)
        return {"hessian_eigenvalue": self.eigenvalues[-1]}

    def done(self) -> bool:
        return self.stopped_at is not None

    # -- training --------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, tally = self.config, EpochTally(self.device)
        assert self.data.arch is not None
        beta = self.skip_beta((epoch - 1) * self.steps)
        pairs = zip(self.batches(self.data.train, epoch), self.batches(self.data.arch, epoch, offset=1))
        for i, ((x, y), (x_arch, y_arch)) in enumerate(pairs):
            beta = self.skip_beta((epoch - 1) * self.steps + i)
            self.arch_step(x, y, x_arch, y_arch, beta)
            self.optimizer.zero_grad(set_to_none=True)
            loss, logits = self.loss(x, y, mix=self.mix(detach=True), skip_beta=beta)
            loss.backward()
            self.weight_step()
            tally.add(loss, logits, y)
        return {**tally.metrics(), **({"skip_beta": beta} if cfg.remedy == "darts-" else {}),
                **self.end_epoch(beta)}

    def arch_step(self, x: Tensor, y: Tensor, x_arch: Tensor, y_arch: Tensor, beta: float) -> None:
        alphas = list(self.alphas.values())
        if self.config.order == 1:
            loss, _ = self.loss(x_arch, y_arch, model=self.supernet, mix=self.mix(), skip_beta=beta)
            grads = self.parallel.average(list(torch.autograd.grad(loss, alphas)))
        else:
            grads = self.unrolled_grads(x, y, x_arch, y_arch, beta)
        for alpha, grad in zip(alphas, grads):
            alpha.grad = grad
        self.arch_optimizer.step()

    def unrolled_grads(
        self, x: Tensor, y: Tensor, x_arch: Tensor, y_arch: Tensor, beta: float, epsilon: float = HVP_EPSILON
    ) -> list[Tensor]:
        """d L_arch(w - eta * (momentum + dL_train/dw + decay * w), alpha) / d alpha, the second-order
        term by the central difference of dL_train/dalpha at w +- r v, v the look-ahead's weight
        gradient and r = epsilon / |v|, as in DARTS' ``Architect._backward_step_unrolled``. (ReLUs
        make the difference at DARTS' epsilon a smoothed Hessian rather than the exact one.)"""
        cfg = self.config
        params = list(self.supernet.parameters())
        alphas = list(self.alphas.values())
        eta = self.optimizer.param_groups[0]["lr"]

        def loss(xb: Tensor, yb: Tensor) -> Tensor:
            return F.cross_entropy(self.supernet(xb, mix=self.mix(), skip_beta=beta), yb)  # float32: no autocast here

        def grads(value: Tensor, wrt: list[Tensor]) -> list[Tensor]:
            found = torch.autograd.grad(value, wrt, allow_unused=True)
            return self.parallel.average([torch.zeros_like(w) if g is None else g for g, w in zip(found, wrt)])

        weights = [p.detach().clone() for p in params]

        def set_weights(direction: list[Tensor] | None = None, scale: float = 0.0) -> None:
            with torch.no_grad():
                for p, w, d in zip(params, weights, direction or [None] * len(params)):
                    p.copy_(w if d is None else w + scale * d)

        with preserved_buffers(self.supernet):  # the look-ahead's forwards are not training steps
            try:
                look_ahead = []
                for p, w, g in zip(params, weights, grads(loss(x, y), params)):
                    momentum = self.optimizer.state.get(p, {}).get("momentum_buffer")
                    moment = cfg.momentum * momentum if momentum is not None else torch.zeros_like(w)
                    look_ahead.append(w - eta * (moment + g + cfg.weight_decay * w))
                with torch.no_grad():
                    for p, w in zip(params, look_ahead):
                        p.copy_(w)
                found = grads(loss(x_arch, y_arch), alphas + params)
                d_alpha, vector = found[: len(alphas)], found[len(alphas):]
                r = epsilon / torch.cat([v.flatten() for v in vector]).norm().clamp_min(1e-12)
                set_weights(vector, float(r))
                plus = grads(loss(x, y), alphas)
                set_weights(vector, -float(r))
                minus = grads(loss(x, y), alphas)
            finally:
                set_weights()
        return [d - eta * (p - m) / (2 * r) for d, p, m in zip(d_alpha, plus, minus)]

    # -- reporting -------------------------------------------------------------------------------

    def epoch_arch(self, epoch: int) -> Arch:
        return self.derived()

    def epoch_metrics(self, epoch: int) -> dict[str, Any]:
        """How many of the derived architecture's operations are skip connections and how many have
        no weights (the collapse the remedies counter), and the architecture weights themselves;
        once DARTS-ES has stopped, ``early_stop_epoch``: the epoch whose architecture is the candidate."""
        derived = self.derived()
        chosen = [options[c] for (_, options), c in zip(self.space.decisions(), self.space.to_choices(derived))
                  if c is not None and options[c] in self.op_names]
        return {
            "skip_connect": float(sum(op == "skip_connect" for op in chosen)),
            "param_free": float(sum(param_free(op) for op in chosen)),
            "arch_weights": self.arch_weights(),
            **({"early_stop_epoch": self.stopped_at} if self.stopped_at is not None else {}),
        }

    def candidates(self) -> list[Arch]:
        if self.stopped_at is not None:
            return [self.space.derive(self.history[self.stopped_at - 1])]
        return [self.derived()]

    def replicated(self) -> list[Tensor]:
        return [*super().replicated(), *self.alphas.values()]

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alphas": {k: a.detach().clone() for k, a in self.alphas.items()},
                "arch_optimizer": self.arch_optimizer.state_dict(), "history": self.history,
                "eigenvalues": self.eigenvalues, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for kind, alpha in self.alphas.items():
                alpha.copy_(state["alphas"][kind])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.history = list(state["history"])
        self.eigenvalues = list(state["eigenvalues"])
        self.stopped_at = state["stopped_at"]


__all__ = ["DARTS", "param_free"]
