"""FAB, the Fast Adaptive Boundary attack, as a minimal-norm attack for L1, L2 and Linf.

Reference: Croce, Hein. Minimally distorted Adversarial Examples with a Fast Adaptive Boundary
Attack. ICML 2020.

Each step linearises the classifier at the current iterate, projects both the iterate and the
clean input onto the nearest linearised decision hyperplane intersected with the box [0, 1]^d
(exact minimal-Lp projections, :func:`project_hyperplane_box`), and moves to a convex
combination of the two projections, biased towards the clean input; once adversarial the
iterate is pulled back towards the clean input. The smallest verified adversarial point is kept.

Also shared with DeepFool: the nearest linearised boundary within the box
(:func:`nearest_plane`: one forward pass, one backward pass per candidate pair through it, and
exact projections only onto the planes that can still be nearest), the box-constrained
projection (:func:`project_hyperplane_box`, exact, without sorting in L2 and Linf), the logit
differences and gradients of a single pair (:func:`pair_grads`), :func:`row_norm` and the
bisection onto the boundary (:func:`line_search`).

No pass puts more rows through the model than the batch it was given: the K pair gradients
come from K backward passes through one forward graph, and are reduced as they come (their
dual norms), so memory stays that of a plain gradient loop on the batch.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import (INF, check_inputs, check_norm, dual, flat, input_grad, is_adversarial, make_generator, pair_backward,
                      random_in_ball, sort_rows, update_rows_)

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


def pair_grads(model: nn.Module, x: Tensor, labels: Tensor, targeted: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One logit difference per sample that is positive while the attack has not succeeded, and
    its input gradient (one forward and one backward pass).

    Untargeted: h = z_label - z_j with j the top class other than the label at ``x``;
    targeted (labels are targets): h = z_j - z_target with j the top class other than the
    target. Returns ``(logits (B, C), h (B,), grad h (B, D))``.
    """
    lab = labels.unsqueeze(1)

    def weigh(z: Tensor):
        other = z.scatter(1, lab, -INF).argmax(1, keepdim=True)
        sign = -1.0 if targeted else 1.0
        w = torch.zeros_like(z).scatter_(1, lab, sign).scatter_(1, other, -sign)
        return w, (z.gather(1, lab) - z.gather(1, other)).squeeze(1) * sign

    z, h, g = input_grad(model, x, weigh)
    return z, h, flat(g)


