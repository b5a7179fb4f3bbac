"""Private helpers shared by the attacks: argument checks, projections, gradients, bookkeeping.

Conventions (every attack follows them):
- ``inputs``: (B, ...) float tensor in [0, 1]; ``labels``: (B,) long tensor. With
  ``targeted=True``, ``labels`` are the target classes.
- ``norm`` is 1, 2 or ``math.inf`` (floats); see :func:`check_norm`.
- an attack returns ``adv`` with the inputs' shape, dtype and device, in [0, 1], equal to the
  input where no adversarial point was found, and never modifies ``inputs``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .norms import INF, lp_norm, norm_name


def check_norm(norm: float, supported: tuple[float, ...], attack: str) -> float:
    """Return ``norm`` as a float if ``attack`` supports it; ValueError otherwise."""
    try:
        p = float(norm)
    except (TypeError, ValueError):
        raise ValueError(f"{attack}: norm must be 1, 2 or inf, got {norm!r}") from None
    if p not in supported:
        names = ", ".join(norm_name(s) for s in supported)
        raise ValueError(f"{attack} does not support norm {norm!r}; supported: {names}")
    return p


def check_inputs(inputs: Tensor, labels: Tensor) -> None:
    """Shape and range checks on an attack's inputs (ValueError, not assert)."""
    if inputs.ndim < 2:
        raise ValueError(f"inputs must be batched (B, ...), got shape {tuple(inputs.shape)}")
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"labels must have shape ({inputs.shape[0]},), got {tuple(labels.shape)}")
    if inputs.numel() and (inputs.min() < 0 or inputs.max() > 1):
        raise ValueError("inputs must lie in [0, 1]; put normalisation inside the model")


def flat(x: Tensor) -> Tensor:
    """(B, ...) -> (B, D)."""
    return x.reshape(x.shape[0], -1)


def sort_rows(x: Tensor, descending: bool = False, indices: bool = True) -> tuple[Tensor, Tensor | None]:
    """``torch.sort(x, dim=1, descending=descending)`` for a 2-D tensor, fast on the CPU.

    PyTorch's CPU sort costs about 1.5 us per row of 64 (300 us for a batch of 200, more than
    a forward and backward pass of the benchmark MLPs); NumPy's argsort is about 6x faster and
    its sort, when only the values are needed (``indices=False``, which returns ``(values,
    None)``), about 20x. CPU float tensors that need no gradient go through NumPy, anything else
    through torch.sort. Values are the same; among equal values the order of the indices may
    differ (neither sort is stable). Rows must not contain NaN.
    """
    if x.device.type == "cpu" and not x.requires_grad and x.dtype in (torch.float32, torch.float64):
        a = -x.numpy() if descending else x.numpy()
        if not indices:
            v = torch.from_numpy(np.sort(a, axis=1))
            return (v.neg_() if descending else v), None
        order = torch.from_numpy(np.argsort(a, axis=1))
        return x.gather(1, order), order
    v, order = torch.sort(x, dim=1, descending=descending)
    return v, (order if indices else None)


def update_rows_(dst: Tensor, src: Tensor, rows: Tensor) -> Tensor:
    """``dst[rows] = src[rows]`` in place, for a boolean ``rows`` (B,) and finite tensors (B, ...).

    ``torch.lerp`` with a weight of exactly 0 or 1 returns ``dst`` or ``src`` bit for bit (it
    computes ``end - (end - start) * (1 - weight)`` for weights >= 0.5); for the small batches of
    an attack's inner loop it is several times faster than ``torch.where`` with a broadcast
    boolean mask, and unlike boolean indexing it never synchronises a GPU. tests/test_attack_helpers.py
    checks the exactness.
    """
    return dst.lerp_(src, view_as_batch(rows, dst).to(dst.dtype))


def view_as_batch(v: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, ...) broadcastable against ``like``."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def project_l1_ball(delta: Tensor, eps: Tensor) -> Tensor:
    """Euclidean projection of each sample onto the L1 ball of radius eps (B,) (sort-based, exact).

    The projection soft-thresholds at ``theta = max(0, (sum_{k <= rho} mu_k - eps) / rho)``, with
    ``mu`` the sorted magnitudes and ``rho`` the number of k with ``k mu_k > sum_{j <= k} mu_j - eps``
    (they form a prefix). Rows already inside get ``theta <= 0`` and come back unchanged.
    """
    f = flat(delta)
    abs_f = f.abs()
    mu, _ = sort_rows(abs_f, descending=True, indices=False)
    excess = mu.cumsum(dim=1).sub_(eps.unsqueeze(1))  # sum_{j <= k} mu_j - eps
    ar = torch.arange(1, f.shape[1] + 1, device=f.device, dtype=f.dtype)
    rho = (mu * ar > excess).sum(dim=1, keepdim=True).clamp_min_(1)
    theta = excess.gather(1, rho - 1).div_(rho).clamp_min_(0)
    out = abs_f.sub_(theta).clamp_min_(0).mul_(f.sign())
    return out.view_as(delta)


