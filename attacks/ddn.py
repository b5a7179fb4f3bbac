"""Decoupled Direction and Norm attack (DDN), L2.

Reference: Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger. Decoupling Direction and Norm
for Efficient Gradient-Based L2 Adversarial Attacks and Defenses. CVPR 2019.
https://arxiv.org/abs/1811.09600
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._common import check_inputs, check_norm, flat, input_grad, lp_norm, margin_weights, update_rows_


def _cosine(i: int, steps: int, start: float, end: float) -> float:
    """Cosine annealing from ``start`` (i = 0) to ``end`` (i = steps)."""
    return end + (start - end) * (1 + math.cos(math.pi * i / steps)) / 2


def ddn(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm: float = 2.0, steps: int = 100,
        targeted: bool = False, step_size: float = 1.0, gamma: float = 0.05,
        eps: float | None = None) -> Tensor:
    """Decoupled Direction and Norm attack: gradient steps on a sphere whose radius adapts.

    Each step moves ``delta`` along the normalised gradient of the logit margin (the direction),
    then rescales it to the per-sample radius ``r`` (the norm) and clips it to the box. ``r``
    shrinks by ``(1 - gamma)`` after a step that was adversarial and grows by ``(1 + gamma)``
    after one that was not.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; used as is (its mode is not changed).
    inputs : Tensor
        (B, ...) inputs in [0, 1]; not modified.
    labels : Tensor
        (B,) true labels, or target labels when ``targeted``.
    norm : float
        Only 2 is supported.
    steps : int
        Number of iterations; one forward and one backward pass each.
    targeted : bool
        Reach ``labels`` instead of leaving them.
    step_size : float
        Initial step length relative to the current radius ``r``, cosine-annealed to 1/100 of it.
    gamma : float
        Initial radius update factor, cosine-annealed to ``gamma / 50``.
    eps : float or None
        Initial radius. ``None`` (default): each sample starts at the linear estimate of its
        distance to the boundary, ``margin / ||grad||``, from the first gradient.

    Returns
    -------
    Tensor
        Adversarial inputs with the smallest L2 norm found; the input itself where none was found.

    Notes
    -----
    Differences from the paper (all for precision and scale independence): the loss is the logit
    margin rather than cross-entropy (its gradient points at the nearest boundary of a linear
    model, where the cross-entropy gradient mixes in the other classes); ``gamma`` is annealed
    rather than fixed (a fixed ``gamma`` leaves the radius on a grid of ratio ``1 + gamma``);
    step lengths are relative to the radius; the default initial radius is the linear boundary
    estimate instead of 1; no 8-bit quantisation.
    """
    check_norm(norm, (2.0,), "ddn")
    check_inputs(inputs, labels)
    if steps < 1:
        raise ValueError(f"ddn: steps must be >= 1, got {steps}")
    if not step_size > 0 or not 0 < gamma < 1:
        raise ValueError("ddn: need step_size > 0 and 0 < gamma < 1")
    if eps is not None and not eps > 0:
        raise ValueError(f"ddn: eps must be > 0, got {eps}")
    x = inputs.detach()
    if x.shape[0] == 0:
        return x.clone()
    shape = x.shape
    x = flat(x)  # the state is kept flat, (B, D); only the model sees the input's shape
    worst_norm = lp_norm(torch.maximum(x, 1 - x), 2)  # largest radius the box allows
    best_norm = torch.full_like(worst_norm, math.inf)
    best_adv = x.clone()
    radius = worst_norm if eps is None else torch.full_like(worst_norm, eps).minimum(worst_norm)
    x_adv = x.clone()  # the iterate, in the box; delta = x_adv - x and its norm are kept with it
    delta = torch.zeros_like(x)
    d_norm = torch.zeros_like(worst_norm)

    def weigh(z):
        return margin_weights(z, labels, targeted)

    for i in range(steps):
        alpha = _cosine(i, steps, step_size, step_size / 100)
        gam = _cosine(i, steps, gamma, gamma / 50)
        _, margin, grad = input_grad(model, x_adv.view(shape), weigh)  # margin > 0 while not adversarial
        grad = grad.view_as(x)

        is_adv = margin < 0
        cand = torch.where(is_adv, d_norm, math.inf)
        update_rows_(best_adv, x_adv, cand < best_norm)
        best_norm = torch.minimum(best_norm, cand)

        g_norm = lp_norm(grad, 2).clamp_min_(1e-12)
        if i == 0 and eps is None:
            # start just past the linearised boundary (exactly on it a linear model never crosses)
            radius = torch.minimum(margin.abs().div_(g_norm).mul_(1 + gam), worst_norm)
        else:
            radius = torch.minimum(radius * torch.where(is_adv, 1 - gam, 1 + gam), worst_norm)
        # step of length alpha * radius against the gradient, rescale onto the sphere, clip to the box
        delta.addcmul_(grad, radius.div(g_norm).mul_(-alpha).unsqueeze(1))
        scale = radius.div(lp_norm(delta, 2).clamp_min_(1e-12))
        x_adv = torch.addcmul(x, delta, scale.unsqueeze(1)).clamp_(0, 1)
        delta = x_adv - x
        d_norm = lp_norm(delta, 2)

    return best_adv.view(shape)

