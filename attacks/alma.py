"""Augmented Lagrangian Method for Adversarial attacks (ALMA), L1 and L2.

Reference: Rony, Granger, Pedersoli, Ben Ayed. Augmented Lagrangian Adversarial Attacks.
ICCV 2021. https://arxiv.org/abs/2011.11857
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_inputs, check_norm, flat, input_grad
from .norms import INF, dual, lp_norm

# Defaults of the paper (and its reference implementation) for the multiplier/penalty updates.
_MU_INIT = 1.0  # initial Lagrange multiplier
_RHO_INIT = 1.0  # initial penalty parameter
_RHO_GROWTH = 1.2  # penalty increase when the constraint did not improve ...
_RHO_CHECK = 10  # ... over this many steps ...
_RHO_TAU = 0.95  # ... by this factor
_EMA = 0.9  # moving average of the multiplier, RMSProp smoothing and momentum
_LR_REDUCTION = 0.01  # learning rate decays to this fraction once a sample is broken
_LOGIT_TOL = 1e-4  # margin offset so that solutions exactly on the boundary are not accepted


def _penalty_p2_grad_parts(y: Tensor, rho: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, c)`` such that ``dP2/dy (y, rho, mu) = mu * a + c`` (affine in ``mu``).

    P2 is the penalty-Lagrangian function of Birgin et al. (2005) that ALMA applies to the
    margin: ``P2 = mu y + mu rho y^2 + rho^2 y^3 / 6`` for ``y >= 0`` and
    ``mu y / (1 - rho y)`` below. Its derivative is ``mu (1 + 2 rho y) + (rho y)^2 / 2`` above
    zero and ``mu / (1 - rho y)^2`` below; with ``t = rho y`` (``rho > 0``) and ``t+``, ``t-``
    its positive and negative parts both branches are ``mu (1 + 2 t+) / (1 - t-)^2 + (t+)^2 / 2``.
    """
    t = rho * y
    t_pos = t.clamp(min=0)
    below = (1 - t.clamp_(max=0)).pow_(-2)  # 1 / (1 - t-)^2
    a = torch.addcmul(below, below, t_pos, value=2)
    c = t_pos.square_().mul_(0.5)
    return a, c


def _margin_coefficients(n_classes: int, targeted: bool, like: Tensor) -> tuple[Tensor, ...]:
    """Constants of :func:`_scaled_margin`: ``(proj, offset, base, slope)``.

    ``proj`` (k, 2) maps the k logits that :func:`_scaled_margin` gathers per sample to the
    margin (column 0) and the spread (column 1); ``offset`` (1, 2) is added to both. The classes
    are (label, best other, top 1, top 2, top 3) untargeted, (best other, target, top 1, ...,
    top 4) targeted; with fewer than 3 (untargeted) or 4 (targeted) classes only the first two,
    and the spread is 1 (the plain margin is used). ``base`` and ``slope`` (1, k) are ``proj``'s
    columns as contiguous rows, ``slope`` negated.
    """
    if targeted and n_classes >= 4:  # spread: top1 - (top3 + top4) / 2
        proj = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, -0.5], [0.0, -0.5]]
        offset = [[_LOGIT_TOL, 1e-8]]
    elif not targeted and n_classes >= 3:  # spread: top1 - top3
        proj = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, -1.0]]
        offset = [[_LOGIT_TOL, 1e-8]]
    else:
        proj, offset = [[1.0, 0.0], [-1.0, 0.0]], [[_LOGIT_TOL, 1.0]]
    proj = like.new_tensor(proj)
    return proj, like.new_tensor(offset), proj[:, 0].unsqueeze(0).contiguous(), -proj[:, 1].unsqueeze(0)