def nearest_plane(model: nn.Module, x: Tensor, labels: Tensor, cands: Tensor | None, targeted: bool, p: float,
                  nudge: float = 0.0):
    """The nearest linearised decision boundary of each sample within the box, exactly.

    ``x`` (B, ...) is the iterate. Each pair (``a``, ``b``) of a class that must lose its lead
    and one that must take it (untargeted: the label and each of ``cands`` (B, K); targeted:
    the current top other class and the target ``labels``) has the logit difference
    ``h = z_a - z_b`` (> 0 before success) and, linearised at ``x``, the boundary plane
    ``G . delta = c`` with ``G = grad(z_b - z_a)`` and ``c = h + nudge * max(|h|, 1e-6)``
    (``nudge`` > 0 aims just past it). Returned per sample: the plane whose minimal-Lp step
    ``delta`` within the box [0, 1] is shortest (planes the box cannot reach count after all
    that it can, as in :func:`project_hyperplane_box`).

    Cost: one forward pass on the batch and one backward pass through it per pair, plus one
    more per further plane projected. Every plane's unconstrained distance ``|c| / ||G||_q``
    (q dual to p) is a lower bound on its distance within the box, so after projecting the
    plane that is nearest without the box, planes are projected, nearest-first, only on the
    samples where that bound is below the best distance so far (in L2 and Linf one projection
    is usually enough; L1, where the box matters most, may need a few).

    Returns ``(logits (B, C), g (B, D), c (B,), delta (B, D), dist (B,), feasible (B,))``: the
    logits at ``x`` and, for the chosen plane, ``G``, ``c``, the step and its Lp length, and
    whether the box reaches the plane.
    """
    b = x.shape[0]
    lab = labels.unsqueeze(1)

    def pairs(z: Tensor):
        if targeted:  # a: the best class other than the target; b: the target
            return z.scatter(1, lab, -INF).argmax(1, keepdim=True), lab
        return lab, cands

    zd, lead, take, weights, grad_of = pair_backward(model, x, pairs)
    k = take.shape[1]
    h = zd.gather(1, lead) - zd.gather(1, take)  # (B, K)
    c_all = h + nudge * h.abs().clamp_min(1e-6) if nudge else h
    q = dual(p)
    # all pairs: the unconstrained distances, keeping G of the nearest so far
    bound = c_all.abs().t().contiguous()  # (K, B), divided in place by the dual norms below
    g = nearest = None
    for j in range(k):
        gj = grad_of(weights[j])
        bj = bound[j].div_(row_norm(gj, q).clamp_min_(1e-30))
        if g is None:
            g, nearest = gj, bj.clone()
        else:  # strictly nearer: the first of equals is kept, as the stable sort below orders them
            update_rows_(g, gj, bj < nearest)
            torch.minimum(nearest, bj, out=nearest)
    bound = bound.t()
    xf = flat(x.detach())
    lo, hi = xf.neg(), 1 - xf  # the box room (made after the backward passes: a smaller peak)
    rows = torch.arange(b, device=x.device)
    order = torch.sort(bound, dim=1, stable=True).indices
    c = c_all[rows, order[:, 0]]
    delta, ok = project_hyperplane_box(g, c, lo, hi, p)
    dist = row_norm(delta, p)
    key = torch.where(ok, dist, dist + 1e12)  # unreachable planes after all reachable ones
    for m in range(1, k):
        cols = order[:, m]
        todo = bound[rows, cols] < key  # this plane can still be nearer within the box
        if not bool(todo.any()):
            break
        gm = grad_of(weights[cols, rows])
        cm = c_all[rows, cols]
        dm, okm = project_hyperplane_box(gm, cm, lo, hi, p)
        nm = row_norm(dm, p)
        km = torch.where(okm, nm, nm + 1e12)
        better = todo & (km < key)
        update_rows_(g, gm, better)
        update_rows_(delta, dm, better)
        c = torch.where(better, cm, c)
        dist = torch.where(better, nm, dist)
        ok = torch.where(better, okm, ok)
        key = torch.where(better, km, key)
    return zd, g, c, delta, dist, ok


@torch.no_grad()
def line_search(model: nn.Module, x0: Tensor, adv: Tensor, labels: Tensor, targeted: bool, steps: int) -> Tensor:
    """Bisect on the segment [x0, adv] for the adversarial point closest to x0.

    ``adv`` must be adversarial (rows that are not are returned unchanged). After ``steps``
    halvings the returned point is adversarial and within 2^-steps of the segment's crossing.
    The bracket is ``[hi - width, hi]`` with ``hi`` the closest fraction found adversarial and
    ``width = 2^-step`` (fractions are dyadic, hence exact); the returned point is recomputed
    exactly as it was tested.
    """
    x0f = flat(x0)
    delta = flat(adv) - x0f
    hi = torch.ones((x0f.shape[0], 1), device=x0.device, dtype=x0.dtype)
    width = 1.0
    for _ in range(steps):
        width *= 0.5
        mid = hi - width
        ok = is_adversarial(model(torch.addcmul(x0f, mid, delta).clamp_(0, 1).view_as(x0)), labels, targeted)
        hi = torch.where(ok.unsqueeze(1), mid, hi)
    out = torch.where(hi < 1, torch.addcmul(x0f, hi, delta).clamp_(0, 1), flat(adv))
    return out.view_as(x0)


def row_norm(delta: Tensor, p: float) -> Tensor:
    """Lp norm over the last dimension (of each plane's step in a (B, K, D) batch, say)."""
    if p == INF:
        return delta.abs().amax(-1)
    if p == 1:
        return delta.abs().sum(-1)
    return delta.norm(dim=-1)


