"""Decoupled Direction and Norm attack (DDN), L2.

Reference: Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger. Decoupling Direction and Norm
for Efficient Gradient-Based L2 Adversarial Attacks and Defenses. CVPR 2019.
https://arxiv.org/abs/1811.09600
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._common import (check_inputs, check_norm, label_margin, lp_norm, view_as_batch)


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
    batch = x.shape[0]
    worst_norm = lp_norm(torch.maximum(x, 1 - x), 2)  # largest radius the box allows
    best_norm = torch.full((batch,), math.inf, device=x.device, dtype=x.dtype)
    best_adv = x.clone()
    radius = worst_norm if eps is None else torch.full_like(worst_norm, eps).minimum(worst_norm)
    delta = torch.zeros_like(x)

    for i in range(steps):
        alpha = _cosine(i, steps, step_size, step_size / 100)
        gam = _cosine(i, steps, gamma, gamma / 50)
        delta.requires_grad_(True)
        x_adv = x + delta
        margin = label_margin(model(x_adv), labels, targeted)  # > 0 while not adversarial
        (grad,) = torch.autograd.grad(margin.sum(), delta)
        delta, margin, x_adv = delta.detach(), margin.detach(), x_adv.detach()

        d_norm = lp_norm(delta, 2)
        is_adv = margin < 0
        better = is_adv & (d_norm < best_norm)
        best_norm = torch.where(better, d_norm, best_norm)
        best_adv = torch.where(view_as_batch(better, x), x_adv, best_adv)

        g_norm = lp_norm(grad, 2)
        if i == 0 and eps is None:
            # start just past the linearised boundary (exactly on it a linear model never crosses)
            radius = torch.minimum(margin.abs() / g_norm.clamp_min(1e-12) * (1 + gam), worst_norm)
        else:
            radius = torch.minimum(radius * (1 + gam - (2 * gam) * is_adv), worst_norm)
        # step of length alpha * radius against the gradient, then rescale onto the sphere
        delta = delta.addcmul(grad, view_as_batch(radius * (-alpha) / g_norm.clamp_min(1e-12), x))
        delta.mul_(view_as_batch(radius / lp_norm(delta, 2).clamp_min(1e-12), x))
        delta = (x + delta).clamp_(0, 1).sub_(x)  # clamp_box, in place

    return best_adv
