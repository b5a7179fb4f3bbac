"""A boundary attack: walk along the decision boundary from adversarial starting points (L1, L2, Linf).

After Brendel, Rauber, Kümmerer, Ustyuzhaninov, Bethge. Accurate, reliable and fast robustness
evaluation. NeurIPS 2019.

Every other minimal attack here starts at the clean input and follows the local gradient; on a
folded decision boundary (networks that memorise noise) it can stop in a local minimum of the
distance. This one starts from points that are already adversarial, possibly far away (other
classes' training points, other samples' adversarial points, random points in the box, or
points the caller gives), brings each onto the boundary by bisection towards the input, and then
walks along the boundary towards the input.

One step, from a boundary point ``a`` of sample ``x0`` with the pair logit difference ``h``
(> 0 while not adversarial, as in :func:`attacks.fab.pair_grads`) and its gradient ``g`` at
``a``, solves the trust-region problem

    minimise ||z - x0||_p  subject to  h(a) + g . (z - a) = -tau,   z in [0, 1]^d,
                                       ||z - a||_inf <= r,

exactly: the L-infinity trust region intersected with the box is a box that need not contain
``x0``, and :func:`attacks._geometry.project_plane_in_box` finds the minimal-Lp point of a hyperplane within any
box (L1: a fractional knapsack after moving each coordinate to its nearest feasible value; L2
and Linf: ``delta_i = clip(lam v_i, lo_i, hi_i)`` with ``v = w`` or ``sign(w)`` and the root
``lam`` of a monotone piecewise-linear equation, found on its linear piece after one sort of the
knees). ``tau`` aims a hair past the linearised boundary (a relative ``overshoot`` of the
distance). The step is taken when the new point is adversarial and nearer to ``x0``; then ``r``
doubles, otherwise it shrinks 4-fold. A walk ends when ``r`` falls below ``1e-5`` of its distance,
when it has nearly converged (``r`` under 1e-4 of its distance) 0.1% or more behind its sample's
best walk, or after ``steps`` steps. Each step linearises the pair of the label and each candidate
class and takes the nearest solution. Walks that end against a convex kink are polished with
cutting planes (:func:`_polish`). Brendel et al. use an L2 trust region and a dual solver per norm;
the box-shaped region used here keeps every step an exact projection.

Cost per step and walk: one forward pass at the candidate point and one backward pass per candidate
class (the gradients are kept for the next step when the step is taken), plus the plane
projections: every walk's plane of least unconstrained distance in one batch, then, in a second
batch, the other planes that cross the trust box and whose unconstrained distance can still beat
the first. All walks of a batch (``B x S`` rows for ``S`` starts per sample) run together; finished
walks leave the batch. The polish's small LPs (L1, Linf) go to HiGHS 32 rows per call, as one
block-diagonal LP.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ._common import check_inputs, check_norm, flat, is_adversarial, pair_backward
from ._geometry import candidate_classes, line_search, pair_grads, project_plane_in_box
from .norms import INF, dual, row_norm
from .starts import ball_starts, coordinate_starts, far_starts, ray_starts

_NORMS = (1.0, 2.0, INF)
# The staged search (``escalate``, see :func:`boundary`). Chosen on experiments/bench_exact_radii.py.
_FIRST_STEPS, _FIRST_RAYS, _FIRST_POLISH = 30, 4, 4  # the light first pass
_FIRST_NEAREST = 2  # first pass: starts at the 2 nearest pool points of another class, and at the
_FIRST_BISECTED = (32, 2)  # 2 of the 32 nearest that lie nearest after bisection onto the boundary
_CLASSES = 5  # classes per walk in the staged passes: nearest linearised boundaries at its start
_HARD_STEPS, _HARD_POLISH = 30, 10  # escalated points (those the first pass improved): steps, cuts
_FOLD_STEPS = 15  # the other points of a folded batch: steps (cuts: _FIRST_POLISH)
# far starts per escalated point: (improved points, other points of a folded batch); L1 optima
# are sparse vertices in narrow basins, reached from far starts that rank low for many steps
_FAR = {1.0: (32, 32), 2.0: (16, 8), INF: (16, 8)}
_COORDS_FIRST, _COORDS_FAR = 2, 4  # L1: single-coordinate starts in the first pass, on escalation
_BALL = (64, 20, 4)  # escalated points: PGD restarts inside the best ball, their steps, starts kept
_FOLDED = 0.05  # share of the points improving by more than ``escalate`` that marks a folded batch
_LP_BLOCK = 32  # polish problems per HiGHS call: its time grows faster than the problem's size
_SHRINK = 0.25  # trust radius factor after a failed step (x2 after a taken one)
_TOL = 1e-5  # a walk ends when its trust radius falls under this fraction of its distance
_BEHIND = 1e-3  # ... or when it is this much behind its sample's best walk with a radius under 1e-4


def _check_starts(starts: Tensor, inputs: Tensor) -> Tensor:
    """(B, S, D) flat view of ``starts`` given as (B, ...) or (B, S, ...); ValueError otherwise."""
    b, shape = inputs.shape[0], tuple(inputs.shape[1:])
    if not isinstance(starts, Tensor):
        raise ValueError(f"boundary: starts must be a tensor, got {type(starts).__name__}")
    if tuple(starts.shape) == (b, *shape):
        starts = starts.unsqueeze(1)
    elif starts.ndim != len(shape) + 2 or starts.shape[0] != b or tuple(starts.shape[2:]) != shape:
        raise ValueError(f"boundary: starts must have shape {(b, *shape)} or {(b, 'S', *shape)} "
                         f"(one or S starting points per input), got {tuple(starts.shape)}")
    starts = starts.detach().to(device=inputs.device, dtype=inputs.dtype)
    if starts.numel() and (not torch.isfinite(starts).all() or starts.min() < 0 or starts.max() > 1):
        raise ValueError("boundary: starts must be finite and lie in [0, 1]")
    return starts.reshape(b, starts.shape[1], -1)


def boundary(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    steps: int = 100,
    targeted: bool = False,
    starts: Tensor | None = None,
    far: int | None = None,
    pool: Tensor | None = None,
    pool_adv: Tensor | None = None,
    random_starts: int = 32,
    nearest: int = 32,
    rays: int = 8,
    candidates: int | None = None,
    overshoot: float = 1e-5,
    search_steps: int = 16,
    polish: int = 40,
    polish_rows: int = 2,
    escalate: float | None = 1e-2,
    bad_starts: str = "error",
    seed: int = 0,
) -> Tensor:
    """Minimal adversarial points by walking the decision boundary from adversarial starts.

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
    steps : int
        Trust-region steps per walk.
    starts : Tensor, optional
        Adversarial starting points, (B, ...) or (B, S, ...). A start equal to its input means
        "none for this sample"; any other start that is not adversarial is a ValueError.
    far : int, optional
        How many far starting points to find per sample (:func:`attacks.starts.far_starts`), in
        addition to ``starts``. Default: 8 without ``starts``, 0 with them.
    pool : Tensor, optional
        (N, ...) candidate points for the far starts (e.g. the training set); the nearest ones
        the model puts in another class are used. Default: ``inputs`` themselves.
    pool_adv : Tensor, optional
        (M, ...) adversarial points already found for other samples, also candidates.
    random_starts : int
        Random points of the box tried per sample as far starts (candidates: the nearest after
        bisection are kept).
    nearest : int
        Nearest points of ``pool`` and of ``pool_adv`` tried per sample as far starts (candidates,
        as ``random_starts``).
    rays : int
        Restarts near the nearest start found (:func:`attacks.starts.ray_starts`): random rays
        around its direction, brought to the boundary and walked.
    candidates : int or None
        The walk linearises the pairs (label, k) for the ``candidates`` classes k most likely at
        the input (None: all; in the staged passes of ``escalate``, the 5 of them whose boundary
        is nearest at the walk's start) and steps towards the nearest (planes whose unconstrained
        distance cannot beat the nearest so far are not projected); targeted walks use the target.
    overshoot : float
        Each step aims past the linearised boundary by this fraction of the current distance.
    search_steps : int
        Bisection steps that bring each start onto the boundary and refine the final point.
    polish : int
        Cutting-plane steps on each sample's best point after the walks (0: none); see
        :func:`_polish`.
    polish_rows : int
        How many of each sample's walks (the nearest ones) are polished.
    escalate : float or None
        Effort where it pays, with starts given and no ``far`` starts asked for. A light first pass
        walks (30 steps) from the starts, from the 2 nearest points of ``pool`` in another class,
        from the 2 of its 32 nearest that lie nearest once bisected onto the boundary, from 4 rays
        and, in L1, from the 2 nearest single-coordinate starts
        (:func:`attacks.starts.coordinate_starts`); each walk linearises the 5 classes whose
        boundary, linearised at its start, lies nearest the input; one walk per sample is polished
        with at most 4 cuts. Samples where it beat every start by more than this relative amount,
        or that had no start, are searched again (30 steps, at most 10 cuts on their 2 best walks)
        from their best point, from far starts (``nearest`` pool points, ``nearest`` points of
        ``pool_adv``, ``random_starts`` random points: the 32 nearest after bisection in L1, 16 in
        L2 and Linf), ``rays`` rays, the 4 nearest successes of 64 PGD restarts from random points
        inside their best ball at 0.99 of its radius (20 steps each,
        :func:`attacks.starts.ball_starts`) and, in L1, 4 single-coordinate starts. When at least 5% of
        the samples (and at least one) improved so, the boundary is folded and every other sample
        is searched again from its best point and far starts (32 in L1, 8 in L2 and Linf; 15
        steps, 4 cuts). None: one pass with everything.
    bad_starts : str
        ``"error"``: a given start that is not adversarial is a ValueError; ``"drop"``: it is
        ignored (the cascade passes points verified in another batch, where rounding at the
        boundary may differ).
    seed : int
        Seed of the local generator for the random starts.

    Returns
    -------
    Tensor
        Adversarial inputs in [0, 1] of smallest norm found; the input where none was found.
    """
    # One function: half of it is the docstring; the rest checks the arguments, gathers each
    # sample's starts and runs the staged passes over the shared best points (the walk, the polish
    # and the starts are the helpers below and attacks.starts).
    p = check_norm(norm, _NORMS, "boundary")
    check_inputs(inputs, labels)
    if steps < 0 or polish < 0 or search_steps < 0 or random_starts < 0 or not overshoot >= 0 or (far is not None and far < 0):
        raise ValueError("boundary: steps, far, random_starts, overshoot and search_steps must be >= 0")
    x0 = inputs.detach()
    b = x0.shape[0]
    out = x0.clone()
    given = None if starts is None else _check_starts(starts, x0)
    if b == 0:
        return out
    shape = tuple(x0.shape[1:])
    with torch.no_grad():
        logits = model(x0)
    todo = ~is_adversarial(logits, labels, targeted)
    f0 = flat(x0)
    cand = []  # (B, S_k, D) candidate starts and (B, S_k) masks of the usable ones
    if given is not None:
        s_n = given.shape[1]
        none = (given == f0.unsqueeze(1)).all(-1)
        with torch.no_grad():
            adv = is_adversarial(model(given.reshape(b * s_n, *shape)), labels.repeat_interleave(s_n), targeted)
        adv = adv.view(b, s_n)
        bad = ~adv & ~none & todo.unsqueeze(1)
        if bad_starts not in ("error", "drop"):
            raise ValueError(f"boundary: bad_starts must be 'error' or 'drop', got {bad_starts!r}")
        if bad.any() and bad_starts == "error":
            raise ValueError(f"boundary: {int(bad.sum())} of the given starts are not adversarial for their input "
                             "(a start must already be misclassified; pass the input itself for 'no start')")
        cand.append((given, adv & todo.unsqueeze(1)))
    n_far = (8 if given is None else 0) if far is None else int(far)
    if n_far:
        fs, ok = far_starts(model, x0, labels, norm=p, pool=x0 if pool is None else pool, pool_adv=pool_adv,
                            keep=n_far, nearest=nearest, random=random_starts, targeted=targeted, seed=seed, search_steps=search_steps)
        cand.append((fs.reshape(b, fs.shape[1], -1), ok & todo.unsqueeze(1)))
    staged = escalate is not None and n_far == 0
    if staged and pool is not None:
        # the first pass also walks from the nearest pool points of other classes, and from those of
        # the 32 nearest that are nearest once bisected onto the boundary (often other ones)
        for near_n, keep_n in ((_FIRST_NEAREST, _FIRST_NEAREST), _FIRST_BISECTED):
            fs, ok = far_starts(model, x0, labels, norm=p, pool=pool, keep=keep_n, nearest=near_n, random=0,
                                targeted=targeted, seed=seed, search_steps=search_steps)
            cand.append((fs.reshape(b, fs.shape[1], -1), ok & todo.unsqueeze(1)))
    coord_s = None
    if staged and p == 1 and (_COORDS_FIRST or _COORDS_FAR):
        # L1 optima are sparse: the nearest boundary points along single coordinates
        coord_s = coordinate_starts(model, x0, labels, keep=max(_COORDS_FIRST, _COORDS_FAR), targeted=targeted,
                                    search_steps=search_steps)
        coord_s = (coord_s[0].reshape(b, coord_s[0].shape[1], -1), coord_s[1] & todo.unsqueeze(1))
        if _COORDS_FIRST:
            cand.append((coord_s[0][:, :_COORDS_FIRST], coord_s[1][:, :_COORDS_FIRST]))
    if staged:
        # light: 30 steps, 4 rays, the 5 classes whose boundary is nearest, one walk per sample
        # polished with 4 cuts
        best_x, best_r = _search(model, x0, f0, labels, logits, todo, cand, shape, p, targeted,
                                 min(steps, _FIRST_STEPS), overshoot, search_steps, min(polish, _FIRST_POLISH), 1,
                                 candidates, min(rays, _FIRST_RAYS), seed, _CLASSES)
    else:
        best_x, best_r = _search(model, x0, f0, labels, logits, todo, cand, shape, p, targeted, steps, overshoot,
                                 search_steps, polish, polish_rows, candidates, rays, seed)
    if staged:
        # effort where it pays: a first pass that found a nearer point than every start (by more than
        # ``escalate``), or had no start, marks a folded boundary; search those samples from far away
        if given is not None:
            d_start = torch.where(cand[0][1], row_norm(given - f0.unsqueeze(1), p),
                                  torch.full(given.shape[:2], INF, device=x0.device, dtype=x0.dtype)).amin(1)
        else:
            d_start = torch.full((b,), INF, device=x0.device, dtype=x0.dtype)
        gain = d_start / best_r - 1  # how much the first pass beat the starts
        hard = todo & ((gain > escalate) | ~torch.isfinite(d_start))
        folded = int((todo & (gain > escalate)).sum()) >= max(1, _FOLDED * int(todo.sum()))
        # the points that improved: a search from far starts (32 in L1, else 16), rays, restarts inside
        # the best ball and 10 cuts; on a folded boundary every other point too, from far starts alone
        # (32 in L1, else 8; 15 steps, 4 cuts)
        far_hard, far_fold = _FAR[p]
        groups = [(hard, rays, min(steps, _HARD_STEPS), min(polish, _HARD_POLISH), max(polish_rows, 2), far_hard,
                   _BALL[0])]
        if folded:
            groups.append((todo & ~hard, 0, min(steps, _FOLD_STEPS), min(polish, _FIRST_POLISH), 1, far_fold, 0))
        for grp, g_rays, g_steps, g_polish, g_rows, g_far, g_ball in groups:
            if not bool(grp.any()):
                continue
            i = grp.nonzero().squeeze(1)
            near = torch.where(torch.isfinite(best_r[i]).unsqueeze(1), best_x[i], f0[i])
            sub = [(near.unsqueeze(1), torch.isfinite(best_r[i]).unsqueeze(1))]
            if g_far:
                fs, ok = far_starts(model, x0[i], labels[i], norm=p, pool=x0 if pool is None else pool,
                                    pool_adv=pool_adv, keep=g_far, nearest=nearest, random=random_starts,
                                    targeted=targeted, seed=seed + 1, search_steps=search_steps)
                sub.append((fs.reshape(i.numel(), fs.shape[1], -1), ok))
            if coord_s is not None and _COORDS_FAR:
                sub.append((coord_s[0][i, :_COORDS_FAR], coord_s[1][i, :_COORDS_FAR]))
            if g_ball:
                # restarts inside the best ball: a success is nearer than the best point, usually in a
                # basin that no walk from it or from far away reaches (4 of the 5 points of the held-out
                # sphere MLPs that ended 4 to 13% above the exact Linf radius without them)
                bs, ok = ball_starts(model, x0[i], labels[i], best_r[i], norm=p, restarts=g_ball, steps=_BALL[1],
                                     keep=_BALL[2], targeted=targeted, seed=seed + 3, search_steps=search_steps)
                sub.append((bs.reshape(i.numel(), bs.shape[1], -1), ok))
            bx, br = _search(model, x0[i], f0[i], labels[i], logits[i], todo[i], sub, shape, p, targeted, g_steps,
                             overshoot, search_steps, g_polish, g_rows, candidates, g_rays, seed + 2, _CLASSES)
            better = br < best_r[i]
            best_x[i[better]] = bx[better]
            best_r[i[better]] = br[better]
    found = torch.isfinite(best_r)
    f = found.nonzero().squeeze(1)
    if f.numel():
        out[f] = line_search(model, x0[f], best_x[f].view(-1, *shape), labels[f], targeted, search_steps)
        out = _robust(model, x0, out, labels, found, targeted)
    return out


def _search(model, x0, f0, labels, logits, todo, cand, shape, p, targeted, steps, overshoot, search_steps, polish,
            polish_rows, candidates, rays, seed, keep=None):
    """Walks from the candidate starts ``cand`` (list of ((B, S, D) points, (B, S) masks)) and from
    ``rays`` ray starts near the nearest of them, then the cutting-plane polish. Returns each
    sample's best point (B, D) and its distance (B,) (inf where none)."""

    b = x0.shape[0]
    cand = list(cand)
    none_found = torch.full((b,), INF, device=x0.device, dtype=x0.dtype)
    if rays:
        # restarts near the best point known per sample (the given starts' nearest, else a far start)
        known = [s for s, m in cand]
        masks = [m for s, m in cand]
        if known:
            allc = torch.cat(known, 1)
            dist_c = torch.where(torch.cat(masks, 1), row_norm(allc - f0.unsqueeze(1), p),
                                 torch.full(allc.shape[:2], INF, device=x0.device, dtype=x0.dtype))
            j = dist_c.argmin(1)
            near = allc[torch.arange(b, device=x0.device), j]
            near = torch.where(torch.isfinite(dist_c.min(1).values).unsqueeze(1), near, f0)
        else:
            near = f0
        rs, ok = ray_starts(model, x0, labels, near.view_as(x0), norm=p, rays=rays, targeted=targeted, seed=seed,
                            search_steps=search_steps)
        cand.append((rs.reshape(b, rays, -1), ok & todo.unsqueeze(1)))
    if not cand:
        return f0.clone(), none_found
    starts_f = torch.cat([s for s, _ in cand], 1)
    usable = torch.cat([m for _, m in cand], 1)
    s_n = starts_f.shape[1]
    rows = usable.reshape(-1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return f0.clone(), none_found
    owner = rows // s_n
    xs0 = f0[owner]
    ys = labels[owner]
    # onto the boundary: the adversarial point of the segment [x0, start] nearest x0
    xa = flat(line_search(model, xs0.view(-1, *shape), starts_f.reshape(-1, f0.shape[1])[rows].view(-1, *shape),
                          ys, targeted, search_steps))
    cands_all = None if targeted else candidate_classes(logits, labels, candidates)
    xa, kinked, last_fail = _walk(model, xs0, xa, ys, shape, p, targeted, steps, overshoot,
                                  None if cands_all is None else cands_all[owner], owner, keep)
    dist = row_norm(xa - xs0, p)
    if polish and polish_rows:
        # polish each sample's polish_rows nearest walks (ties to one basin are common: rank, then pick)
        rank = torch.full((b, s_n), INF, device=x0.device, dtype=dist.dtype)
        rank.view(-1)[rows] = dist
        top = rank.topk(min(polish_rows, s_n), dim=1, largest=False)
        sel_flat = (top.indices + torch.arange(b, device=x0.device).unsqueeze(1) * s_n)[torch.isfinite(top.values)]
        pos = torch.full((b * s_n,), -1, dtype=torch.long, device=x0.device)
        pos[rows] = torch.arange(rows.numel(), device=x0.device)
        sel = pos[sel_flat]
        sel = sel[kinked[sel]]  # a walk that ended inside one linear piece is exact there already
        if sel.numel():
            xa[sel] = _polish(model, xs0[sel], xa[sel], ys[sel], shape, p, targeted, polish, overshoot,
                              seed=last_fail[sel])
        dist = row_norm(xa - xs0, p)
    # a start that was not adversarial in its bisection's batch (a boundary point of another sample,
    # rounding differently) comes back unchanged, and a walk from it that never stepped is still
    # not adversarial: such ends are dropped here, before each sample's best is chosen
    with torch.no_grad():
        valid = is_adversarial(model(xa.view(-1, *shape)), ys, targeted)
    dist = torch.where(valid, dist, torch.full_like(dist, INF))
    best = torch.full((b,), INF, device=x0.device, dtype=dist.dtype).scatter_reduce(0, owner, dist, "amin")
    pick = torch.zeros(b, dtype=torch.long, device=x0.device)
    is_best = (dist == best[owner]) & torch.isfinite(dist)
    pick.scatter_(0, owner[is_best], is_best.nonzero().squeeze(1))
    best_x = torch.where(torch.isfinite(best).unsqueeze(1), xa[pick], f0)
    return best_x, best


@torch.no_grad()
def _robust(model, x0: Tensor, out: Tensor, labels: Tensor, found: Tensor, targeted: bool) -> Tensor:
    """Points bisected to the boundary can flip back when the same input is evaluated in another batch
    (another summation order). Rows that are not adversarial in a pass over the whole output are
    moved out along their ray, by a relative 1e-6, 4e-6, ... until they are."""
    f0 = flat(x0)
    step = flat(out) - f0
    for k in range(10):
        bad = found & ~is_adversarial(model(out), labels, targeted)
        if not bool(bad.any()):
            break
        fac = 1.0 + 1e-6 * 4.0 ** k
        out[bad] = (f0[bad] + fac * step[bad]).clamp_(0, 1).view(-1, *out.shape[1:])
    return out


def _pair_planes(model, x: Tensor, ys: Tensor, cands: Tensor | None, targeted: bool):
    """Logits, and for each candidate pair the logit difference h (> 0 while not adversarial) and its
    input gradient: ``(logits (R, C), h (R, K), g (K, R, D))``. One forward pass and K backward passes.

    Untargeted: pairs (label, each of ``cands`` (R, K)); targeted: (top class other than the
    target, target), K = 1.
    """

    lab = ys.unsqueeze(1)

    def pairs(z: Tensor):
        if targeted:
            return z.scatter(1, lab, -INF).argmax(1, keepdim=True), lab
        return lab, cands

    zd, lead, take, weights, grad_of = pair_backward(model, x, pairs)
    h = zd.gather(1, lead) - zd.gather(1, take)  # (R, K): z_lead - z_take
    g = grad_of(weights).neg_()  # (K, R, D): grad of z_lead - z_take
    return zd, h, g


def _walk(model, x0: Tensor, xa: Tensor, ys: Tensor, shape, p: float, targeted: bool, steps: int,
          overshoot: float, cands: Tensor | None = None, owner: Tensor | None = None,
          keep: int | None = None) -> Tensor:
    """Trust-region steps along the boundary from the adversarial points ``xa`` (R, D) towards ``x0``.

    Each step solves the trust-region problem for every candidate pair's linearised boundary and
    takes the solution nearest ``x0``, so a walk can move from one class's boundary to another's.
    ``owner`` (R,) names each walk's sample (for the stop of walks far behind their sample's best);
    ``keep``: each walk linearises only the ``keep`` candidate classes whose boundary, linearised
    at its start, lies nearest ``x0``. The walks that are still going are kept packed (finished
    ones are written out and dropped), so a step touches only live rows.
    """
    # One function: the step is the paper's loop over packed live walks, whose state (points,
    # trust radii, candidate planes) is shared by the step, the acceptance test and the repacking;
    # the trust-region solve itself is project_plane_in_box.
    q = dual(p)
    dtype = xa.dtype
    xa = xa.clone()
    dist_all = row_norm(xa - x0, p).double()
    with torch.no_grad():
        _, h, g = _pair_planes(model, xa.view(-1, *shape), ys, cands, targeted)
    h, g = h.double(), g.double()  # (R, K), (K, R, D)
    if keep is not None and cands is not None and cands.shape[1] > keep:
        # keep, per walk, the classes whose boundary linearised at its start lies nearest x0
        near = ((g * (xa - x0).double().unsqueeze(0)).sum(-1) - h.t()).abs() / row_norm(g, q).clamp_min(1e-300)
        sel = near.topk(keep, dim=0, largest=False).indices  # (keep, R)
        cands = cands.gather(1, sel.t())
        h = h.gather(1, sel.t())
        g = g.gather(0, sel.unsqueeze(-1).expand(-1, -1, g.shape[-1]))
    k_n = h.shape[1]
    kinked = torch.zeros(xa.shape[0], dtype=torch.bool, device=xa.device)
    last_fail = xa.clone()
    # the live walks, packed: idx (their rows), their points, distances, trust radii and planes
    idx = (torch.isfinite(dist_all) & (dist_all > 0)).nonzero().squeeze(1)
    cur, z0 = xa[idx], x0[idx].double()
    dist, radius = dist_all[idx], (cur - x0[idx]).abs().amax(1).double() * 0.5  # half-width of the trust box
    h, g, ysl = h[idx], g[:, idx], ys[idx]
    cl = None if cands is None else cands[idx]
    n_s = None if owner is None else int(owner.max()) + 1
    for _ in range(steps):
        n = idx.numel()
        if n == 0:
            break
        a = cur.double()
        lo = torch.clamp(a - radius.unsqueeze(1), min=0.0) - z0
        hi = torch.clamp(a + radius.unsqueeze(1), max=1.0) - z0
        # every pair's plane g_k . delta = c_k (delta = z - x0, aiming tau past it); its unconstrained
        # distance |c_k| / ||g_k||_q bounds its distance within the box from below
        g_dual = row_norm(g, q)  # (K, n)
        c_all = (g * (a - z0).unsqueeze(0)).sum(-1) - h.t() - overshoot * dist.unsqueeze(0) * g_dual
        bound = c_all.abs() / g_dual.clamp_min(1e-300)
        ar = torch.arange(n, device=xa.device)
        # round 1: every row's plane of least bound; round 2, in one batch: the other planes that
        # cross the trust box and whose bound is below the distance found in round 1
        k0 = bound.argmin(0)
        best_d, feas = project_plane_in_box(g[k0, ar], c_all[k0, ar], lo, hi, p)
        best_n = torch.where(feas, row_norm(best_d, p), torch.full_like(dist, INF))
        best_k = k0.clone()
        if k_n > 1:
            more = bound < best_n.unsqueeze(0)
            more[k0, ar] = False
            kk, rr = more.nonzero(as_tuple=True)
            if rr.numel():
                wk, ck, lk, hk = g[kk, rr], c_all[kk, rr], lo[rr], hi[rr]
                lt, ht = lk, hk
                if p == INF:
                    # a plane can beat round 1 only where it meets the box within the Linf ball of
                    # round 1's distance (never empty: round 1's point lies in both); about half of
                    # the planes that cross the box do not (digits-w8)
                    t = best_n[rr].unsqueeze(1)
                    lt, ht = torch.maximum(lk, -t), torch.minimum(hk, t)
                wl, wh = wk * lt, wk * ht
                inb = (torch.minimum(wl, wh).sum(-1) <= ck) & (ck <= torch.maximum(wl, wh).sum(-1))
                sel = inb.nonzero().squeeze(1)
                kk, rr, wk, ck, lk, hk = kk[sel], rr[sel], wk[sel], ck[sel], lk[sel], hk[sel]
            if rr.numel():
                dk, fk = project_plane_in_box(wk, ck, lk, hk, p)
                nk = torch.where(fk, row_norm(dk, p), torch.full_like(dk[:, 0], INF))
                low = torch.full_like(best_n, INF).scatter_reduce(0, rr, nk, "amin")
                wi = ((nk == low[rr]) & (nk < best_n[rr])).nonzero().squeeze(1)
                best_d[rr[wi]] = dk[wi]
                best_n[rr[wi]] = nk[wi]
                best_k[rr[wi]] = kk[wi]
        cand = (z0 + best_d).clamp_(0, 1).to(dtype)
        with torch.no_grad():
            logits, hc, gc = _pair_planes(model, cand.view(-1, *shape), ysl, cl, targeted)
        ok = is_adversarial(logits, ysl, targeted)
        dc = row_norm(cand.double() - z0, p)
        take = ok & (dc < dist)
        cur = torch.where(take.unsqueeze(1), cand, cur)
        dist = torch.where(take, dc, dist)
        # a rejected step whose chosen pair has another gradient at the candidate crossed a kink
        gc = gc.double()
        g_old, g_new = g[best_k, ar], gc[best_k, ar]
        crossed = ~take & (row_norm(g_new - g_old, 2.0) > 1e-6 * row_norm(g_old, 2.0))
        if bool(crossed.any()):
            kinked[idx[crossed]] = True  # sticky: near a kink the last rejections may stay inside one piece
            last_fail[idx[crossed]] = cand[crossed]
        h = torch.where(take.unsqueeze(1), hc.double(), h)
        g = torch.where(take.view(1, -1, 1), gc, g)
        radius = torch.where(take, radius * 2, radius * _SHRINK)
        alive = radius > _TOL * dist
        if owner is not None:
            # a walk that has nearly converged (trust radius under 1e-4 of its distance) at more than
            # 0.1% behind its sample's best walk stops: it would take many steps to catch up
            dist_all[idx] = dist
            best_s = torch.full((n_s,), INF, dtype=dist.dtype, device=dist.device)
            best_s = best_s.scatter_reduce(0, owner, dist_all, "amin")
            alive &= ~((radius < 1e-4 * dist) & (dist > (1 + _BEHIND) * best_s[owner[idx]]))
        if not bool(alive.all()):
            xa[idx[~alive]] = cur[~alive]
            idx, cur, z0, dist, radius, h, ysl = (v[alive] for v in (idx, cur, z0, dist, radius, h, ysl))
            g = g[:, alive]
            cl = None if cl is None else cl[alive]
    xa[idx] = cur
    return xa, kinked, last_fail


def _np_norm(v, p: float) -> float:
    return float(np.abs(v).max() if p == INF else (np.abs(v).sum() if p == 1 else np.sqrt(v @ v)))


def _qp_l2(G: np.ndarray, e: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """min 1/2 ||d||^2 s.t. G d <= e, lo <= d <= hi (a few rows in G), by projected Newton on the dual.

    The dual variables mu >= 0 give d(mu) = clip(-G^T mu, lo, hi); the dual is concave and piecewise
    quadratic, so Newton's method with a projected active set and backtracking ends on the exact
    piece in a few steps. Returns d, or None where the box cannot meet the constraints.
    """
    m = G.shape[0]
    mu = np.zeros(m)
    scale = max(1.0, float(np.abs(e).max()))

    def at(mu):
        d = np.clip(-G.T @ mu, lo, hi)
        return d, 0.5 * d @ d + mu @ (G @ d - e)

    d, q = at(mu)
    for _ in range(60):
        grad = G @ d - e
        fixed = (mu <= 0) & (grad < 0)
        if np.all(np.abs(grad[~fixed]) <= 1e-12 * scale):
            break
        free = (-G.T @ mu > lo) & (-G.T @ mu < hi)
        r = ~fixed
        Gr = G[r][:, free]
        H = Gr @ Gr.T + 1e-14 * np.eye(int(r.sum()))
        try:
            step = np.linalg.solve(H, grad[r])
        except np.linalg.LinAlgError:
            break
        full = np.zeros(m)
        full[r] = step
        alpha, moved = 1.0, False
        for _ in range(40):
            cand = np.maximum(mu + alpha * full, 0.0)
            dc, qc = at(cand)
            if qc >= q - 1e-15 * max(1.0, abs(q)):
                mu, d, q, moved = cand, dc, qc, True
                break
            alpha *= 0.5
        if not moved or mu.max() > 1e12:
            break
    if (G @ d - e).max() > 1e-9 * scale:
        return None
    return d


def _lp_step(G, e, lo, hi, p: float):
    """min ||d||_p (p = 1 or inf) s.t. G d <= e, lo <= d <= hi, by HiGHS; None where infeasible.

    One row per call: the reference that ``tests/test_boundary.py`` checks :func:`_lp_batch`
    against (the polish uses the batched form, whose setup cost is shared by 32 rows)."""
    import scipy.sparse as sp  # scipy only here: importing it costs ~0.5 s that most attacks never need
    from scipy.optimize import linprog

    m, dim = G.shape
    eye = sp.identity(dim, format="csr")
    if p == INF:  # variables (d, t): |d_i| <= t
        ones = sp.csr_matrix(np.ones((dim, 1)))
        A = sp.vstack([sp.hstack([sp.csr_matrix(G), sp.csr_matrix((m, 1))]), sp.hstack([eye, -ones]),
                       sp.hstack([-eye, -ones])], format="csr")
        obj = np.r_[np.zeros(dim), 1.0]
        bounds = np.c_[np.r_[lo, 0.0], np.r_[hi, np.inf]]
    else:  # variables (d, u): |d_i| <= u_i
        A = sp.vstack([sp.hstack([sp.csr_matrix(G), sp.csr_matrix((m, dim))]), sp.hstack([eye, -eye]),
                       sp.hstack([-eye, -eye])], format="csr")
        obj = np.r_[np.zeros(dim), np.ones(dim)]
        bounds = np.c_[np.r_[lo, np.zeros(dim)], np.r_[hi, np.full(dim, np.inf)]]
    b = np.r_[e, np.zeros(2 * dim)]
    res = linprog(obj, A_ub=A, b_ub=b, bounds=bounds, method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        return None
    return np.clip(res.x[:dim], lo, hi)


def _lp_batch(G: np.ndarray, e: np.ndarray, lo: np.ndarray, hi: np.ndarray, p: float):
    """Many independent problems ``min ||d_r||_p s.t. G_r d_r <= e_r, lo_r <= d_r <= hi_r`` (p = 1 or
    inf) as one block-diagonal LP for HiGHS (one call instead of one per row: the per-call setup
    costs far more than these small problems). ``G`` (R, m, D), ``e`` (R, m), ``lo, hi`` (R, D);
    each cut should be scaled to a unit dual norm. Each row gets an elastic slack ``s_r >= 0`` on
    all its cuts, priced far above any distance, so that one infeasible row cannot make the whole
    LP infeasible. Returns ``(d (R, D), feasible (R,))``: rows that need a slack are infeasible.
    """
    import scipy.sparse as sp  # scipy only here: importing it costs ~0.5 s that most attacks never need
    from scipy.optimize import linprog

    r_n, m, dim = G.shape
    price = 1e4
    ar = np.arange(r_n)
    if p == INF:  # per row: variables (d (D), t, s); rows: m cuts, then d - t <= 0 and -d - t <= 0
        nv, nr = dim + 2, m + 2 * dim
        vo, ro = ar * nv, ar * nr
        # cuts: G d - s <= e
        cr = (ro[:, None] + np.arange(m)[None, :])  # (R, m)
        rows_c = np.repeat(cr[..., None], dim + 1, -1)
        cols_c = np.concatenate([np.broadcast_to(vo[:, None, None] + np.arange(dim), (r_n, m, dim)),
                                 np.broadcast_to((vo + dim + 1)[:, None, None], (r_n, m, 1))], -1)
        vals_c = np.concatenate([G, -np.ones((r_n, m, 1))], -1)
        # |d_i| <= t
        ai = ro[:, None] + m + np.arange(dim)[None, :]  # (R, D)
        di = vo[:, None] + np.arange(dim)[None, :]
        ti = np.broadcast_to((vo + dim)[:, None], (r_n, dim))
        rows_a = np.concatenate([ai, ai, ai + dim, ai + dim], -1)
        cols_a = np.concatenate([di, ti, di, ti], -1)
        ones = np.ones((r_n, dim))
        vals_a = np.concatenate([ones, -ones, -ones, -ones], -1)
        rows_all = np.concatenate([rows_c.ravel(), rows_a.ravel()])
        cols_all = np.concatenate([cols_c.ravel(), cols_a.ravel()])
        vals_all = np.concatenate([vals_c.ravel(), vals_a.ravel()])
        b = np.concatenate([e, np.zeros((r_n, 2 * dim))], -1).ravel()
        obj = np.zeros((r_n, nv))
        obj[:, dim], obj[:, dim + 1] = 1.0, price
        lb = np.concatenate([lo, np.zeros((r_n, 2))], -1).ravel()
        ub = np.concatenate([hi, np.full((r_n, 2), np.inf)], -1).ravel()
    else:  # L1, d = d+ - d-: variables (d+ (D), d- (D), s); rows: G d+ - G d- - s <= e
        nv, nr = 2 * dim + 1, m
        vo, ro = ar * nv, ar * nr
        cr = ro[:, None] + np.arange(m)[None, :]
        rows_all = np.repeat(cr[..., None], nv, -1).ravel()
        cols_all = np.broadcast_to(vo[:, None, None] + np.arange(nv), (r_n, m, nv)).ravel()
        vals_all = np.concatenate([G, -G, -np.ones((r_n, m, 1))], -1).ravel()
        b = e.ravel()
        obj = np.ones((r_n, nv))
        obj[:, -1] = price
        lb = np.concatenate([np.maximum(lo, 0), np.maximum(-hi, 0), np.zeros((r_n, 1))], -1).ravel()
        ub = np.concatenate([np.maximum(hi, 0), np.maximum(-lo, 0), np.full((r_n, 1), np.inf)], -1).ravel()
    A = sp.csr_matrix((vals_all, (rows_all, cols_all)), shape=(r_n * nr, r_n * nv))
    res = linprog(obj.ravel(), A_ub=A, b_ub=b, bounds=np.c_[lb, ub], method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        return np.zeros_like(lo), np.zeros(r_n, dtype=bool)
    x = res.x.reshape(r_n, nv)
    d = x[:, :dim] if p == INF else x[:, :dim] - x[:, dim:2 * dim]
    slack = x[:, -1]
    return np.clip(d, lo, hi), slack <= 1e-9


def _polish(model, x0: Tensor, xa: Tensor, ys: Tensor, shape, p: float, targeted: bool, iters: int,
            overshoot: float, planes: int = 4, seed: Tensor | None = None) -> Tensor:
    """Cutting-plane trust-region steps from the boundary points ``xa`` (R, D) towards ``x0``.

    A single linearisation cannot cross a convex kink of the boundary (where the adversarial set
    is locally the intersection of two linear pieces' half-spaces): its step lands outside the
    other piece and fails at any trust radius. Here every failed candidate adds its own
    linearisation ``h_c + g_c . (z - c) <= -tau`` to a bundle of the last ``planes`` cuts, and
    each step solves ``min ||z - x0||_p`` over all the bundle's half-spaces within the trust box
    (HiGHS LP for L1 and Linf, a projected dual Newton method for L2), one small problem per row.
    On a piecewise-linear network the bundle then holds the pieces that meet at the optimum, and
    the step lands on it.
    """
    # One function: the bundle of cuts, the trust radii and the points are one state that every
    # iteration updates; the LP/QP solves are _lp_step, _lp_batch and _qp_l2 above.
    n = xa.shape[0]
    q = dual(p)
    xa = xa.clone()
    z0 = x0.double().cpu().numpy()
    a = xa.double().cpu().numpy()
    dist = row_norm(xa.double() - x0.double(), p).cpu().numpy()
    radius = np.abs(a - z0).max(1) * 0.25
    with torch.no_grad():
        _, h, g = pair_grads(model, xa.view(-1, *shape), ys, targeted)
    bundle = [[(g[i].double().cpu().numpy(), float(h[i]), a[i].copy())] for i in range(n)]
    if seed is not None:  # the cut of the walk's last rejected step (across the kink)
        with torch.no_grad():
            _, hs, gs = pair_grads(model, seed.view(-1, *shape), ys, targeted)
        sn, gsn, hsn = seed.double().cpu().numpy(), gs.double().cpu().numpy(), hs.double().cpu().numpy()
        for i in range(n):
            bundle[i].append((gsn[i], float(hsn[i]), sn[i]))
    active = np.isfinite(dist) & (dist > 0)
    for _ in range(iters):
        rows = np.nonzero(active)[0]
        if rows.size == 0:
            break
        cands, keep = [], []
        probs = []
        for i in rows:
            tau = overshoot * dist[i]
            G = np.stack([gk for gk, _, _ in bundle[i]])
            # g . (z - c) <= -h - tau * ||g||_q, written for d = z - x0
            e = np.array([gk @ (ck - z0[i]) - hk - tau * _np_norm(gk, q) for gk, hk, ck in bundle[i]])
            lo = np.maximum(a[i] - radius[i], 0.0) - z0[i]
            hi = np.minimum(a[i] + radius[i], 1.0) - z0[i]
            probs.append((G, e, lo, hi))
        if p == 2:
            sols = [_qp_l2(*pr) for pr in probs]
        else:
            # one LP for all rows: cuts scaled to unit dual norm, padded to the same count by repeating
            m = max(pr[0].shape[0] for pr in probs)
            Gs = np.zeros((len(probs), m, z0.shape[1]))
            es = np.zeros((len(probs), m))
            for j, (G, e, _, _) in enumerate(probs):
                nrm = np.maximum(np.abs(G).max(1) if p == 1 else np.abs(G).sum(1), 1e-300)
                G, e = G / nrm[:, None], e / nrm
                k = G.shape[0]
                Gs[j, :k], es[j, :k] = G, e
                Gs[j, k:], es[j, k:] = G[0], e[0]
            los, his = np.stack([pr[2] for pr in probs]), np.stack([pr[3] for pr in probs])
            sols = []
            for j in range(0, len(probs), _LP_BLOCK):  # HiGHS's time grows faster than its size
                d_all, feas = _lp_batch(Gs[j:j + _LP_BLOCK], es[j:j + _LP_BLOCK], los[j:j + _LP_BLOCK],
                                        his[j:j + _LP_BLOCK], p)
                sols += [d if f else None for d, f in zip(d_all, feas)]
        for i, d in zip(rows, sols):
            if d is None:
                radius[i] *= 0.5
                active[i] = radius[i] > 1e-7 * dist[i]
                continue
            zc = np.clip(z0[i] + d, 0.0, 1.0)
            if _np_norm(zc - z0[i], p) >= dist[i] * (1 - 1e-9):
                # the cuts allow nothing nearer within the trust box, nor within any smaller one
                active[i] = False
                continue
            cands.append(zc)
            keep.append(i)
        if not keep:
            continue
        keep = np.asarray(keep)
        cand = torch.from_numpy(np.stack(cands)).to(dtype=xa.dtype, device=xa.device)
        with torch.no_grad():
            logits, hc, gc = pair_grads(model, cand.view(-1, *shape), ys[keep], targeted)
        ok = is_adversarial(logits, ys[keep], targeted).cpu().numpy()
        dc = row_norm(cand.double() - x0[keep].double(), p).cpu().numpy()
        gcn, hcn, cn = gc.double().cpu().numpy(), hc.double().cpu().numpy(), cand.double().cpu().numpy()
        for j, i in enumerate(keep):
            bundle[i] = (bundle[i] + [(gcn[j], float(hcn[j]), cn[j])])[-planes:]
            if ok[j] and dc[j] < dist[i]:
                a[i], dist[i] = cn[j], dc[j]
                xa[i] = cand[j]
                radius[i] *= 2
            else:
                radius[i] *= 0.5
            active[i] = radius[i] > 1e-7 * dist[i]
    return xa