def project_ball(delta: Tensor, eps: Tensor, p: float) -> Tensor:
    """Project each ``delta[i]`` onto the Lp ball of radius ``eps[i]`` (eps shape (B,))."""
    if p == INF:
        e = view_as_batch(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)
    if p == 2:
        n = lp_norm(delta, 2).clamp_min(1e-12)
        factor = torch.clamp(eps / n, max=1.0)
        return delta * view_as_batch(factor, delta)
    return project_l1_ball(delta, eps)


def clamp_box(inputs: Tensor, delta: Tensor) -> Tensor:
    """Return delta such that inputs + delta lies in [0, 1]."""
    return (inputs + delta).clamp(0, 1) - inputs


def input_grad(model: nn.Module, x: Tensor, weigh) -> tuple[Tensor, object, Tensor]:
    """Logits at ``x`` and the input gradient of a loss given by its gradient in logit space.

    One forward and one backward pass. ``weigh(logits)`` receives the detached logits (B, C) and
    returns ``(w, aux)``: ``w`` (B, C) is the loss's gradient with respect to the logits (for a
    per-sample loss summed over the batch) and ``aux`` anything the caller wants back (the loss
    values, say). The backward pass starts at the logits with ``w`` as incoming gradient, so the
    loss itself never enters the autograd graph: for the small models this toolkit studies, the
    handful of nodes a loss adds to a backward pass costs as much as the model's own layers.
    Works under ``torch.no_grad()`` too. Returns ``(logits, aux, grad)``, grad shaped like ``x``.
    """
    xa = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(xa)
    zd = z.detach()
    w, aux = weigh(zd)
    (g,) = torch.autograd.grad(z, xa, w)
    return zd, aux, g


def pair_backward(model: nn.Module, x: Tensor, pairs):
    """One forward pass at ``x``, then input gradients of logit pairs, one backward pass each.

    ``pairs(logits)`` receives the detached logits (B, C) and returns ``(lead, take)``, class
    indices (B, 1) and (B, K): pair j of sample i is ``z[i, take[i, j]] - z[i, lead[i]]``.
    Returns ``(logits, lead, take, weights, grad)``: the detached logits; the pairs; ``weights``
    (K, B, C), the logit-space gradient of pair j in row j (+1 at ``take``, -1 at ``lead``); and
    ``grad(w)``, the flat (B, D) input gradient of ``sum_i w[i] . z[i]`` for any ``w`` (B, C),
    by one backward pass through the same graph; for ``w`` (K, B, C), the K gradients (K, B, D)
    by one vectorised backward pass (``is_grads_batched``: the same values as K passes on the
    benchmark MLPs and a CNN, 1.5 to 2 times faster on small MLPs; K passes where a layer cannot
    be batched). The forward pass is never replicated: K gradients of a sample cost one forward
    pass.
    """
    xa = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(xa)
    zd = z.detach()
    lead, take = pairs(zd)
    weights = torch.zeros_like(zd).scatter_(1, lead, -1.0).expand(take.shape[1], -1, -1).clone()
    weights.scatter_(2, take.t().unsqueeze(2), 1.0)

    def grad(w: Tensor) -> Tensor:
        if w.dim() == zd.dim() + 1:
            try:  # (K, B, C): K gradients in one vectorised backward pass
                (g,) = torch.autograd.grad(z, xa, w, retain_graph=True, is_grads_batched=True)
            except (RuntimeError, NotImplementedError):  # a layer that vmap cannot batch: K passes
                return torch.stack([grad(wk) for wk in w])
            return g.reshape(w.shape[0], w.shape[1], -1)
        (g,) = torch.autograd.grad(z, xa, w, retain_graph=True)
        return flat(g)

    return zd, lead, take, weights, grad


def is_adversarial(logits: Tensor, labels: Tensor, targeted: bool = False) -> Tensor:
    """(B,) bool: prediction differs from the label (untargeted) or equals the target."""
    pred = logits.argmax(dim=1)
    return pred == labels if targeted else pred != labels


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A local RNG so attacks are deterministic under ``seed`` without touching global state."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def random_in_ball(like: Tensor, eps: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """A random perturbation inside the Lp ball of radius eps (B,), same shape as ``like``."""
    b = like.shape[0]
    d = flat(like).shape[1]
    if p == INF:
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype) * 2 - 1
        return u * view_as_batch(eps, like)
    if p == 2:
        g = torch.randn((b, d), generator=generator, device=like.device, dtype=like.dtype)
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        r = torch.rand((b, 1), generator=generator, device=like.device, dtype=like.dtype) ** (1.0 / d)
        return (g * r * eps.unsqueeze(1)).view_as(like)
    # L1: Laplace direction, scaled to a uniform radius fraction
    e = torch.empty((b, d), device=like.device, dtype=like.dtype).exponential_(generator=generator)
    s = torch.randint(0, 2, (b, d), generator=generator, device=like.device).to(like.dtype) * 2 - 1
    g = e * s
    g = g / g.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    r = torch.rand((b, 1), generator=generator, device=like.device, dtype=like.dtype) ** (1.0 / d)
    return (g * r * eps.unsqueeze(1)).view_as(like)
