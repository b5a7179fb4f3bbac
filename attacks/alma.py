"""Augmented Lagrangian Method for Adversarial attacks (ALMA), L1 and L2.

Reference: Rony, Granger, Pedersoli, Ben Ayed. Augmented Lagrangian Adversarial Attacks.
ICCV 2021. https://arxiv.org/abs/2011.11857
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_inputs, check_norm, clamp_box, dual, label_margin, lp_norm, view_as_batch

# Defaults of the paper (and its reference implementation) for the multiplier/penalty updates.
_MU_INIT = 1.0  # initial Lagrange multiplier
_RHO_INIT = 1.0  # initial penalty parameter
_RHO_GROWTH = 1.2  # penalty increase when the constraint did not improve ...
_RHO_CHECK = 10  # ... over this many steps ...
_RHO_TAU = 0.95  # ... by this factor
_EMA = 0.9  # moving average of the multiplier, RMSProp smoothing and momentum
_LR_REDUCTION = 0.01  # learning rate decays to this fraction once a sample is broken
_LOGIT_TOL = 1e-4  # margin offset so that solutions exactly on the boundary are not accepted


def _penalty_p2(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """Penalty-Lagrangian function P2 (Birgin et al. 2005) used by ALMA, applied to y = margin."""
    above = mu * y + mu * rho * y ** 2 + rho ** 2 * y ** 3 / 6
    below = mu * y / (1 - rho * y.clamp(max=0))
    return torch.where(y >= 0, above, below)


def _penalty_p2_grad(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """Derivative of :func:`_penalty_p2` in ``y`` (closed form, no autograd)."""
    above = mu * (1 + 2 * rho * y) + rho ** 2 * y ** 2 / 2
    below = mu / (1 - rho * y.clamp(max=0)) ** 2
    return torch.where(y >= 0, above, below)


def _scaled_margin(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Margin (> 0 while not adversarial) divided by the spread of the top logits (DLR, Croce & Hein 2020).

    The ratio makes the constraint insensitive to the scale of the logits; with fewer than 3
    (untargeted) or 4 (targeted) classes the plain margin is used.
    """
    margin = label_margin(logits, labels, targeted) + _LOGIT_TOL
    k = logits.shape[1]
    if targeted and k >= 4:
        top = logits.topk(4, dim=1).values
        scale = top[:, 0] - (top[:, 2] + top[:, 3]) / 2
    elif not targeted and k >= 3:
        top = logits.topk(3, dim=1).values
        scale = top[:, 0] - top[:, 2]
    else:
        return margin
    return margin / (scale + 1e-8)


