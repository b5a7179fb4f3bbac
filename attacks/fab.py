"""FAB, the Fast Adaptive Boundary attack, as a minimal-norm attack for L1, L2 and Linf.

Reference: Croce, Hein. Minimally distorted Adversarial Examples with a Fast Adaptive Boundary
Attack. ICML 2020.

Each step linearises the classifier at the current iterate, projects both the iterate and the
clean input onto the nearest linearised decision hyperplane intersected with the box [0, 1]^d
(exact minimal-Lp projections, :func:`project_hyperplane_box`), and moves to a convex
combination of the two projections, biased towards the clean input; once adversarial the
iterate is pulled back towards the clean input. The smallest verified adversarial point is kept.

Also shared with DeepFool: the gradients of the label-versus-rival logit differences
(:func:`pair_grads`), the box-constrained projection and the bisection onto the boundary
(:func:`line_search`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import INF, check_inputs, check_norm, flat, is_adversarial, lp_norm, make_generator, random_in_ball, view_as_batch

_NORMS = (1.0, 2.0, INF)
_ALPHA_MAX = 0.1  # largest weight of the projection of the clean input (paper default)
_BETA = 0.9  # pull-back factor towards the clean input after a success (paper default)


def candidate_classes(logits: Tensor, labels: Tensor, candidates: int | None) -> Tensor:
    """(B, K): the ``candidates`` most likely classes other than the label (None: all)."""
    c = logits.shape[1]
    k = c - 1 if candidates is None else max(1, min(int(candidates), c - 1))
    masked = logits.detach().clone()
    masked.scatter_(1, labels.unsqueeze(1), -INF)
    return masked.topk(k, dim=1).indices


def pair_grads(model: nn.Module, x: Tensor, labels: Tensor, cands: Tensor | None, targeted: bool):
    """Logit differences that are positive while the attack has not succeeded, and their gradients.

    Untargeted: h_k = z_label - z_{cands[:, k]}, (B, K). Targeted (labels are targets, ``cands``
    ignored): h = max_{j != t} z_j - z_t, (B, 1). Returns ``(logits (B, C), h (B, K),
    grads (B, K, D))`` using K backward passes of ``torch.autograd.grad``.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(x)
        zl = z.gather(1, labels.unsqueeze(1))
        if targeted:
            other = z.detach().clone()
            other.scatter_(1, labels.unsqueeze(1), -INF)
            h = z.gather(1, other.argmax(1, keepdim=True)) - zl  # (B, 1)
        else:
            h = zl - z.gather(1, cands)  # (B, K)
        k = h.shape[1]
        grads = []
        for j in range(k):
            (g,) = torch.autograd.grad(h[:, j].sum(), x, retain_graph=j < k - 1)
            grads.append(flat(g))
    return z.detach(), h.detach(), torch.stack(grads, dim=1)


@torch.no_grad()
def line_search(model: nn.Module, x0: Tensor, adv: Tensor, labels: Tensor, targeted: bool, steps: int) -> Tensor:
    """Bisect on the segment [x0, adv] for the adversarial point closest to x0.

    ``adv`` must be adversarial (rows that are not are returned unchanged). After ``steps``
    halvings the returned point is adversarial and within 2^-steps of the segment's crossing.
    """
    b = x0.shape[0]
    lo = torch.zeros(b, device=x0.device, dtype=x0.dtype)
    hi = torch.ones_like(lo)
    delta = adv - x0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        ok = is_adversarial(model(x0 + view_as_batch(mid, x0) * delta), labels, targeted)
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    return (x0 + view_as_batch(hi, x0) * delta).clamp(0, 1)


