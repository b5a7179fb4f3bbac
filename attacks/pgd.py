"""Projected gradient descent (PGD), a budget attack for L1, L2 and Linf.

Reference: Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
Adversarial Attacks. ICLR 2018. The L1 steps are sparse (top-k coordinates, box-aware), after
Tramer, Boneh. Adversarial Training and Robustness for Multiple Perturbations (SLIDE),
NeurIPS 2019, and Croce, Hein. Mind the box: l1-APGD. ICML 2021, with the exact projection onto
the intersection of the L1 ball and the box [0, 1]^d.

This module also holds the pieces shared by the budget attacks of this package (losses, the
gradient of a per-sample loss, the exact L1-ball-and-box projection, the budget step).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    INF,
    check_inputs,
    dual,
    check_norm,
    flat,
    is_adversarial,
    label_margin,
    lp_norm,
    make_generator,
    random_in_ball,
    view_as_batch,
)

_NORMS = (1.0, 2.0, INF)


# ----------------------------------------------------------------------------- shared pieces
def as_eps(eps: float | Tensor, batch: int, like: Tensor, name: str) -> Tensor:
    """Per-sample budget (B,) in ``like``'s dtype/device from a float or a (B,) tensor."""
    if isinstance(eps, Tensor):
        e = eps.detach().to(device=like.device, dtype=like.dtype).reshape(-1)
        if e.numel() == 1:
            e = e.expand(batch).clone()
        if e.shape != (batch,):
            raise ValueError(f"{name}: eps must be a float or a ({batch},) tensor, got shape {tuple(eps.shape)}")
    else:
        try:
            e = torch.full((batch,), float(eps), device=like.device, dtype=like.dtype)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: eps must be a float or a (B,) tensor, got {eps!r}") from None
    if not bool(torch.isfinite(e).all()) or bool((e < 0).any()):
        raise ValueError(f"{name}: eps must be finite and >= 0")
    return e


