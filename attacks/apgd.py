"""Auto-PGD (APGD), a step-size-free budget attack for Linf, L2 and L1.

References: Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks. ICML 2020 (APGD-CE, APGD-DLR, APGD-T). Croce, Hein. Mind the
box: l1-APGD for sparse adversarial attacks on image classifiers. ICML 2021 (L1 version:
sparsity-adaptive top-k steps and the exact projection onto the L1 ball intersected with the box).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._common import INF, check_inputs, check_norm, flat, is_adversarial, lp_norm, make_generator, view_as_batch
from .pgd import as_eps, loss_and_grad, objective, project_budget, rival_classes, sparse_l1_direction, start_in_ball

_NORMS = (1.0, 2.0, INF)
_MOMENTUM = 0.75  # weight of the new step; 0.25 of the previous displacement (paper's alpha)
_RHO = 0.75  # a checkpoint halves the step if fewer than rho of the steps since raised the loss


def _checkpoints(steps: int) -> list[int]:
    """Iterations at which the Linf/L2 step size is reconsidered: p0=0, p1=0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    ps = [0.0, 0.22]
    while ps[-1] < 1.0:
        ps.append(ps[-1] + max(ps[-1] - ps[-2] - 0.03, 0.06))
    out = sorted({int(math.ceil(q * steps)) for q in ps[1:] if q <= 1.0})
    return [w for w in out if 0 < w <= steps]


def apgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    eps: float | Tensor,
    steps: int = 100,
    targeted: bool = False,
    loss: str = "ce",
    restarts: int = 1,
    seed: int = 0,
) -> Tensor:
    """APGD: projected gradient ascent with momentum and an adaptive step size (budget attack).

    Croce & Hein, ICML 2020; L1 as in Croce & Hein, ICML 2021. Linf/L2: step size starts at
    2 eps and is halved at checkpoints where the loss rose in fewer than 75% of the steps since
    the last checkpoint, or where neither the step nor the best loss changed; after a halving
    the run restarts from the best point. Momentum 0.75. L1: sparse sign steps on the top-k
    coordinates, k adapted to the sparsity of the best point every 4% of the steps, step size
    between eps/10 and eps, exact projection onto the L1 ball intersected with the box. A
    sample stops as soon as it is adversarial.

    With ``restarts > 1`` an untargeted attack spends restart r >= 1 on the targeted DLR loss
    towards one wrong class (APGD-T): the 9 most likely wrong classes at the clean point, nearest
    linearised boundary first, each restart only on
    the samples still unbroken and from a fresh random start.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; used in its current mode, parameters untouched.
    inputs : Tensor
        (B, ...) in [0, 1].
    labels : Tensor
        (B,) true labels, or target classes when ``targeted``.
    norm : float
        1, 2 or ``math.inf``.
    eps : float or Tensor
        Budget, a float or a (B,) tensor.
    steps : int
        Iterations per restart.
    targeted : bool
        Make ``labels`` (the targets) the prediction; with ``loss="dlr"`` the targeted DLR loss.
    loss : {"ce", "dlr"}
        Cross-entropy or the difference-of-logits-ratio loss.
    restarts : int
        Number of runs (see above).
    seed : int
        Seed of the local generator for the random starts.

    Returns
    -------
    Tensor
        Adversarial inputs within the budget and the box; the input where none was found.
    """
    p = check_norm(norm, _NORMS, "apgd")
    check_inputs(inputs, labels)
    if loss not in ("ce", "dlr"):
        raise ValueError(f"apgd: loss must be 'ce' or 'dlr', got {loss!r}")
    if steps < 0 or restarts < 1:
        raise ValueError("apgd: steps must be >= 0 and restarts >= 1")
    b = inputs.shape[0]
    x0 = inputs.detach()
    e = as_eps(eps, b, x0, "apgd")
    adv = x0.clone()
    if b == 0:
        return adv
    gen = make_generator(seed, x0.device)
    with torch.no_grad():
        clean_logits = model(x0)
    done = is_adversarial(clean_logits, labels, targeted)
    rivals = rival_classes(model, x0, clean_logits, labels, p) if restarts > 1 and not targeted else None
    for r in range(restarts):
        idx = (~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        if r == 0 or targeted:
            kind, riv = loss, None
        else:
            kind, riv = "dlr-pair", rivals[idx, (r - 1) % rivals.shape[1]]
        found, xadv = _single_run(model, x0[idx], labels[idx], riv, e[idx], p, steps, kind, targeted, gen)
        adv[idx[found]] = xadv[found]
        done[idx[found]] = True
    return adv


def _single_run(model, xs, ys, riv, es, p, steps, kind, targeted, gen):
    """One APGD run on a sub-batch; returns (found (b,), first adversarial points (b, ...))."""
    b = xs.shape[0]
    dev = xs.device
    d = flat(xs).shape[1]
    found = torch.zeros(b, dtype=torch.bool, device=dev)
    xadv = xs.clone()
    x = start_in_ball(xs, es, p, gen)

    def evaluate(a, xa):
        obj = objective(kind, ys[a], None if riv is None else riv[a], targeted)
        logits, lv, g = loss_and_grad(model, xa, obj)
        hit = is_adversarial(logits, ys[a], targeted)
        if hit.any():
            xadv[a[hit]] = xa[hit]
            found[a[hit]] = True
        return lv, g

    all_idx = torch.arange(b, device=dev)
    loss_cur, grad = evaluate(all_idx, x)
    loss_best = loss_cur.clone()
    x_best, grad_best = x.clone(), grad.clone()
    x_prev = x.clone()

    if p == 1:
        alpha = 1.0
        step = alpha * es.clone()
        topk = torch.full((b,), 0.2 * d, device=dev)  # number of coordinates per sparse step
        sp_old = torch.full((b,), float(d), device=dev)
        period = max(int(0.04 * steps), 1)
    else:
        step = 2.0 * es.clone()
        checks = _checkpoints(steps)
        last_check = 0
        n_up = torch.zeros(b, device=dev)  # steps since the last checkpoint that raised the loss
        best_at_check = loss_best.clone()
        reduced_at_check = torch.ones(b, dtype=torch.bool, device=dev)

    for k in range(steps):
        a = (~found).nonzero().squeeze(1)
        if a.numel() == 0:
            break
        xa, ga, xpa, sa = x[a], grad[a], x_prev[a], view_as_batch(step[a], x[a])
        if p == INF:
            z = project_budget(xs[a], xa + sa * ga.sign(), es[a], p)
        elif p == 2:
            z = project_budget(xs[a], xa + sa * ga / view_as_batch(lp_norm(ga, 2).clamp_min(1e-30), ga), es[a], p)
        else:
            z = project_budget(xs[a], xa + sa * sparse_l1_direction(ga, xa, topk[a].floor()), es[a], p)
        if p != 1 and k > 0:  # momentum (the L1 version of the paper uses none)
            z = project_budget(xs[a], xa + _MOMENTUM * (z - xa) + (1 - _MOMENTUM) * (xa - xpa), es[a], p)
        x_prev[a] = xa
        x[a] = z
        lv, g = evaluate(a, z)
        grad[a] = g
        if p != 1:
            n_up[a] += (lv > loss_cur[a]).to(n_up.dtype)
        loss_cur[a] = lv
        better = lv > loss_best[a]
        ab = a[better]
        loss_best[ab] = lv[better]
        x_best[ab] = z[better]
        grad_best[ab] = g[better]

        it = k + 1
        if p == 1:
            if it % period == 0:
                sp = (flat(x_best[a] - xs[a]) != 0).sum(1).to(step.dtype)
                shrink = sp / sp_old[a] < 0.95
                topk[a] = (sp / 1.5).clamp(1.0, float(d))
                new_step = torch.where(shrink, alpha * es[a], step[a] / 1.5)
                step[a] = torch.minimum(torch.maximum(new_step, alpha * es[a] / 10), alpha * es[a])
                sp_old[a] = sp
                back = a[shrink]
                x[back] = x_best[back]
                grad[back] = grad_best[back]
                x_prev[back] = x_best[back]
        elif it in checks:
            span = it - last_check
            osc = n_up[a] < _RHO * span
            stuck = (~reduced_at_check[a]) & (best_at_check[a] >= loss_best[a])
            halve = osc | stuck
            reduced_at_check[a] = halve
            best_at_check[a] = loss_best[a]
            n_up[a] = 0
            h = a[halve]
            step[h] = step[h] / 2
            x[h] = x_best[h]
            grad[h] = grad_best[h]
            x_prev[h] = x_best[h]
            last_check = it
    return found, xadv