def project_hyperplane_box(w: Tensor, c: Tensor, lo: Tensor, hi: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Minimal-Lp ``delta`` with ``w . delta = c`` and ``lo <= delta <= hi``, per row.

    ``w, lo, hi``: (N, D) with lo <= 0 <= hi; ``c``: (N,). Solved exactly by sorting breakpoints
    (O(D log D) per row):

    - L2: delta_i = clip(lam w_i, lo_i, hi_i) with lam >= 0 the root of a piecewise-linear
      increasing function of lam (the KKT conditions of the projection);
    - Linf: delta_i = sign(w_i) min(t, cap_i) with cap_i the box room in the direction of w_i and
      t the smallest level whose best progress reaches c;
    - L1: a fractional knapsack, filling coordinates in decreasing |w_i| up to their box room.

    Returns ``(delta, feasible)``; where the box cannot reach the hyperplane, ``delta`` is the
    box point that goes farthest towards it and ``feasible`` is False.
    """
    flip = c < 0  # solve with c >= 0
    w = torch.where(flip.unsqueeze(1), -w, w)  # (-w) . delta = -c is the same plane
    c = c.abs()
    n, d = w.shape
    aw = w.abs()
    cap = torch.where(w >= 0, hi, -lo).clamp_min(0)  # room in the direction of sign(w)
    reach = (aw * cap).sum(1)  # largest w . delta over the box
    feasible = reach >= c
    sgn = w.sign()
    zero = torch.zeros((n, 1), dtype=w.dtype, device=w.device)
    if p == 1:
        order = aw.argsort(dim=1, descending=True)
        aws, caps = aw.gather(1, order), cap.gather(1, order)
        gain = aws * caps
        before = torch.cat([zero, gain.cumsum(1)[:, :-1]], 1)  # progress of the coordinates before k
        k = (before + gain < c.unsqueeze(1)).sum(1).clamp(max=d - 1)  # first coordinate not filled
        amount = torch.where(
            torch.arange(d, device=w.device).unsqueeze(0) < k.unsqueeze(1),
            caps,
            torch.zeros_like(caps),
        )
        part = (c - before.gather(1, k.unsqueeze(1)).squeeze(1)) / aws.gather(1, k.unsqueeze(1)).squeeze(1).clamp_min(1e-30)
        part = torch.minimum(part.clamp_min(0), caps.gather(1, k.unsqueeze(1)).squeeze(1))
        amount.scatter_(1, k.unsqueeze(1), part.unsqueeze(1))
        amount = torch.where(feasible.unsqueeze(1), amount, caps)
        mag = torch.empty_like(amount).scatter_(1, order, amount)
        delta = sgn * mag
    elif p == INF:
        capz = torch.where(aw > 0, cap, torch.full_like(cap, INF))
        caps, order = capz.sort(dim=1)
        aws = aw.gather(1, order)
        done_part = torch.cat([zero, (aws * torch.where(torch.isfinite(caps), caps, zero)).cumsum(1)[:, :-1]], 1)
        rest = aws.flip(1).cumsum(1).flip(1)  # sum of |w| from k on
        level = torch.where(torch.isfinite(caps), done_part + caps * rest, torch.full_like(caps, INF))
        k = (level < c.unsqueeze(1)).sum(1).clamp(max=d - 1)
        t = (c - done_part.gather(1, k.unsqueeze(1)).squeeze(1)) / rest.gather(1, k.unsqueeze(1)).squeeze(1).clamp_min(1e-30)
        t = torch.where(feasible, t.clamp_min(0), torch.full_like(t, INF))
        delta = sgn * torch.minimum(t.unsqueeze(1), cap)
    else:
        bound = torch.where(w > 0, hi, lo)
        bp = torch.where(w != 0, bound / torch.where(w != 0, w, torch.ones_like(w)), torch.full_like(w, INF))
        bps, order = bp.clamp_min(0).sort(dim=1)
        ws, bs = w.gather(1, order), bound.gather(1, order)
        sat = torch.cat([zero, (ws * torch.where(torch.isfinite(bps), bs, zero)).cumsum(1)[:, :-1]], 1)
        q = (ws * ws).flip(1).cumsum(1).flip(1)  # sum of w^2 from k on
        level = torch.where(torch.isfinite(bps), sat + bps * q, torch.full_like(bps, INF))
        k = (level < c.unsqueeze(1)).sum(1).clamp(max=d - 1)
        lam = (c - sat.gather(1, k.unsqueeze(1)).squeeze(1)) / q.gather(1, k.unsqueeze(1)).squeeze(1).clamp_min(1e-30)
        lam = torch.where(feasible, lam.clamp_min(0), torch.full_like(lam, INF))
        delta = torch.where(w != 0, (lam.unsqueeze(1) * w).clamp(min=lo, max=hi), torch.zeros_like(w))
        delta = torch.where(feasible.unsqueeze(1), delta, sgn * cap)
    return delta, feasible


def fab(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    steps: int = 100,
    targeted: bool = False,
    overshoot: float = 0.05,
    candidates: int | None = None,
    restarts: int = 1,
    search_steps: int = 10,
    seed: int = 0,
) -> Tensor:
    """FAB (Croce & Hein, ICML 2020): minimal-norm adversarial points in L1, L2 or Linf.

    At each step, with g_k the gradient of h_k = z_label - z_k at the iterate x (K candidate
    classes): project x onto each hyperplane {h_k(x) + g_k . (z - x) = 0} intersected with the
    box, take the nearest (delta_1), project the clean input x0 onto the same hyperplane and box
    (delta_2), and move to ``(1 - a)(x + eta delta_1) + a (x0 + eta delta_2)`` with
    ``a = min(|delta_1| / (|delta_1| + |delta_2|), 0.1)`` and ``eta = 1 + overshoot``. When the
    new point is adversarial it is recorded and pulled back, ``x0 + 0.9 (x - x0)``. The first
    run starts at x0; each further restart starts from a random point at half the best radius
    so far (or half the first linearised distance), on every sample. A final bisection towards x0
    lands on the boundary.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; used in its current mode, parameters untouched.
    inputs : Tensor
        (B, ...) in [0, 1].
    labels : Tensor
        (B,) true labels, or target classes when ``targeted`` (then the single hyperplane is
        target versus the current top other class).
    norm : float
        1, 2 or ``math.inf``.
    steps : int
        Iterations per restart.
    overshoot : float
        eta - 1, the extrapolation past each linearised boundary.
    candidates : int or None
        Number of most likely wrong classes (at the input) to linearise; None: all.
    restarts : int
        Runs; the first from the input, the others from random points (seeded).
    search_steps : int
        Bisection steps of the final boundary search.
    seed : int
        Seed of the local generator for the random restarts.

    Returns
    -------
    Tensor
        Adversarial inputs in [0, 1] of smallest norm found; the input where none was found.
    """
    p = check_norm(norm, _NORMS, "fab")
    check_inputs(inputs, labels)
    if steps < 0 or restarts < 1 or overshoot < 0 or search_steps < 0:
        raise ValueError("fab: steps, overshoot, search_steps must be >= 0 and restarts >= 1")
    x0 = inputs.detach()
    b = x0.shape[0]
    out = x0.clone()
    if b == 0:
        return out
    with torch.no_grad():
        logits = model(x0)
    done0 = is_adversarial(logits, labels, targeted)
    idx = (~done0).nonzero().squeeze(1)
    if idx.numel() == 0:
        return out
    xs, ys = x0[idx], labels[idx]
    cands = None if targeted else candidate_classes(logits[idx], ys, candidates)
    n = xs.shape[0]
    f0 = flat(xs)
    eta = 1.0 + overshoot
    gen = make_generator(seed, x0.device)
    best_norm = torch.full((n,), INF, device=x0.device, dtype=x0.dtype)
    best_adv = xs.clone()
    lin0 = None  # first linearised distance, the scale of the random restarts

    for r in range(restarts):
        if r == 0:
            x = xs.clone()
        else:
            if lin0 is None:  # steps == 0: no linearisation yet
                lin0 = torch.full_like(best_norm, 1e-2)
            radius = 0.5 * torch.where(torch.isfinite(best_norm), best_norm, lin0)
            x = (xs + random_in_ball(xs, radius, p, gen)).clamp(0, 1)
        for _ in range(steps):
            fx = flat(x)
            _, h, g = pair_grads(model, x, ys, cands, targeted)  # h (n, K), g (n, K, D)
            kk = h.shape[1]
            # delta_1: project x onto each linearised boundary within the box; keep the nearest
            d1_all, ok1 = project_hyperplane_box(
                g.reshape(n * kk, -1), -h.reshape(-1),
                (-fx).repeat_interleave(kk, 0), (1 - fx).repeat_interleave(kk, 0), p)
            n1 = lp_norm(d1_all, p).reshape(n, kk)
            n1 = torch.where(ok1.reshape(n, kk), n1, n1 + 1e12)  # unreachable planes last
            j = n1.argmin(1)
            ar = torch.arange(n, device=x0.device)
            d1 = d1_all.reshape(n, kk, -1)[ar, j]
            gj, hj = g[ar, j], h[ar, j]
            if lin0 is None:
                lin0 = lp_norm(d1, p).clamp_min(1e-6)
            # delta_2: project x0 onto the same plane: gj . (x0 + d - x) = -hj
            c2 = -hj - (gj * (f0 - fx)).sum(1)
            d2, _ = project_hyperplane_box(gj, c2, -f0, 1 - f0, p)
            a1, a2 = lp_norm(d1, p), lp_norm(d2, p)
            alpha = (a1 / (a1 + a2).clamp_min(1e-30)).clamp(0, _ALPHA_MAX).unsqueeze(1)
            nx = ((1 - alpha) * (fx + eta * d1) + alpha * (f0 + eta * d2)).clamp(0, 1).view_as(xs)
            with torch.no_grad():
                hit = is_adversarial(model(nx), ys, targeted)
            dist = lp_norm(nx - xs, p)
            better = hit & (dist < best_norm)
            best_norm = torch.where(better, dist, best_norm)
            best_adv = torch.where(view_as_batch(better, xs), nx, best_adv)
            x = torch.where(view_as_batch(hit, xs), xs + _BETA * (nx - xs), nx)
    found = torch.isfinite(best_norm)
    if found.any():
        f = found.nonzero().squeeze(1)
        best_adv[f] = line_search(model, xs[f], best_adv[f], ys[f], targeted, search_steps)
        out[idx[f]] = best_adv[f]
    return out