def alma(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm: float = 2.0, steps: int = 500,
         targeted: bool = False, step_size: float | None = None) -> Tensor:
    """ALMA: minimise ``||delta||_p`` subject to misclassification with an augmented Lagrangian.

    The loss ``||delta||_p + P2(margin, rho, mu)`` (P2 a penalty-Lagrangian function, ``margin``
    the logit margin over the spread of the top logits, > 0 while not adversarial) is minimised
    by RMSProp with momentum, clipped to the box. The multiplier ``mu`` follows a moving average
    of the penalty's derivative, the penalty ``rho`` grows by 1.2 when the constraint did not
    improve by 5% in 10 steps, and each sample's learning rate decays exponentially (to 1%)
    from the step it was first broken. For L1 the distance is handled by a proximal step (a soft
    threshold scaled by the RMSProp preconditioner) so the iterates are exactly sparse.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; used as is (its mode is not changed).
    inputs : Tensor
        (B, ...) inputs in [0, 1]; not modified.
    labels : Tensor
        (B,) true labels, or target labels when ``targeted``.
    norm : float
        1 or 2.
    steps : int
        Number of iterations; one forward and one backward pass each.
    targeted : bool
        Reach ``labels`` instead of leaving them.
    step_size : float or None
        Length (in the attacked norm) of the first step relative to the linear estimate of the
        distance to the boundary, ``margin / ||grad margin||_dual``; sets each sample's initial
        learning rate (the paper's ``init_lr_distance``, made scale-free). ``None``: 0.5 for L2,
        2.0 for L1 (tuned on linear models and small ReLU networks).

    Returns
    -------
    Tensor
        Adversarial inputs with the smallest norm found; the input itself where none was found.

    Notes
    -----
    Differences from the paper's reference implementation: the initial learning rate comes from
    the linear boundary estimate (scale-free) rather than a fixed ``init_lr_distance``; for L1
    the distance enters through a preconditioned soft threshold instead of its subgradient (with
    the subgradient the L1 iterates are never exactly sparse and the median radius on linear
    models was ~6% above the optimum; with the proximal step it is within 0.5%). The penalty P2,
    the multiplier and penalty updates and RMSProp settings follow the paper.
    """
    p = check_norm(norm, (1.0, 2.0), "alma")
    check_inputs(inputs, labels)
    if steps < 1:
        raise ValueError(f"alma: steps must be >= 1, got {steps}")
    if step_size is None:
        step_size = 2.0 if p == 1 else 0.5
    if not step_size > 0:
        raise ValueError(f"alma: step_size must be > 0, got {step_size}")
    x = inputs.detach()
    if x.shape[0] == 0:
        return x.clone()
    batch = x.shape[0]
    kw = dict(device=x.device, dtype=x.dtype)
    mu = torch.full((batch,), _MU_INIT, **kw)
    rho = torch.full((batch,), _RHO_INIT, **kw)
    best_norm = torch.full((batch,), float("inf"), **kw)
    best_adv = x.clone()
    found = torch.zeros(batch, dtype=torch.bool, device=x.device)
    step_found = torch.full((batch,), float(steps), **kw)
    square_avg = torch.ones_like(x)
    momentum = torch.zeros_like(x)
    lr = torch.ones((batch,), **kw)
    prev_margin = None
    delta = torch.zeros_like(x)

    for i in range(steps):
        delta.requires_grad_(True)
        x_adv = x + delta
        margin = _scaled_margin(model(x_adv), labels, targeted)
        dist = lp_norm(delta, p)

        m_det = margin.detach()
        if i == 0:
            prev_margin = m_det
        elif (i + 1) % _RHO_CHECK == 0:
            improved = m_det < _RHO_TAU * prev_margin
            rho = torch.where(found | improved, rho, rho * _RHO_GROWTH)
            prev_margin = m_det
        if i > 0:
            # new multiplier: derivative of the penalty at the current margin
            new_mu = _penalty_p2_grad(m_det, rho, mu)
            mu = (_EMA * mu + (1 - _EMA) * new_mu).clamp(1e-6, 1e12)

        is_adv = m_det < 0
        d_det = dist.detach()
        better = is_adv & (d_det < best_norm)
        best_norm = torch.where(better, d_det, best_norm)
        best_adv.copy_(torch.where(view_as_batch(better, x), x_adv.detach(), best_adv))
        step_found.masked_fill_(is_adv & ~found, i)
        found |= is_adv

        penalty = _penalty_p2(margin, rho, mu).sum()
        if i == 0:
            # d||delta||_2/d delta is undefined at delta = 0; also get dP2/dmargin for the lr below
            grad, d_pen = torch.autograd.grad(penalty, (delta, margin))
        elif p == 1:  # L1: the distance is handled by the proximal step below
            (grad,) = torch.autograd.grad(penalty, delta)
        else:
            (grad,) = torch.autograd.grad(penalty + dist.sum(), delta)
        delta = delta.detach()

        square_avg.mul_(_EMA).addcmul_(grad, grad, value=1 - _EMA)
        precond = square_avg.sqrt().add_(1e-8)
        momentum.mul_(_EMA).add_(grad / precond)
        if i == 0:
            # learning rate such that the first step covers step_size times the linear estimate
            # of the distance to the boundary, margin / ||grad margin||_dual
            g_margin_dual = lp_norm(grad, dual(p)) / d_pen.detach().abs().clamp_min(1e-12)
            target = step_size * m_det.abs() / g_margin_dual.clamp_min(1e-12)
            target = torch.minimum(target, lp_norm(torch.maximum(x, 1 - x), p))  # box-limited
            lr = target / lp_norm(momentum, p).clamp_min(1e-12)
        decay = _LR_REDUCTION ** ((i - step_found).clamp(min=0) / (steps - step_found).clamp(min=1))
        step_lr = view_as_batch(lr * decay, x)
        delta = delta - step_lr * momentum
        if p == 1 and i > 0:
            # the momentum buffer amplifies steady gradients by 1 / (1 - _EMA); the distance's
            # proximal threshold gets the same weight so penalty and distance stay balanced
            thresh = step_lr / precond / (1 - _EMA)
            delta = delta.sign() * (delta.abs() - thresh).clamp(min=0)
        delta = clamp_box(x, delta)

    return best_adv
