"""Fast Minimum-Norm attack (FMN) for the L1, L2 and Linf norms.

Reference: Pintor, Roli, Brendel, Biggio. Fast Minimum-norm Adversarial Attacks through
Adaptive Norm Constraints. NeurIPS 2021. https://arxiv.org/abs/2102.12827
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._adaptive_radius import Step, adaptive_radius_descent
from ._common import check_inputs, check_norm, flat, project_ball, sort_rows
from .norms import INF, dual, lp_norm


def _l1_box_step(direction: Tensor, x_adv: Tensor, length: Tensor) -> Tensor:
    """Best L1 step of length ``length`` (B,) along ``direction`` that stays in the box [0, 1].

    Maximises ``direction . s`` over ``||s||_1 <= length`` with ``x_adv + s`` in the box: a
    fractional knapsack that fills coordinates in decreasing ``|direction|`` up to their room
    to the box bound (``1 - x`` moving up, ``x`` moving down). The step is sparse, and for a
    linear model it is the exact minimal-L1 move in the box.
    """
    d = flat(direction)  # (B, D)
    s = d.sign()
    # room to the bound in the direction of d: 1 - x moving up, x moving down (0.5 where d = 0:
    # those coordinates sort last and their sign zeroes whatever they would take)
    room = torch.addcmul(torch.full_like(d, 0.5), s, 0.5 - flat(x_adv)).clamp_min_(0)
    order = sort_rows(d.abs(), descending=True)[1]
    room_sorted = room.gather(1, order)
    before = room_sorted.cumsum(1).sub_(room_sorted)  # room used by the coordinates ahead
    take = torch.minimum(room_sorted, before.neg_().add_(length.unsqueeze(1)).clamp_min_(0))
    return room.zero_().scatter_(1, order, take).mul_(s).view_as(direction)


def fmn(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm: float = 2.0, steps: int = 100,
        targeted: bool = False, step_size: float = 1.0, gamma: float = 0.05) -> Tensor:
    """Fast Minimum-Norm attack: minimise the margin inside an adaptive Lp ball.

    Each step takes a normalised gradient step on the logit margin (L2: the normalised gradient;
    Linf: its sign; L1: the steepest L1 step that stays in the box, which fills the largest
    gradient coordinates up to their bounds and so is sparse), projects onto the Lp ball of radius ``eps`` (exactly, also for L1) and onto the box
    [0, 1]. The per-sample radius ``eps`` shrinks by ``(1 - gamma)`` (and never exceeds the best
    norm found) while the point is adversarial, grows by ``(1 + gamma)`` once an adversarial point
    has been seen and lost, and before the first success jumps just past the linear estimate of
    the boundary, ``(||delta|| + margin / ||grad||_dual) (1 + gamma)`` (landing exactly on a linear
    boundary would never cross it). Step size and ``gamma`` are cosine-annealed.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; used as is (its mode is not changed).
    inputs : Tensor
        (B, ...) inputs in [0, 1]; not modified.
    labels : Tensor
        (B,) true labels, or target labels when ``targeted``.
    norm : float
        1, 2 or ``math.inf``.
    steps : int
        Number of iterations; one forward and one backward pass each.
    targeted : bool
        Reach ``labels`` instead of leaving them.
    step_size : float
        Initial step length relative to the current radius ``eps`` (annealed down to 1/100 of it).
        Relative steps make the defaults independent of the data's scale.
    gamma : float
        Initial radius update factor, cosine-annealed to ``gamma / 50`` (0.05 -> 0.001 as in
        the paper).

    Returns
    -------
    Tensor
        Adversarial inputs with the smallest norm found; the input itself where none was found.

    Notes
    -----
    Differences from the paper: step lengths are relative to ``eps`` rather than absolute (the
    defaults then fit any data scale); the L1 step is the box-aware steepest step instead of
    the normalised gradient (with the latter, or a fixed top-k step, many points of a small
    ReLU net on inputs spread over [0, 1] were never broken); the first radius overshoots the
    linear boundary estimate by ``1 + gamma``.
    """
    # Half of this function is its docstring; the loop is _adaptive_radius.adaptive_radius_descent.
    p = check_norm(norm, (1.0, 2.0, INF), "fmn")
    check_inputs(inputs, labels)
    if steps < 1:
        raise ValueError(f"fmn: steps must be >= 1, got {steps}")
    if not step_size > 0 or not 0 < gamma < 1:
        raise ValueError("fmn: need step_size > 0 and 0 < gamma < 1")
    q = dual(p)
    eps = None  # per-sample radius, set at the first step

    def rule(st: Step) -> Tensor:
        nonlocal eps
        if eps is None:
            eps = st.worst_norm.clone()
        g_dual = lp_norm(st.grad, q).clamp_min_(1e-12)
        # radius: shrink while adversarial (never above the best norm), grow once an adversarial
        # point was seen and lost, before the first success jump just past the linear estimate
        # of the boundary, ||delta|| + margin / ||grad||_dual
        base = torch.where(st.best_norm < INF, eps, torch.addcdiv(st.d_norm, st.margin.abs(), g_dual))
        cap = torch.where(st.is_adv, st.best_norm, st.worst_norm)  # best_norm <= worst_norm (in the box)
        eps = torch.minimum(base.mul_(torch.where(st.is_adv, 1 - st.gamma, 1 + st.gamma)), cap)

        delta, alpha = st.delta, st.alpha
        if p == 2:  # fused: normalised gradient step (||grad||_2 = g_dual), ball projection, box
            delta.addcmul_(st.grad, eps.div(g_dual).mul_(-alpha).unsqueeze(1))
            shrink = eps.div(lp_norm(delta, 2).clamp_min_(1e-12)).clamp_(max=1.0)
            return torch.addcmul(st.x, delta, shrink.unsqueeze(1)).clamp_(0, 1)
        if p == INF:  # fused: signed step, then the Linf ball and the box
            delta.addcmul_(st.grad.sign(), eps.mul(-alpha).unsqueeze(1))
            e = eps.unsqueeze(1)
            return delta.clamp_(-e, e).add_(st.x).clamp_(0, 1)
        # L1: the steepest L1 step inside the box, then the exact L1 ball
        delta = project_ball(delta + _l1_box_step(-st.grad, st.x_adv, alpha * eps), eps, p)
        return (st.x + delta).clamp_(0, 1)

    return adaptive_radius_descent(model, inputs, labels, p=p, steps=steps, targeted=targeted,
                                   step_size=step_size, gamma=gamma, rule=rule)