def ce_loss(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Per-sample loss to maximise: CE of the label (untargeted) or minus CE of the target."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def dlr_loss(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Difference-of-logits-ratio loss to maximise (Croce & Hein 2020), scale invariant.

    Untargeted: -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3). Targeted (labels are targets):
    -(max_{j!=t} z_j - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2). With fewer classes than the
    denominator needs, the last sorted logit is used instead; with two classes, the plain margin.
    """
    c = logits.shape[1]
    if c < 3:  # the ratio is a constant +-1 with two classes: fall back to the plain margin
        return -label_margin(logits, labels, targeted)
    srt = logits.sort(dim=1, descending=True).values
    if targeted:
        low = 0.5 * (srt[:, min(2, c - 1)] + srt[:, min(3, c - 1)])
    else:
        low = srt[:, min(2, c - 1)]
    scale = (srt[:, 0] - low).clamp_min(1e-12)
    return -label_margin(logits, labels, targeted) / scale


def rival_classes(model: nn.Module, x0: Tensor, logits: Tensor, labels: Tensor, p: float, top: int = 9) -> Tensor:
    """(B, K) wrong classes to push above the label, nearest linearised boundary first.

    The ``top`` most likely wrong classes at the clean point are ranked by the DeepFool
    estimate (z_label - z_j) / ||grad(z_label - z_j)||_q (q dual to p): K backward passes.
    """
    c = logits.shape[1]
    k = max(1, min(top, c - 1))
    masked = logits.detach().clone()
    masked.scatter_(1, labels.unsqueeze(1), -INF)
    cand = masked.topk(k, dim=1).indices  # (B, K)
    if k == 1:
        return cand
    q = dual(p)
    x = x0.detach().requires_grad_(True)
    dist = torch.empty(cand.shape, dtype=x0.dtype, device=x0.device)
    with torch.enable_grad():
        z = model(x)
        diff = z.gather(1, labels.unsqueeze(1)) - z.gather(1, cand)  # (B, K)
        for j in range(k):
            (g,) = torch.autograd.grad(diff[:, j].sum(), x, retain_graph=j < k - 1)
            dist[:, j] = diff[:, j].detach() / lp_norm(g, q).clamp_min(1e-30)
    order = dist.argsort(dim=1)
    return cand.gather(1, order)


def pair_loss(logits: Tensor, rival: Tensor, labels: Tensor) -> Tensor:
    """z_rival - z_label: linear in the logits; positive means the label lost the top place."""
    return logits.gather(1, rival.unsqueeze(1)).squeeze(1) - logits.gather(1, labels.unsqueeze(1)).squeeze(1)


def dlr_pair_loss(logits: Tensor, rival: Tensor, labels: Tensor) -> Tensor:
    """Targeted DLR towards ``rival`` of a sample labelled ``labels`` (AutoAttack's APGD-T)."""
    c = logits.shape[1]
    srt = logits.sort(dim=1, descending=True).values
    scale = (srt[:, 0] - 0.5 * (srt[:, min(2, c - 1)] + srt[:, min(3, c - 1)])).clamp_min(1e-12)
    return pair_loss(logits, rival, labels) / scale


def objective(kind: str, labels: Tensor, rival: Tensor | None, targeted: bool):
    """Per-sample loss to maximise, ``logits -> (B,)``.

    kind: ``"ce"``, ``"dlr"`` (untargeted, or targeted at ``labels`` when ``targeted``),
    ``"pair"``, ``"dlr-pair"`` (push ``rival`` above ``labels``).
    """
    if kind == "ce":
        return lambda z: ce_loss(z, labels, targeted)
    if kind == "dlr":
        return lambda z: dlr_loss(z, labels, targeted)
    if kind == "pair":
        return lambda z: pair_loss(z, rival, labels)
    return lambda z: dlr_pair_loss(z, rival, labels)


def loss_and_grad(model: nn.Module, x: Tensor, loss_fn) -> tuple[Tensor, Tensor, Tensor]:
    """Logits, per-sample loss ``loss_fn(logits)`` and its input gradient at ``x``.

    Uses ``torch.autograd.grad`` only, so the parameters' ``.grad`` stay untouched.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = loss_fn(logits)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return logits.detach(), loss.detach(), grad.detach()


def project_l1_box(v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
    """Exact Euclidean projection of each row of ``v`` onto {||d||_1 <= eps} ∩ [lo, hi].

    ``v, lo, hi``: (B, D) with lo <= 0 <= hi; ``eps``: (B,). The solution is
    d_i = sign(v_i) clip(|v_i| - theta, 0, cap_i) with cap_i the box room in the direction of
    v_i and theta >= 0 the root of the piecewise-linear, non-increasing sum; the breakpoints are
    sorted and the root read off exactly (O(D log D)).
    """
    a = v.abs()
    cap = torch.where(v >= 0, hi, -lo).clamp_min(0)
    f0 = torch.minimum(a, cap).sum(1)  # (B,) L1 norm at theta = 0
    b, d = a.shape
    # theta at which coordinate i leaves its cap (starts decreasing) and reaches 0
    events = torch.cat([(a - cap).clamp_min(0), a], dim=1)  # (B, 2D)
    signs = torch.cat([-torch.ones_like(a), torch.ones_like(a)], dim=1)
    ev, order = events.sort(dim=1)
    slope = signs.gather(1, order).cumsum(1)  # slope of the sum on (ev_k, ev_k+1)
    incr = slope[:, :-1] * (ev[:, 1:] - ev[:, :-1])
    fk = torch.cat([f0.unsqueeze(1), f0.unsqueeze(1) + incr.cumsum(1)], dim=1)  # sum at each event
    k = ((fk >= eps.unsqueeze(1)).sum(1) - 1).clamp(0, 2 * d - 1)  # last event with sum >= eps
    ev_k = ev.gather(1, k.unsqueeze(1)).squeeze(1)
    f_k = fk.gather(1, k.unsqueeze(1)).squeeze(1)
    s_k = slope.gather(1, k.unsqueeze(1)).squeeze(1)
    theta = ev_k + (f_k - eps) / (-s_k).clamp_min(1e-12)
    theta = torch.where(f0 <= eps, torch.zeros_like(theta), theta)
    out = v.sign() * (a - theta.unsqueeze(1)).clamp_min(0).minimum(cap)
    # guard against rounding: never exceed the budget
    n1 = out.abs().sum(1)
    out = out * torch.where(n1 > eps, eps / n1.clamp_min(1e-30), torch.ones_like(n1)).unsqueeze(1)
    return out


def project_budget(x0: Tensor, x: Tensor, eps: Tensor, p: float) -> Tensor:
    """Project ``x`` onto {||x - x0||_p <= eps} ∩ [0, 1] (exact for Linf and L1; L2: ball then box)."""
    delta = x - x0
    if p == INF:
        e = view_as_batch(eps, x)
        delta = torch.maximum(torch.minimum(delta, e), -e)
    elif p == 2:
        n = lp_norm(delta, 2)
        factor = torch.where(n > eps, eps / n.clamp_min(1e-30), torch.ones_like(n))
        delta = delta * view_as_batch(factor, x)
    else:
        f0 = flat(x0)
        delta = project_l1_box(flat(delta), -f0, 1 - f0, eps).view_as(x)
    return (x0 + delta).clamp(0, 1)


def sparse_l1_direction(grad: Tensor, x: Tensor, k: Tensor) -> Tensor:
    """Box-aware sparse ascent direction for L1: sign of the ``k`` (B,) largest |grad| entries.

    Coordinates that sit on the box face the gradient pushes against are skipped; the direction
    has unit L1 norm.
    """
    g = flat(grad)
    xf = flat(x)
    blocked = ((g > 0) & (xf >= 1)) | ((g < 0) & (xf <= 0))
    score = torch.where(blocked, torch.zeros_like(g), g.abs())
    srt = score.sort(dim=1, descending=True).values
    kk = k.clamp(1, g.shape[1]).to(torch.int64) - 1
    thr = srt.gather(1, kk.unsqueeze(1))  # (B, 1) k-th largest score
    mask = (score >= thr) & (score > 0)
    u = g.sign() * mask.to(g.dtype)
    u = u / u.abs().sum(1, keepdim=True).clamp_min(1.0)
    return u.view_as(grad)


def start_in_ball(x0: Tensor, eps: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """A random point of {||x - x0||_p <= eps} ∩ [0, 1]."""
    return (x0 + random_in_ball(x0, eps, p, gen)).clamp(0, 1)


# ----------------------------------------------------------------------------- PGD
def pgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    eps: float | Tensor,
    steps: int = 40,
    step_size: float | None = None,
    targeted: bool = False,
    random_start: bool = True,
    restarts: int = 1,
    seed: int = 0,
    early_stop: bool = True,
) -> Tensor:
    """Projected gradient ascent on the cross-entropy inside an Lp ball (budget attack).

    Madry et al., ICLR 2018. The first run ascends the cross-entropy; with ``restarts > 1`` an
    untargeted attack spends restart r on pushing one wrong class above the label (loss
    z_rival - z_label), as AutoAttack's APGD-T does, because one loss cannot find the nearest
    boundary of a many-class model: the rivals are the 9 most likely wrong classes at the clean
    point, nearest linearised boundary first (9 extra backward passes, once). Linf: signed-gradient steps; L2: normalised-gradient steps; L1:
    sparse box-aware top-k sign steps whose sparsity anneals from 5% of the coordinates down
    to one over the run (SLIDE, Tramer & Boneh 2019), each followed by the exact projection
    onto the L1 ball intersected with the box. By default a sample stops as soon as an iterate
    is adversarial and the first adversarial point found is returned (what a robustness
    evaluation or a minimal-radius search needs); ``early_stop=False`` instead returns the
    loss-maximising point of the ball for every sample (what adversarial training needs).

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
        Budget, a float or a (B,) tensor of per-sample budgets.
    steps : int
        Gradient steps per restart.
    step_size : float, optional
        Step length as a fraction of each sample's ``eps``; default ``2.5 / steps`` for L2 and
        Linf (Madry et al.), ``1.0`` for L1 (the projection absorbs most of each step).
    targeted : bool
        Minimise the cross-entropy of ``labels`` (targets) instead.
    random_start : bool
        Start from a uniform-ish random point of the ball (the first restart too).
    restarts : int
        Runs from fresh random starts, each only on the samples still unbroken.
    seed : int
        Seed of the local generator for the random starts.
    early_stop : bool
        True (default): stop each sample at its first adversarial iterate and return that point;
        the input where none was found or the input is already adversarial. False: run all
        ``steps`` of every restart on every sample (already adversarial ones included) and
        return, per sample, the point of highest cross-entropy (minus the target's
        cross-entropy when ``targeted``) among the clean input and all iterates, each inside
        the ball ∩ [0, 1]. This is the inner maximisation of adversarial training (Madry et al.
        2018), which wants the worst point of the ball, not merely an adversarial one. Later
        restarts of an untargeted attack still push rival classes (see above), but their
        iterates are ranked by the cross-entropy too.

    Returns
    -------
    Tensor
        Points with ``||adv - inputs||_p <= eps`` in [0, 1]. ``early_stop=True``: adversarial
        inputs, the input where none was found (and where the input is already adversarial).
        ``early_stop=False``: the highest-loss point found for every sample, adversarial or not.
    """
    p = check_norm(norm, _NORMS, "pgd")
    check_inputs(inputs, labels)
    if steps < 0 or restarts < 1:
        raise ValueError("pgd: steps must be >= 0 and restarts >= 1")
    b = inputs.shape[0]
    x0 = inputs.detach()
    e = as_eps(eps, b, x0, "pgd")
    if step_size is None:
        rel = 1.0 if p == 1 else 2.5 / max(steps, 1)
    else:
        if not step_size > 0:
            raise ValueError("pgd: step_size must be > 0")
        rel = float(step_size)
    gen = make_generator(seed, x0.device)
    adv = x0.clone()
    if b == 0:
        return adv
    with torch.no_grad():
        clean_logits = model(x0)
    done = is_adversarial(clean_logits, labels, targeted)
    d = flat(x0).shape[1]
    k0 = max(1, int(math.ceil(0.05 * d)))

    rivals = rival_classes(model, x0, clean_logits, labels, p) if restarts > 1 and not targeted else None
    if not early_stop:
        return _pgd_max_loss(model, x0, labels, e, p, clean_logits=clean_logits, rivals=rivals,
                             steps=steps, rel=rel, k0=k0, targeted=targeted,
                             random_start=random_start, restarts=restarts, gen=gen)

    for r in range(restarts):
        idx = (~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, ys, es = x0[idx], labels[idx], e[idx]
        if r == 0 or targeted:
            kind, riv = "ce", None
        else:  # later restarts: push one rival class above the label, APGD-T style
            kind, riv = "pair", rivals[idx, (r - 1) % rivals.shape[1]]
        x = start_in_ball(xs, es, p, gen) if random_start else xs.clone()
        alive = torch.ones(idx.numel(), dtype=torch.bool, device=x0.device)  # (b',) still searching
        for t in range(steps + 1):
            a = alive.nonzero().squeeze(1)
            if a.numel() == 0:
                break
            xa = x[a]
            if t == steps:  # final check of the last iterate
                with torch.no_grad():
                    logits = model(xa)
            else:
                obj = objective(kind, ys[a], None if riv is None else riv[a], targeted)
                logits, _, grad = loss_and_grad(model, xa, obj)
            hit = is_adversarial(logits, ys[a], targeted)
            if hit.any():
                adv[idx[a[hit]]] = xa[hit]
                done[idx[a[hit]]] = True
                alive[a[hit]] = False
            if t == steps:
                break
            keep = ~hit
            a, xa, grad = a[keep], xa[keep], grad[keep]
            if a.numel() == 0:
                break
            step = view_as_batch(rel * es[a], xa)
            x[a] = project_budget(xs[a], xa + step * _ascent_direction(grad, xa, p, t, steps, k0), es[a], p)
    return adv


def _pgd_max_loss(model: nn.Module, x0: Tensor, labels: Tensor, e: Tensor, p: float, *,
                  clean_logits: Tensor, rivals: Tensor | None, steps: int, rel: float, k0: int,
                  targeted: bool, random_start: bool, restarts: int,
                  gen: torch.Generator) -> Tensor:
    """``pgd(..., early_stop=False)``: every sample runs every step; the highest-CE point wins."""
    best = x0.clone()
    best_loss = ce_loss(clean_logits, labels, targeted)
    for r in range(restarts):
        if r == 0 or targeted:
            kind, riv = "ce", None
        else:
            kind, riv = "pair", rivals[:, (r - 1) % rivals.shape[1]]
        x = start_in_ball(x0, e, p, gen) if random_start else x0.clone()
        for t in range(steps + 1):
            if t == steps:  # the last iterate is scored too
                with torch.no_grad():
                    logits = model(x)
            else:
                logits, _, grad = loss_and_grad(model, x, objective(kind, labels, riv, targeted))
            loss = ce_loss(logits, labels, targeted)
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            best = torch.where(view_as_batch(better, x), x, best)
            if t == steps:
                break
            step = view_as_batch(rel * e, x)
            x = project_budget(x0, x + step * _ascent_direction(grad, x, p, t, steps, k0), e, p)
    return best


def _ascent_direction(grad: Tensor, x: Tensor, p: float, t: int, steps: int, k0: int) -> Tensor:
    """Steepest-ascent direction of unit Lp norm at step ``t``: the gradient's sign (Linf), its
    normalised form (L2), or a sparse box-aware step over ``k`` coordinates (L1), ``k`` shrinking
    geometrically from ``k0`` to 1 over the steps."""
    if p == INF:
        return grad.sign()
    if p == 2:
        return grad / view_as_batch(lp_norm(grad, 2).clamp_min(1e-30), grad)
    k = max(1, int(round(k0 ** (1.0 - t / max(steps - 1, 1)))))
    return sparse_l1_direction(grad, x, torch.full((x.shape[0],), k, device=x.device))
