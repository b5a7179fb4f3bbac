"""Adversarial starting points from far away, for attacks that start from a given point.

:func:`far_starts` gathers, per input, candidate points that the model already puts in another
class (the target class when targeted):

* the nearest points of a ``pool`` (the training set, say) in the attack's norm;
* the nearest adversarial points already found for other samples (``pool_adv``);
* random points of the box [0, 1]^d;

brings each onto the decision boundary by bisection along the segment to the input
(:func:`attacks.fab.line_search`), and keeps the ``keep`` nearest to the input. Cost: one
forward pass over the pool and ``pool_adv`` (their predictions), one per random point, and
``search_steps`` per candidate for the bisection.

:func:`coordinate_starts` (for L1) moves one coordinate at a time: minimal L1 perturbations of a
piecewise-linear network are sparse (a vertex of the polytope where the boundary's linear piece
meets the box), and the nearest adversarial point along a single axis often lies in the basin of
the optimum when the gradient attacks' walk moved other coordinates.

:func:`ray_starts` restarts near the best point found so far.

:func:`ball_starts` restarts a cheap attack (PGD) from random points inside each input's current
best ball, at a budget just below its best radius: any adversarial point it finds lies nearer than
the best point, usually in another basin of a folded boundary, which a walk from the best point
or from far away does not reach.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._common import flat, make_generator
from ._geometry import line_search, pair_grads
from .norms import INF, row_norm
from .pgd import pgd


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch: int = 4096) -> Tensor:
    return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])


def _nearest(x0f: Tensor, labels: Tensor, cand: Tensor, cand_pred: Tensor, p: float, k: int, targeted: bool):
    """Indices (B, k) of the k candidates nearest each input that the model puts in another class
    (or in the target class), and a mask of the valid ones."""
    cf = flat(cand)
    d = torch.cdist(x0f.double(), cf.double(), p=p)  # (B, N)
    wrong = (cand_pred.unsqueeze(0) == labels.unsqueeze(1)) if targeted else (cand_pred.unsqueeze(0) != labels.unsqueeze(1))
    d = torch.where(wrong & (d > 0), d, torch.full_like(d, INF))
    k = min(k, cf.shape[0])
    val, idx = d.topk(k, dim=1, largest=False)
    return idx, torch.isfinite(val)


@torch.no_grad()
def far_starts(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm: float, pool: Tensor | None = None,
               pool_adv: Tensor | None = None, nearest: int = 4, random: int = 8, keep: int = 8,
               targeted: bool = False, seed: int = 0, search_steps: int = 16) -> tuple[Tensor, Tensor]:
    """Adversarial starting points far from each input, on the decision boundary.

    Parameters
    ----------
    model, inputs, labels, norm, targeted : as for the attacks
    pool : Tensor, optional
        (N, ...) candidate points (e.g. the training set); the ``nearest`` ones per input that the
        model classifies differently (targeted: as the target) are candidates.
    pool_adv : Tensor, optional
        (M, ...) adversarial points found for other samples; the ``nearest`` ones per input that
        are adversarial for it are candidates.
    random : int
        Random points of the box per input (candidates where adversarial).
    keep : int
        Starting points returned per input: the candidates nearest the input after bisection.
    seed : int
        Seed of the local generator for the random points.
    search_steps : int
        Bisection steps towards the input.

    Returns
    -------
    (starts, found)
        ``starts`` (B, keep, ...) adversarial points on the boundary (the input itself where
        fewer were found) and ``found`` (B, keep) bool.
    """
    b, shape = inputs.shape[0], tuple(inputs.shape[1:])
    x0f = flat(inputs.detach())
    d = x0f.shape[1]
    cands, masks = [], []
    for src in (pool, pool_adv):
        if src is None or src.shape[0] == 0:
            continue
        if tuple(src.shape[1:]) != shape:
            raise ValueError(f"far_starts: pool points must have the inputs' shape {shape}, got {tuple(src.shape[1:])}")
        src = src.detach().to(device=inputs.device, dtype=inputs.dtype)
        idx, ok = _nearest(x0f, labels, src, _predict(model, src), float(norm), nearest, targeted)
        cands.append(flat(src)[idx])  # (B, k, D)
        masks.append(ok)
    if random > 0:
        gen = make_generator(seed, inputs.device)
        r = torch.rand((b, random, d), generator=gen, device=inputs.device, dtype=inputs.dtype)
        pred = _predict(model, r.view(-1, *shape)).view(b, random)
        ok = (pred == labels.unsqueeze(1)) if targeted else (pred != labels.unsqueeze(1))
        cands.append(r)
        masks.append(ok)
    if not cands:
        return inputs.detach().unsqueeze(1).expand(b, keep, *shape).clone(), torch.zeros(b, keep, dtype=torch.bool,
                                                                                       device=inputs.device)
    return _nearest_on_boundary(model, inputs, labels, torch.cat(cands, 1), torch.cat(masks, 1), norm=norm,
                                keep=keep, targeted=targeted, search_steps=search_steps)


def _nearest_on_boundary(model: nn.Module, inputs: Tensor, labels: Tensor, cand: Tensor, mask: Tensor, *,
                         norm: float, keep: int, targeted: bool, search_steps: int) -> tuple[Tensor, Tensor]:
    """Candidates ``cand`` (B, C, D) where ``mask`` (B, C) (the adversarial ones) bisected onto the
    boundary along their segment to the input, and the ``keep`` nearest per input: ``(starts (B, keep,
    ...), found (B, keep))``, the input itself where fewer were found."""
    b, shape = inputs.shape[0], tuple(inputs.shape[1:])
    x0f = flat(inputs.detach())
    d = x0f.shape[1]
    n_c = cand.shape[1]
    rows = mask.reshape(-1).nonzero().squeeze(1)
    owner = rows // n_c
    dist = torch.full((b * n_c,), INF, dtype=torch.float64, device=inputs.device)
    on = cand.reshape(-1, d).clone()
    if rows.numel():
        pts = line_search(model, inputs[owner], cand.reshape(-1, d)[rows].view(-1, *shape), labels[owner], targeted,
                          search_steps)
        on[rows] = flat(pts)
        dist[rows] = row_norm(flat(pts).double() - x0f[owner].double(), float(norm))
    dist = dist.view(b, n_c)
    k = min(keep, n_c)
    val, idx = dist.topk(k, dim=1, largest=False)
    starts = on.view(b, n_c, d).gather(1, idx.unsqueeze(-1).expand(b, k, d))
    found = torch.isfinite(val)
    starts = torch.where(found.unsqueeze(-1), starts, x0f.unsqueeze(1))
    if k < keep:  # pad with "no start" (the input itself)
        pad = x0f.unsqueeze(1).expand(b, keep - k, d)
        starts = torch.cat([starts, pad], 1)
        found = torch.cat([found, torch.zeros(b, keep - k, dtype=torch.bool, device=inputs.device)], 1)
    return starts.reshape(b, keep, *shape), found


def _unit(v: Tensor, p: float) -> Tensor:
    return v / row_norm(v, p).clamp_min(1e-30).unsqueeze(1)


@torch.no_grad()
def ray_starts(model: nn.Module, inputs: Tensor, labels: Tensor, best: Tensor, *, norm: float, rays: int = 8,
               targeted: bool = False, seed: int = 0, search_steps: int = 16,
               spread: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)) -> tuple[Tensor, Tensor]:
    """Adversarial points on the boundary along random rays near the best direction found so far.

    Local minima of the distance to a folded boundary lie at about the current radius, far closer
    than any other training point: these starts restart a walk there. Ray ``k`` of a sample
    points along ``u + s_k v_k``, with ``u`` the unit direction (in the norm) of ``best - x0``,
    ``v_k`` a random unit direction (Linf: a random sign vector; L1: a sparse one) and ``s_k``
    cycling through ``spread``; rows of ``best`` equal to the input (none found yet) use ``v_k``
    alone. Along each ray the first adversarial point of a geometric grid from 0.7 to 4 times the
    best radius (or up to the box) is bisected onto the boundary. Cost: 8 forward passes per ray
    for the grid and ``search_steps`` for the bisection.

    Returns ``(starts (B, rays, ...), found (B, rays))`` as :func:`far_starts`.
    """
    b, shape = inputs.shape[0], tuple(inputs.shape[1:])
    p = float(norm)
    x0f = flat(inputs.detach())
    d = x0f.shape[1]
    gen = make_generator(seed + 104729, inputs.device)
    diff = flat(best.detach()) - x0f
    r0 = row_norm(diff, p)
    have = r0 > 0
    u = _unit(diff, p)
    noise = torch.randn((b, rays, d), generator=gen, device=inputs.device, dtype=inputs.dtype)
    if p == INF:
        noise = noise.sign()
    elif p == 1:
        noise = noise * (torch.rand((b, rays, d), generator=gen, device=inputs.device) < 0.15)
    noise = noise / row_norm(noise, p).clamp_min(1e-30).unsqueeze(-1)
    s = torch.tensor([spread[k % len(spread)] for k in range(rays)], device=inputs.device, dtype=inputs.dtype)
    dirs = torch.where(have.view(b, 1, 1), u.unsqueeze(1) + s.view(1, rays, 1) * noise, noise)
    dirs = dirs / row_norm(dirs, p).clamp_min(1e-30).unsqueeze(-1)
    # radius scale: the best radius, or the box where nothing is known
    scale = torch.where(have, r0, torch.full_like(r0, float(d) ** (1.0 / p) if p != INF else 1.0))
    grid = torch.logspace(math.log10(0.7), math.log10(4.0), 8, device=inputs.device, dtype=inputs.dtype)
    rows_x0 = x0f.unsqueeze(1).expand(b, rays, d).reshape(-1, d)
    rows_y = labels.repeat_interleave(rays)
    dirs = dirs.reshape(-1, d)
    sc = scale.repeat_interleave(rays)
    hit = torch.zeros(b * rays, dtype=torch.bool, device=inputs.device)
    first = rows_x0.clone()
    for t in grid:
        cand = (rows_x0 + (t * sc).unsqueeze(1) * dirs).clamp_(0, 1)
        pred = model(cand.view(-1, *shape)).argmax(1)
        adv = (pred == rows_y) if targeted else (pred != rows_y)
        new = adv & ~hit
        first[new] = cand[new]
        hit |= adv
    starts = rows_x0.clone()
    if hit.any():
        i = hit.nonzero().squeeze(1)
        starts[i] = flat(line_search(model, rows_x0[i].view(-1, *shape), first[i].view(-1, *shape), rows_y[i],
                                     targeted, search_steps))
    return starts.view(b, rays, *shape), hit.view(b, rays)


@torch.no_grad()
def _capacity(model: nn.Module, inputs: Tensor, labels: Tensor, targeted: bool) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        _, _, g = pair_grads(model, inputs.detach(), labels, targeted)
    x0f = flat(inputs.detach())
    sign = -g.sign()  # the direction along each axis that lowers the margin, to first order
    room = torch.where(sign > 0, 1 - x0f, x0f)  # how far that direction can go in the box
    return sign, g.abs() * room


@torch.no_grad()
def coordinate_starts(model: nn.Module, inputs: Tensor, labels: Tensor, *, keep: int = 4, coords: int = 64,
                      grid: int = 16, targeted: bool = False, search_steps: int = 16) -> tuple[Tensor, Tensor]:
    """Adversarial points on the boundary that differ from the input in one coordinate (L1 starts).

    For each input, the ``coords`` coordinates that can lower the margin most on their own (to
    first order: ``|g_i|`` times the room the box leaves in the direction ``-sign(g_i)``, with
    ``g`` the gradient of the label's logit minus the strongest other's at the input) are moved
    alone, in that direction, over a uniform grid of ``grid`` steps up to the box edge; the
    first adversarial point of each axis is bisected onto the boundary and the ``keep`` nearest
    are returned. Cost: one forward and one backward pass per input, ``coords * grid`` forward
    passes per input for the grids and ``search_steps`` per axis that reached the boundary.

    Returns ``(starts (B, keep, ...), found (B, keep))`` as :func:`far_starts`.
    """
    b, shape = inputs.shape[0], tuple(inputs.shape[1:])
    x0f = flat(inputs.detach())
    d = x0f.shape[1]
    k = min(coords, d)
    sign, cap = _capacity(model, inputs, labels, targeted)
    axes = cap.topk(k, dim=1).indices  # (B, k)
    step = (sign * torch.where(sign > 0, 1 - x0f, x0f)).gather(1, axes)  # signed distance to the box edge
    hit = torch.zeros(b, k, dtype=torch.bool, device=inputs.device)
    frac = torch.ones(b, k, device=inputs.device, dtype=inputs.dtype)
    for t in range(grid, 0, -1):  # from the box edge inwards: the last adversarial one is the first
        cand = x0f.unsqueeze(1).repeat(1, k, 1)
        cand.scatter_add_(2, axes.unsqueeze(-1), (step * (t / grid)).unsqueeze(-1))
        pred = _predict(model, cand.clamp_(0, 1).view(-1, *shape)).view(b, k)
        adv = (pred == labels.unsqueeze(1)) if targeted else (pred != labels.unsqueeze(1))
        frac = torch.where(adv, torch.full_like(frac, t / grid), frac)
        hit |= adv
    starts = x0f.unsqueeze(1).repeat(1, k, 1)
    dist = torch.full((b, k), INF, dtype=torch.float64, device=inputs.device)
    if hit.any():
        bi, ki = hit.nonzero(as_tuple=True)
        first = x0f[bi].clone()
        first[torch.arange(bi.numel(), device=inputs.device), axes[bi, ki]] += step[bi, ki] * frac[bi, ki]
        pts = flat(line_search(model, inputs[bi], first.clamp_(0, 1).view(-1, *shape), labels[bi], targeted,
                               search_steps))
        starts[bi, ki] = pts
        dist[bi, ki] = row_norm(pts.double() - x0f[bi].double(), 1.0)
    n = min(keep, k)
    val, idx = dist.topk(n, dim=1, largest=False)
    out = starts.gather(1, idx.unsqueeze(-1).expand(b, n, d))
    found = torch.isfinite(val)
    out = torch.where(found.unsqueeze(-1), out, x0f.unsqueeze(1))
    if n < keep:
        out = torch.cat([out, x0f.unsqueeze(1).expand(b, keep - n, d)], 1)
        found = torch.cat([found, torch.zeros(b, keep - n, dtype=torch.bool, device=inputs.device)], 1)
    return out.reshape(b, keep, *shape), found


_BALL_ROWS = 8192  # replicated inputs per PGD call of ball_starts


def ball_starts(model: nn.Module, inputs: Tensor, labels: Tensor, radius: Tensor, *, norm: float, restarts: int = 64,
                steps: int = 20, shrink: float = 0.01, keep: int = 4, targeted: bool = False, seed: int = 0,
                search_steps: int = 16) -> tuple[Tensor, Tensor]:
    """Adversarial starting points inside each input's current best ball, by PGD from random starts.

    Every input is replicated ``restarts`` times and attacked by :func:`attacks.pgd.pgd` (a random
    start in the ball, cross-entropy, ``steps`` steps, stopping at the first adversarial iterate) at
    the budget ``(1 - shrink) * radius``: a success is nearer than the best point so far. Successes
    are bisected onto the boundary along their segment to the input and the ``keep`` nearest
    kept. Cost: at most ``restarts * steps`` backward passes per input and about 15% more forward
    passes (a restart stops when it succeeds), and ``search_steps`` forward passes per success.

    Parameters
    ----------
    model, inputs, labels, norm, targeted, seed, search_steps : as for :func:`far_starts`
    radius : Tensor
        (B,) each input's best radius so far (inputs with a non-finite or zero radius get none).
    restarts : int
        PGD runs per input, each from its own random point of the ball (0: none).
    steps : int
        Steps per run.
    shrink : float
        The budget is this fraction below the best radius.
    keep : int
        Starts returned per input.

    Returns
    -------
    (starts, found)
        ``starts`` (B, keep, ...) adversarial points on the boundary, nearest first (the input
        itself where fewer were found), and ``found`` (B, keep) bool.
    """
    b, shape = inputs.shape[0], tuple(inputs.shape[1:])
    x0 = inputs.detach()
    x0f = flat(x0)
    d = x0f.shape[1]
    starts = x0f.unsqueeze(1).expand(b, keep, d).clone()
    found = torch.zeros(b, keep, dtype=torch.bool, device=x0.device)
    rad = torch.as_tensor(radius, device=x0.device, dtype=x0.dtype).reshape(-1)
    ok_in = torch.isfinite(rad) & (rad > 0)
    idx = ok_in.nonzero().squeeze(1)
    if idx.numel() == 0 or restarts <= 0 or keep <= 0:
        return starts.view(b, keep, *shape), found
    owner = idx.repeat_interleave(restarts)
    xr, yr = x0[owner], labels[owner]
    # in chunks of at most _BALL_ROWS replicated inputs (memory), each chunk with its own seed
    adv = torch.cat([pgd(model, xr[c:c + _BALL_ROWS], yr[c:c + _BALL_ROWS], norm=norm,
                         eps=(1 - shrink) * rad[owner[c:c + _BALL_ROWS]], steps=steps, targeted=targeted,
                         random_start=True, seed=seed + k)
                     for k, c in enumerate(range(0, owner.numel(), _BALL_ROWS))])
    with torch.no_grad():
        pred = model(adv).argmax(1)
    hit = (pred == yr) if targeted else (pred != yr)
    n = idx.numel()
    got_s, got = _nearest_on_boundary(model, x0[idx], labels[idx], flat(adv).view(n, restarts, d), hit.view(n, restarts),
                                      norm=norm, keep=keep, targeted=targeted, search_steps=search_steps)
    starts[idx], found[idx] = got_s.reshape(n, keep, d), got
    return starts.view(b, keep, *shape), found
