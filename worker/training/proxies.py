"""Zero-cost proxies: scores of an untrained network that rank architectures without training.

* ``naswot`` (Mellor et al., "Neural Architecture Search without Training", ICML 2021): the
  binary activation code of every example (which units of every ReLU-like layer are active) on
  one batch; K[i, j] = number of units where examples i and j agree; score = log|det K|. Networks
  that give different inputs different codes score higher.
* ``synflow`` (Tanaka et al. 2020, as a NAS proxy in Abdelfattah et al., "Zero-Cost Proxies for
  Lightweight NAS", ICLR 2021): with every parameter replaced by its absolute value and BatchNorm
  removed (as the zero-cost-proxies code does, ``bn=False``), R = sum of the output on an all-ones
  input; score = sum over conv/linear weights of |θ ⊙ ∂R/∂θ|, in float64 so that deep products do not
  overflow. Data independent.
* ``grad_norm`` (Abdelfattah et al. 2021): sum over conv/linear layers of the L2 norm of the
  cross-entropy gradient of their weights on one batch.
* ``jacob_cov`` (Mellor et al., first version, 2020): from the Jacobian of the summed output with
  respect to each input, C = their correlation matrix, eigenvalues λ; score = -Σ log(λ + k) + 1/(λ + k),
  k = 1e-5. A Jacobian row that is constant (an input the network ignores entirely) counts as
  perfectly correlated, so a network disconnected from its input gets the lowest score, not NaN.

Every proxy works on a copy of the model (BatchNorm statistics, signs and gradients of the caller's
model are left alone) in training mode as in the reference implementations, and returns NaN where
the score is undefined (e.g. a singular NASWOT kernel), which the worker stores as null.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

PROXIES: tuple[str, ...] = ("naswot", "synflow", "grad_norm", "jacob_cov")
# activations whose input sign defines a unit's on/off state for NASWOT (the paper uses ReLU)
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Hardswish,
    nn.Mish,
)
WEIGHTED: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
JACOB_K = 1e-5


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHTED)]


@torch.no_grad()
def naswot(model: nn.Module, x: Tensor) -> float:
    """log |det K| of the activation-pattern kernel of ``x`` (float64); NaN when K is singular or
    the network has no ReLU-like layer."""
    net = copy.deepcopy(model).train()
    n = len(x)
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    hooked = 0

    def count(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        code = (inputs[0].detach().reshape(n, -1) > 0).float()  # before an in-place activation runs
        agree = code @ code.T + (1.0 - code) @ (1.0 - code).T  # units where i and j are both on or both off
        kernel.add_(agree.double())

    handles = []
    for module in net.modules():
        if isinstance(module, ACTIVATIONS):
            handles.append(module.register_forward_pre_hook(count))
            hooked += 1
    try:
        net(x)
    finally:
        for handle in handles:
            handle.remove()
    if not hooked:
        return math.nan
    sign, logdet = torch.linalg.slogdet(kernel.cpu())
    return _finite(float(logdet)) if float(sign) > 0 else math.nan


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Σ |θ ⊙ ∂R/∂θ| over conv/linear weights, |θ| everywhere, BatchNorm removed, float64."""
    net = copy.deepcopy(model)
    _remove_batchnorm(net)
    net = net.double().eval()  # BatchNorm is gone; eval only silences dropout
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    net.zero_grad(set_to_none=True)
    net(ones).sum().backward()
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for layer in _weighted_layers(net):
            if layer.weight.grad is not None:
                total += (layer.weight * layer.weight.grad).abs().sum()
    return _finite(float(total))


def _remove_batchnorm(net: nn.Module) -> None:
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _remove_batchnorm(child)


def grad_norm(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Σ over conv/linear layers of ‖∂loss/∂W‖₂ for the cross-entropy loss on one batch."""
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(x), y).backward()
    total = 0.0
    for layer in _weighted_layers(net):
        if layer.weight.grad is not None:
            total += float(layer.weight.grad.norm())
    return _finite(total)


def jacob_cov(model: nn.Module, x: Tensor) -> float:
    """-Σ log(λ + k) + 1/(λ + k) over the eigenvalues of the input Jacobians' correlation matrix."""
    net = copy.deepcopy(model).train()
    inputs = x.detach().clone().requires_grad_(True)
    out = net(inputs)
    (grad,) = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    if grad is None:  # the output does not depend on the input at all
        grad = torch.zeros_like(inputs)
    jacobian = grad.reshape(len(x), -1).double().cpu()
    centred = jacobian - jacobian.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1)
    constant = norms < 1e-12 * (1.0 + jacobian.abs().amax(dim=1))
    unit = centred / torch.where(constant, torch.ones_like(norms), norms)[:, None]
    corr = unit @ unit.T
    corr[constant, :] = 1.0  # undefined correlation: as if identical to every other example
    corr[:, constant] = 1.0
    eigenvalues = torch.linalg.eigvalsh(corr).clamp_min(0.0)
    score = -float(torch.sum(torch.log(eigenvalues + JACOB_K) + 1.0 / (eigenvalues + JACOB_K)))
    return _finite(score)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute(
    model: nn.Module, x: Tensor, y: Tensor, names: Sequence[str] = PROXIES
) -> tuple[dict[str, float], dict[str, float]]:
    """({proxy: score}, {proxy: seconds}) for the named proxies; ``x``/``y`` on the model's device."""
    runners: dict[str, Callable[[], float]] = {
        "naswot": lambda: naswot(model, x),
        "synflow": lambda: synflow(model, tuple(x.shape[1:])),
        "grad_norm": lambda: grad_norm(model, x, y),
        "jacob_cov": lambda: jacob_cov(model, x),
    }
    unknown = [n for n in names if n not in runners]
    if unknown:
        raise ValueError(f"unknown proxy {unknown[0]!r}; allowed: {', '.join(PROXIES)}")
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name in names:
        _sync(x.device)
        started = time.perf_counter()
        scores[name] = runners[name]()
        _sync(x.device)
        seconds[name] = time.perf_counter() - started
    return scores, seconds


__all__ = ["ACTIVATIONS", "PROXIES", "compute", "grad_norm", "jacob_cov", "naswot", "synflow"]