def project_hyperplane_box(w: Tensor, c: Tensor, lo: Tensor, hi: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Minimal-Lp ``delta`` with ``w . delta = c`` and ``lo <= delta <= hi``, per row.

    ``w``: (..., D), ``c``: (...), ``lo, hi``: broadcastable to ``w`` with lo <= 0 <= hi (a
    batch of N points with K planes each: ``w`` (N, K, D), ``lo, hi`` (N, 1, D)). Solved exactly:

    - L2: delta_i = clip(lam w_i, lo_i, hi_i) and Linf: delta_i = clip(lam sign(w_i), lo_i, hi_i),
      with lam >= 0 the root of f(lam) = w . delta(lam) = c (the KKT conditions of the
      projection). f is increasing, piecewise linear and concave (a coordinate stops
      contributing slope once it reaches its bound), so Newton's method from lam = 0 rises
      monotonically to the root and stops exactly, on the linear piece that holds it, after at
      most D steps (typically 2-4): each step solves lam Q + S = c for the slope Q of the free
      coordinates and the contribution S of those at their bound at the current lam;
    - L1: a fractional knapsack, filling coordinates in decreasing |w_i| up to their box room.

    Returns ``(delta, feasible)``; where the box cannot reach the hyperplane, ``delta`` is the
    box point that goes farthest towards it and ``feasible`` is False.
    """
    if (c < 0).any():  # solve with c >= 0: (-w) . delta = -c is the same plane (c = 0: delta = 0)
        w = w * c.sign().unsqueeze(-1)
        c = c.abs()
    # the rows are many and short: the steps below write into a few buffers, in place
    room = w * hi
    knee = torch.mul(w, lo)
    torch.maximum(room, knee, out=room)  # |w_i| times the box room in the direction of sign(w_i)
    reach = room.sum(-1, keepdim=True)  # largest w . delta over the box
    feasible = (reach >= c.unsqueeze(-1)).squeeze(-1)
    if p == 1:
        return _knapsack_l1(w, c, room), feasible
    v = w if p == 2 else w.sign()  # delta(lam) = clip(lam v, lo, hi)
    slope = w * v  # d(w_i delta_i) / d lam while coordinate i is free
    torch.div(room, slope, out=knee)  # lam at which coordinate i reaches its bound (nan if w_i = 0: never free)
    lam = _newton_knees(slope, room, knee, c.unsqueeze(-1) - reach)
    # infeasible rows end with lam = 1e30 (no free coordinate left): delta is the farthest corner
    delta = torch.mul(v, lam, out=knee)
    torch.maximum(delta, lo, out=delta)
    torch.minimum(delta, hi, out=delta)
    return delta, feasible


def _newton_knees(slope: Tensor, room: Tensor, knee: Tensor, short: Tensor) -> Tensor:
    """Per row, the root lam >= 0 of sum_i slope_i min(lam, knee_i) = sum_i room_i + short.

    ``slope``, ``room = slope * knee``, ``knee``: (..., D); ``short``: (..., 1). Between knees
    the left side is linear, lam Q + S, with Q the slope of the coordinates still free
    (knee_i > lam) and S the room of the others: each Newton step solves lam Q + S = c on the
    current piece. The function is concave, so every step lands at or below the root and the
    free sets only shrink; a row whose free set stays the same has its root (exactly, after at
    most D steps; most rows take one or two). Once the rows still moving are few, only they are
    iterated. Returns lam (..., 1); 1e30 where the sum cannot reach (no free coordinate left).
    """
    shape, d = short.shape, knee.shape[-1]
    slope, room, knee, short = slope.reshape(-1, d), room.reshape(-1, d), knee.reshape(-1, d), short.reshape(-1, 1)
    lam = torch.zeros_like(short)
    out, rows = lam, None  # the roots, and the rows still iterated when not all
    free = torch.gt(knee, lam, out=torch.empty_like(knee))  # 1.0 where coordinate i is free above lam (nan: never)
    n_free = free.sum(-1, keepdim=True)
    prod = torch.empty_like(knee)
    compact = knee.numel() >= 1 << 15  # on small batches, copying rows costs more than it saves
    for _ in range(d):
        q = torch.mul(slope, free, out=prod).sum(-1, keepdim=True)
        s = torch.mul(room, free, out=prod).sum(-1, keepdim=True)
        lam = torch.fmax((short + s) / q, lam)  # q = 0: inf, or nan (ignored by fmax)
        torch.gt(knee, lam, out=free)
        n_new = free.sum(-1, keepdim=True)
        if not compact:
            if torch.equal(n_new, n_free):  # no free set changed: lam is the root
                break
        else:
            moved = (n_new != n_free).squeeze(1)  # rows not at their root yet
            n_moved = int(moved.sum())
            if n_moved == 0:
                break
            if 4 * n_moved <= len(moved):  # iterate on those rows only
                if rows is None:
                    out = lam
                else:
                    out[rows] = lam
                keep = moved.nonzero().squeeze(1)
                rows = keep if rows is None else rows[keep]
                slope, room, knee, short, lam, free, n_new = (
                    slope[keep], room[keep], knee[keep], short[keep], lam[keep], free[keep], n_new[keep])
                prod = prod[:n_moved]
        n_free = n_new
    if rows is None:
        out = lam
    else:
        out[rows] = lam
    return out.clamp_max_(1e30).view(shape)


def _knapsack_l1(w: Tensor, c: Tensor, room: Tensor) -> Tensor:
    """L1 case of :func:`project_hyperplane_box` (``c >= 0`` already): fill in decreasing |w_i|.

    With the coordinates in decreasing |w_i| and ``before_i`` the progress of those ahead of i
    when they are full, coordinate i moves by ``clip((c - before_i) / |w_i|, 0, cap_i)``: full
    while the ones ahead fall short of c, partial for the one that reaches it, zero after (all
    full where the box cannot reach c).
    """
    d = w.shape[-1]
    aw = w.abs().clamp_min_(1e-30)  # (w_i = 0: cap_i = 0 below, so the coordinate never moves)
    cap = room / aw  # box room in the direction of sign(w_i)
    _, order = sort_rows(aw.view(-1, d), descending=True)
    after = room.view(-1, d).gather(1, order).cumsum_(1)  # progress once the coordinates up to k are full
    before = torch.empty_like(after).scatter_(1, order, after).view_as(room).sub_(room)
    amount = torch.minimum(before.neg_().add_(c.unsqueeze(-1)).div_(aw).clamp_min_(0), cap)
    return amount.copysign_(w)


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

    Cost per step: one forward pass for the gradients and one for the new point, one backward
    pass per candidate class and one per further plane projected (see :func:`nearest_plane`);
    no pass holds more rows than the batch.

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
    best_adv = f0.clone()
    lin0 = None  # first linearised distance, the scale of the random restarts

    for r in range(restarts):
        if r == 0:
            fx = f0.clone()
        else:
            if lin0 is None:  # steps == 0: no linearisation yet
                lin0 = torch.full_like(best_norm, 1e-2)
            radius = 0.5 * torch.where(torch.isfinite(best_norm), best_norm, lin0)
            fx = flat((xs + random_in_ball(xs, radius, p, gen)).clamp(0, 1))
        for _ in range(steps):
            # delta_1: x projected onto the nearest linearised boundary gj . delta = hj within the box
            _, gj, hj, d1, a1, _ = nearest_plane(model, fx.view_as(xs), ys, cands, targeted, p)
            if lin0 is None:
                lin0 = a1.clamp_min(1e-6)
            # delta_2: project x0 onto the same plane: gj . (x0 + d - x) = hj
            c2 = hj - torch.linalg.vecdot(gj, f0 - fx)
            d2, _ = project_hyperplane_box(gj, c2, f0.neg(), 1 - f0, p)  # (box room made here: a smaller peak)
            a2 = row_norm(d2, p)
            alpha = (a1 / (a1 + a2).clamp_min(1e-30)).clamp_(0, _ALPHA_MAX).unsqueeze(1)
            # (1 - alpha) (x + eta delta_1) + alpha (x0 + eta delta_2)
            nx = torch.lerp(torch.add(fx, d1, alpha=eta), torch.add(f0, d2, alpha=eta), alpha).clamp_(0, 1)
            with torch.no_grad():
                hit = is_adversarial(model(nx.view_as(xs)), ys, targeted)
            step = nx - f0
            dist = row_norm(step, p)
            better = hit & (dist < best_norm)
            best_norm = torch.where(better, dist, best_norm)
            update_rows_(best_adv, nx, better)
            fx = update_rows_(nx, torch.add(f0, step, alpha=_BETA), hit)  # pulled back where adversarial
    found = torch.isfinite(best_norm)
    if found.any():
        f = found.nonzero().squeeze(1)
        adv = line_search(model, xs[f], best_adv[f].view_as(xs[f]), ys[f], targeted, search_steps)
        out[idx[f]] = adv
    return out
