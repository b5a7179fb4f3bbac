"""The feasible set of a budget attack, {||x - x0||_p <= eps} ∩ [0, 1]^d: per-sample budgets,
exact projections, random starts, and the sparse L1 ascent direction (shared by PGD and APGD).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._common import flat, random_in_ball, sort_rows
from .norms import INF


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


def project_l1_box(v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
    """Exact Euclidean projection of each row of ``v`` onto {||d||_1 <= eps} ∩ [lo, hi].

    ``v, lo, hi``: (B, D) with lo <= 0 <= hi; ``eps``: (B,). The solution is
    d_i = sign(v_i) clip(|v_i| - theta, 0, cap_i) with cap_i the box room in the direction of
    v_i and theta >= 0 the root of the piecewise-linear, non-increasing sum; the breakpoints are
    sorted and the root read off exactly (O(D log D)).
    """
    a = v.abs()
    cap = torch.where(v >= 0, hi, -lo).clamp_min_(0)
    capped = torch.minimum(a, cap)
    f0 = capped.sum(1, keepdim=True)  # (B, 1) L1 norm at theta = 0
    d = a.shape[1]
    e1 = eps.unsqueeze(1)
    # theta at which coordinate i leaves its cap (starts decreasing) and reaches 0
    ev, order = sort_rows(torch.cat([a - capped, a], dim=1))  # (B, 2D)
    slope = torch.where(order < d, -1.0, 1.0).to(v.dtype).cumsum_(1)  # slope of the sum on (ev_k, ev_k+1)
    incr = slope[:, :-1] * ev.diff(dim=1)
    fk = torch.cat([f0, incr], dim=1).cumsum_(1)  # the sum at each event
    k = ((fk >= e1).sum(1, keepdim=True) - 1).clamp_(0, 2 * d - 1)  # last event with sum >= eps
    theta = ev.gather(1, k) + (fk.gather(1, k) - e1) / slope.gather(1, k).neg_().clamp_min_(1e-12)
    theta.mul_(f0 > e1)  # inside the ball: theta = 0
    out = torch.minimum(a - theta, cap).clamp_min_(0).mul_(v.sign())
    # guard against rounding: never exceed the budget
    shrink = (e1 / out.abs().sum(1, keepdim=True).clamp_min_(1e-30)).clamp_max_(1.0)
    return out.mul_(shrink)


class Budget:
    """The feasible set {||x - x0||_p <= eps} ∩ [0, 1] of a batch of flat (n, D) points, with what
    its projection needs precomputed (the Linf box bounds, the L1 box room)."""

    def __init__(self, x0: Tensor, eps: Tensor, p: float):
        self.x0, self.eps, self.p = x0, eps, p
        if p == INF:
            e = eps.unsqueeze(1)
            self.lo, self.hi = (x0 - e).clamp_min_(0), (x0 + e).clamp_max_(1)
        elif p == 1:
            self.lo, self.hi = x0.neg(), 1 - x0

    def subset(self, keep: Tensor) -> "Budget":
        return Budget(self.x0[keep], self.eps[keep], self.p)

    def project_(self, x: Tensor) -> Tensor:
        """Project ``x`` (n, D) in place where the norm allows; returns the projection."""
        if self.p == INF:  # the ball and the box are both boxes: one clamp
            return x.clamp_(min=self.lo, max=self.hi)
        delta = x.sub_(self.x0)
        if self.p == 2:
            n = torch.linalg.vector_norm(delta, dim=1)
            delta.mul_((self.eps / n.clamp_min_(1e-30)).clamp_max_(1.0).unsqueeze(1))
        else:
            delta = project_l1_box(delta, self.lo, self.hi, self.eps)
        return delta.add_(self.x0).clamp_(0, 1)


def sparse_l1_direction(grad: Tensor, x: Tensor, k: Tensor | int) -> Tensor:
    """Box-aware sparse ascent direction for L1: sign of the ``k`` largest |grad| entries.

    ``k``: an int or a (B,) tensor (per sample). Coordinates that sit on the box face the
    gradient pushes against are skipped; the direction has unit L1 norm (zero where no
    coordinate can move).
    """
    g = flat(grad)
    xf = flat(x)
    room = torch.where(g > 0, 1 - xf, xf)  # how far the coordinate can go along the gradient
    score = g.abs().mul_(room > 0)
    d = g.shape[1]
    if isinstance(k, Tensor):
        kk = k.clamp(1, d).to(torch.int64)
        top = sort_rows(score, descending=True, indices=False)[0]
        thr = top.gather(1, kk.unsqueeze(1) - 1)  # (B, 1) k-th largest score
    else:
        kk = max(1, min(int(k), d))
        thr = sort_rows(score, descending=True, indices=False)[0][:, kk - 1:kk]
    mask = (score >= thr).logical_and_(score > 0)
    u = g.sign().mul_(mask)
    u.div_(mask.sum(1, keepdim=True).clamp_min_(1))
    return u.view_as(grad)


def start_in_ball(x0: Tensor, eps: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """A random point of {||x - x0||_p <= eps} ∩ [0, 1]."""
    return (x0 + random_in_ball(x0, eps, p, gen)).clamp(0, 1)