def _scaled_margin(logits: Tensor, lab: Tensor, targeted: bool,
                   coefficients: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """Margin (> 0 while not adversarial) over the spread of the top logits (DLR, Croce & Hein
    2020), and its gradient with respect to the logits.

    The margin is the label logit minus the best other one (the best other minus the target's
    when ``targeted``) plus a small offset, so that points exactly on the boundary are not
    accepted. The spread is top1 - top3 (untargeted) or top1 - (top3 + top4) / 2 (targeted); the
    ratio makes the constraint insensitive to the scale of the logits. ``lab``: the labels as a
    (B, 1) column; ``coefficients`` from :func:`_margin_coefficients` (with too few classes: the
    plain margin).

    Returns ``(s, idx, ds)``: the scaled margin ``s`` (B, 1) and its gradient in sparse form:
    ``ds/dlogits`` is ``ds`` (B, k) summed into the classes ``idx`` (B, k) (classes may repeat).
    Margin ``m`` and spread ``S`` are linear in the gathered logits (``proj``'s columns
    ``P_m``, ``P_S``), so ``ds = (P_m - s P_S) / S``.
    """
    proj, offset, base, slope = coefficients
    top_idx = logits.topk(min(logits.shape[1], 4 if targeted else 3), dim=1).indices
    # best class other than the label: the first, or the second when the label is on top
    other = torch.where(top_idx[:, :1] == lab, top_idx[:, 1:2], top_idx[:, :1])
    idx = torch.cat((other, lab, top_idx) if targeted else (lab, other, top_idx), 1)[:, :proj.shape[0]]
    margin, spread = torch.addmm(offset, logits.gather(1, idx), proj).split(1, dim=1)
    s = margin.div_(spread)
    ds = torch.addcmul(base, s, slope).div_(spread)
    return s, idx, ds


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
    # One function, like the paper's algorithm: the multipliers (mu, rho), the RMSProp buffers, the
    # learning-rate schedule and the best point are per-sample state updated in place at every step;
    # the stateless pieces (penalty, scaled margin) are the helpers above.
    p = check_norm(norm, (1.0, 2.0), "alma")
    check_inputs(inputs, labels)
    if steps < 1:
        raise ValueError(f"alma: steps must be >= 1, got {steps}")
    if step_size is None:
        step_size = 2.0 if p == 1 else 0.5
    if not step_size > 0:
        raise ValueError(f"alma: step_size must be > 0, got {step_size}")
    if inputs.shape[0] == 0:
        return inputs.detach().clone()
    shape = inputs.shape
    # flat (B, D) inputs, reshaped only for the model; per-sample quantities are (B, 1) columns
    x = flat(inputs.detach())
    batch = x.shape[0]
    kw = dict(device=x.device, dtype=x.dtype)
    mu = torch.full((batch, 1), _MU_INIT, **kw)
    rho = torch.full((batch, 1), _RHO_INIT, **kw)
    best_norm = torch.full((batch, 1), INF, **kw)
    best_adv = x.clone()
    found = torch.zeros((batch, 1), dtype=torch.bool, device=x.device)
    square_avg = torch.ones_like(x)
    momentum = torch.zeros_like(x)
    precond = torch.empty_like(x)
    step_lr = torch.ones((batch, 1), **kw)
    lr_decay = torch.ones((batch, 1), **kw)  # per-step factor of step_lr; 1 until first broken
    prev_margin = None
    delta = torch.zeros_like(x)
    x_adv = x.clone()  # x + delta, in [0, 1]
    coefficients = None  # constants of _scaled_margin, once the number of classes is known
    lab = labels.unsqueeze(1)
    better = torch.empty((batch, 1), **kw)  # 1.0 where the current point is the best so far
    i = 0  # the step, read by weigh

    def weigh(logits: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Logit gradient of the penalty P2(scaled margin); updates rho and mu first."""
        nonlocal coefficients, prev_margin, rho, mu
        if coefficients is None:
            coefficients = _margin_coefficients(logits.shape[1], targeted, logits)
        margin, idx, d_margin = _scaled_margin(logits, lab, targeted, coefficients)
        if i == 0:
            prev_margin = margin
        elif (i + 1) % _RHO_CHECK == 0:
            improved = margin < _RHO_TAU * prev_margin
            rho = torch.where(found | improved, rho, rho * _RHO_GROWTH)
            prev_margin = margin
        a, c = _penalty_p2_grad_parts(margin, rho)
        if i > 0:  # new multiplier: moving average of the penalty's derivative at the margin
            mu = mu.lerp(torch.addcmul(c, mu, a), 1 - _EMA).clamp_(1e-6, 1e12)
        d_pen = torch.addcmul(c, mu, a)  # dP2/dmargin
        w = torch.zeros_like(logits).scatter_add_(1, idx, d_margin.mul_(d_pen))
        return w, (margin, d_pen)

    for i in range(steps):
        _, (margin, d_pen), grad = input_grad(model, x_adv.view(shape), weigh)
        grad = grad.view(batch, -1)  # gradient of the penalty; the distance's is added below
        dist = lp_norm(delta, p).unsqueeze(1)

        is_adv = margin < 0
        dist_adv = torch.where(is_adv, dist, INF)
        torch.lt(dist_adv, best_norm, out=better)
        best_norm = torch.minimum(best_norm, dist_adv)
        best_adv.lerp_(x_adv, better)  # weight 0 or 1: an exact copy where better
        # the learning rate decays geometrically from the step a sample is first broken, to
        # _LR_REDUCTION times its initial value at the last step
        step_lr.mul_(lr_decay)
        lr_decay.masked_fill_(is_adv > found, _LR_REDUCTION ** (1 / (steps - i)))
        found |= is_adv

        if p == 2 and i > 0:  # gradient of ||delta||_2 (undefined at delta = 0, hence not at i = 0)
            grad.addcdiv_(delta, dist.clamp_min(1e-12))
        square_avg.mul_(_EMA).addcmul_(grad, grad, value=1 - _EMA)
        precond = torch.sqrt(square_avg, out=precond).add_(1e-8)
        momentum.mul_(_EMA).addcdiv_(grad, precond)
        if i == 0:
            # learning rate such that the first step covers step_size times the linear estimate
            # of the distance to the boundary, margin / ||grad margin||_dual
            g_margin_dual = lp_norm(grad, dual(p)).unsqueeze(1) / d_pen.abs().clamp_min(1e-12)
            target = step_size * margin.abs() / g_margin_dual.clamp_min(1e-12)
            box_limit = lp_norm(torch.maximum(x, 1 - x), p).unsqueeze(1)
            step_lr = torch.minimum(target, box_limit) / lp_norm(momentum, p).unsqueeze(1).clamp_min(1e-12)
        if p == 2:
            x_adv.addcmul_(step_lr, momentum, value=-1).clamp_(0, 1)
        else:
            delta.addcmul_(step_lr, momentum, value=-1)
            if i > 0:
                # proximal step of the distance: soft threshold. The momentum buffer amplifies
                # steady gradients by 1 / (1 - _EMA); the threshold gets the same weight so
                # penalty and distance stay balanced
                thresh = (step_lr / (1 - _EMA)).div(precond)
                delta.sub_(delta.clamp(min=-thresh, max=thresh))
            x_adv = (x + delta).clamp_(0, 1)
        torch.sub(x_adv, x, out=delta)

    return best_adv.view(shape)
