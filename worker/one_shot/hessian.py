"""The collapse indicator of RobustDARTS (Zela et al., "Understanding and Robustifying
Differentiable Architecture Search", ICLR 2020): the dominant eigenvalue of the Hessian of the
validation loss with respect to the architecture weights, and DARTS-ES, their rule for stopping
the search when it has grown too fast (``scion.configs.one_shot.DARTSMethodConfig``).

The eigenvalue is found by power iteration on Hessian-vector products, each one backward pass
through the gradient's own graph (double backward), so the Hessian itself is never formed. The
paper computes the whole spectrum of the explicit Hessian instead; for DARTS' few architecture
weights both give the same largest eigenvalue (``tests/unit/test_one_shot_methods.py`` checks it
against ``torch.linalg.eigvalsh``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

TOLERANCE = 1e-4  # power iteration ends once the Rayleigh quotient moves less than this, relatively

Vectors = list[Tensor]


def hvp_function(loss: Tensor, params: Sequence[Tensor],
                 average: Callable[[Vectors], Vectors] | None = None) -> Callable[[Vectors], Vectors]:
    """``v -> H v``, H the Hessian of ``loss`` in ``params`` (tensors that require grad): the
    gradient is built once with its graph kept, each product is one more backward through it.
    ``average`` combines the products of several processes (each on its shard of the batches)."""
    grads = torch.autograd.grad(loss, list(params), create_graph=True)

    def hvp(vectors: Vectors) -> Vectors:
        dot = sum(((g * v).sum() for g, v in zip(grads, vectors)), torch.zeros((), device=loss.device))
        found = torch.autograd.grad(dot, list(params), retain_graph=True, allow_unused=True)
        products = [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(found, params)]
        return average(products) if average is not None else products

    return hvp


def _dot(a: Vectors, b: Vectors) -> Tensor:
    return sum(((x * y).sum() for x, y in zip(a, b)), torch.zeros((), device=a[0].device, dtype=a[0].dtype))


def _power_iteration(hvp: Callable[[Vectors], Vectors], start: Vectors, iterations: int, tolerance: float,
                     shift: float = 0.0) -> float:
    """The eigenvalue of largest magnitude of H - shift I (the Rayleigh quotient of the last vector)."""
    norm = float(_dot(start, start)) ** 0.5
    v = [s / norm for s in start]
    estimate = 0.0
    for step in range(iterations):
        hv = [h - shift * x for h, x in zip(hvp(v), v)]
        previous, estimate = estimate, float(_dot(v, hv))
        norm = float(_dot(hv, hv)) ** 0.5
        if norm == 0.0:  # v lies in the kernel (a flat loss): the Hessian has nothing larger to find along it
            return estimate
        v = [h / norm for h in hv]
        if step > 0 and abs(estimate - previous) <= tolerance * max(abs(estimate), 1e-12):
            break
    return estimate


def dominant_eigenvalue(hvp: Callable[[Vectors], Vectors], like: Sequence[Tensor], *, iterations: int,
                        tolerance: float = TOLERANCE, seed: int = 0) -> float:
    """The largest eigenvalue of the (symmetric) Hessian behind ``hvp``, whose vectors are shaped
    like ``like``, by at most ``iterations`` power-iteration steps from a seeded random vector.
    Power iteration finds the eigenvalue of largest magnitude; when that one is negative, a second
    run on H - that I finds the largest (as RobustDARTS takes the maximum of the spectrum)."""
    generator = torch.Generator().manual_seed(seed)  # the global generators are left alone: resumes match
    start = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in like]
    largest = _power_iteration(hvp, start, iterations, tolerance)
    if largest >= 0:
        return largest
    return largest + _power_iteration(hvp, start, iterations, tolerance, shift=largest)


def smoothed(eigenvalues: Sequence[float], epoch: int, window: int) -> float:
    """The eigenvalue averaged over the ``window`` epochs around ``epoch`` (1-based:
    ``eigenvalues[e - 1]`` is epoch e's), ``epoch - window // 2`` to ``epoch + (window - 1) // 2``."""
    first = epoch - window // 2
    return sum(eigenvalues[first - 1:first - 1 + window]) / window


def early_stop_epoch(eigenvalues: Sequence[float], window: int = 5, ratio: float = 0.75) -> int | None:
    """DARTS-ES after the last epoch of ``eigenvalues`` (one per epoch, in order): with the
    eigenvalue smoothed over ``window`` = k epochs around each epoch, and i the latest epoch whose
    window is complete (k // 2 epochs before the last for odd k), the search stops when
    smoothed(i - k) / smoothed(i) < ``ratio`` (the curvature has grown by more than 1 / ratio
    over k epochs), and the architecture of epoch i - k is returned: that epoch, or None.

    Only complete windows are compared, so the rule first applies at epoch 2k (10 for k = 5); a
    smoothed(i) that is not positive (no curvature yet) never stops the search."""
    last = len(eigenvalues)
    i = last - (window - 1) // 2
    if i - window - window // 2 < 1:
        return None
    now, before = smoothed(eigenvalues, i, window), smoothed(eigenvalues, i - window, window)
    if now > 0 and before < ratio * now:
        return i - window
    return None


__all__ = ["TOLERANCE", "dominant_eigenvalue", "early_stop_epoch", "hvp_function", "smoothed"]
