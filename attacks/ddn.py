"""Decoupled Direction and Norm attack (DDN), L2.

Reference: Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger. Decoupling Direction and Norm
for Efficient Gradient-Based L2 Adversarial Attacks and Defenses. CVPR 2019.
https://arxiv.org/abs/1811.09600
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._adaptive_radius import Step, adaptive_radius_descent
from ._common import check_inputs, check_norm
from .norms import lp_norm


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
    radius = None  # per-sample radius r

    def rule(st: Step) -> Tensor:
        nonlocal radius
        g_norm = lp_norm(st.grad, 2).clamp_min_(1e-12)
        if st.i == 0 and eps is None:
            # start just past the linearised boundary (exactly on it a linear model never crosses)
            radius = torch.minimum(st.margin.abs().div_(g_norm).mul_(1 + st.gamma), st.worst_norm)
        else:
            if radius is None:
                radius = torch.full_like(st.worst_norm, eps).minimum(st.worst_norm)
            radius = torch.minimum(radius * torch.where(st.is_adv, 1 - st.gamma, 1 + st.gamma), st.worst_norm)
        # step of length alpha * radius against the gradient, rescale onto the sphere, clip to the box
        st.delta.addcmul_(st.grad, radius.div(g_norm).mul_(-st.alpha).unsqueeze(1))
        scale = radius.div(lp_norm(st.delta, 2).clamp_min_(1e-12))
        return torch.addcmul(st.x, st.delta, scale.unsqueeze(1)).clamp_(0, 1)

    return adaptive_radius_descent(model, inputs, labels, p=2.0, steps=steps, targeted=targeted,
                                   step_size=step_size, gamma=gamma, rule=rule)
