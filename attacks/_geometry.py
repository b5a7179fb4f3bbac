"""Decision-boundary geometry shared by the minimal attacks (DeepFool, FAB, boundary) and the
rival ranking of the budget attacks (PGD, APGD).

- :func:`nearest_plane`: the nearest linearised decision boundary within the box [0, 1]^d
  (one forward pass, one backward pass per candidate pair through it, exact projections only
  onto the planes that can still be nearest);
- :func:`project_hyperplane_box`: the exact minimal-Lp projection onto a hyperplane intersected
  with the box (without sorting in L2 and Linf);
- :func:`pair_grads`: the logit difference of a single pair and its input gradient;
- :func:`line_search`: bisection onto the boundary along a segment;
- :func:`candidate_classes`, :func:`rival_classes`: which wrong classes to linearise.

No pass puts more rows through the model than the batch it was given: the K pair gradients
come from K backward passes through one forward graph, and are reduced as they come (their
dual norms), so memory stays that of a plain gradient loop on the batch.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import flat, input_grad, is_adversarial, pair_backward, sort_rows, update_rows_
from .norms import INF, dual, lp_norm, row_norm


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


def project_plane_in_box(w: Tensor, c: Tensor, lo: Tensor, hi: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Minimal-Lp ``delta`` with ``w . delta = c`` and ``lo <= delta <= hi``, for any box.

    Unlike :func:`project_hyperplane_box` the box need not contain 0 (the walk's
    trust region usually does not contain the clean input). Rows: ``w, lo, hi`` (N, D), ``c``
    (N,). Computed in float64. Returns ``(delta, feasible)``; where no point of the box lies on
    the plane, ``delta`` is the box point nearest to it (in ``w . delta``) and ``feasible`` is
    False.
    """
    w, c, lo, hi = w.double(), c.double(), lo.double(), hi.double()
    wl, wh = w * lo, w * hi
    reach_lo = torch.minimum(wl, wh).sum(-1)
    reach_hi = torch.maximum(wl, wh).sum(-1)
    feasible = (reach_lo <= c) & (c <= reach_hi)
    c = torch.minimum(torch.maximum(c, reach_lo), reach_hi)
    if p == 1:
        # each coordinate at its own nearest value to 0; from there every unit of |delta_i| costs 1
        d0 = lo.clamp_min(0) + hi.clamp_max(0)
        e, _ = project_hyperplane_box(w, c - (w * d0).sum(-1), lo - d0, hi - d0, 1.0)
        return d0 + e, feasible
    v = w if p == 2 else w.sign()
    # f(lam) = sum_i w_i clip(lam v_i, lo_i, hi_i) is nondecreasing and piecewise linear: coordinate
    # i is free (slope w_i v_i >= 0) between its knees lo_i / v_i and hi_i / v_i (in increasing
    # order), clipped outside. Sorting the 2D knees gives f at each knee from cumulative slopes;
    # the root lies on the first piece where f reaches c, and is solved there exactly.
    nz = v != 0
    full = bool(nz.all())  # the common case (no zero weight): no infinite knot, fewer passes
    if full and p == INF:
        pos = w > 0  # lo / sign(w) and hi / sign(w), ordered, are exactly these (a sign flip)
        enter, leave, slope = torch.where(pos, lo, -hi), torch.where(pos, hi, -lo), w.abs()
    elif full:
        k1, k2 = lo / v, hi / v
        enter, leave, slope = torch.minimum(k1, k2), torch.maximum(k1, k2), w * v
    else:
        vs = torch.where(nz, v, torch.ones_like(v))
        k1, k2 = lo / vs, hi / vs
        enter = torch.where(nz, torch.minimum(k1, k2), torch.full_like(k1, INF))
        leave = torch.where(nz, torch.maximum(k1, k2), torch.full_like(k1, INF))
        slope = torch.where(nz, w * v, torch.zeros_like(w))
    knots = torch.cat([enter, leave], -1)
    jumps = torch.cat([slope, -slope], -1)
    knots, order = sort_rows(knots)
    jumps = jumps.gather(-1, order)
    after = jumps.cumsum(-1)  # slope right after each knot
    gaps = torch.diff(knots, dim=-1)
    if not full:
        gaps.nan_to_num_(0.0, posinf=0.0)
    # f at knot k > 0 (f at knot 0 is reach_lo); f is nondecreasing, so the knots below c are a prefix
    f_next = gaps.mul_(after[..., :-1]).cumsum_(-1).add_(reach_lo.unsqueeze(-1))
    below = f_next < c.unsqueeze(-1)
    if not full:
        below &= torch.isfinite(knots[..., 1:])
    j = below.sum(-1, keepdim=True) + (reach_lo < c).unsqueeze(-1) - 1
    first = j <= 0  # knot 0 (also where no knot lies below c)
    j.clamp_min_(0)
    kj, sj = knots.gather(-1, j).squeeze(-1), after.gather(-1, j).squeeze(-1)
    fj = torch.where(first.squeeze(-1), reach_lo, f_next.gather(-1, (j - 1).clamp_min_(0)).squeeze(-1))
    lam = kj + (c - fj) / sj.clamp_min(1e-300)
    if not full:
        lam = torch.where(torch.isfinite(kj), lam, torch.zeros_like(lam))
    return torch.clamp(lam.unsqueeze(-1) * v, lo, hi), feasible


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


def rival_classes(model: nn.Module, x0: Tensor, logits: Tensor, labels: Tensor, p: float, top: int = 9) -> Tensor:
    """(B, K) wrong classes to push above the label, nearest linearised boundary first.

    The ``top`` most likely wrong classes at the clean point are ranked by the DeepFool
    estimate (z_label - z_j) / ||grad(z_label - z_j)||_q (q dual to p). One forward pass on the
    batch and one backward pass through it per candidate (K * B sample passes backward), each
    gradient reduced to its norm as it comes.
    """
    cand = candidate_classes(logits, labels, top)  # (B, K)
    k = cand.shape[1]
    if k == 1:
        return cand
    lab = labels.unsqueeze(1)
    zd, _, _, weights, grad = pair_backward(model, x0, lambda z: (lab, cand))
    dist = (zd.gather(1, lab) - zd.gather(1, cand)).t().contiguous()  # (K, B), divided by the norms below
    q = dual(p)
    for j in range(k):
        dist[j].div_(lp_norm(grad(weights[j]), q).clamp_min_(1e-30))
    return cand.gather(1, dist.t().argsort(dim=1))
