"""Shared reference for the attack tests: the exact minimal radius of a linear classifier."""
from __future__ import annotations

import math

import torch
from torch import nn

from attacks._common import dual, lp_norm

INF = math.inf


def exact_radius(model: nn.Linear, x, y, p: float):
    """Exact untargeted minimal radius (B,) of a linear classifier, ``min_j (z_y - z_j) / ||w_y - w_j||_q``,
    after checking that a minimiser lies inside the box and really flips the label."""
    with torch.no_grad():
        w = model.weight.double()
        z = model(x).double()
        a = w[y][:, None, :] - w[None]  # (B, K, D): w_y - w_j
        q = dual(p)
        a_dual = a.abs().amax(2) if q == INF else (a.abs().sum(2) if q == 1 else a.norm(dim=2))
        r = (z.gather(1, y[:, None]) - z) / a_dual.clamp_min(1e-30)
        r[torch.arange(len(y)), y] = INF
        radius, j = r.min(1)
        a_j = a[torch.arange(len(y)), j]
        if p == 2:
            delta = -radius[:, None] * a_j / a_j.norm(dim=1, keepdim=True)
        elif p == INF:
            delta = -radius[:, None] * a_j.sign()
        else:
            top = a_j.abs().argmax(1)
            delta = torch.zeros_like(a_j)
            delta[torch.arange(len(y)), top] = -radius * a_j[torch.arange(len(y)), top].sign()
        x_star = x.double() + delta
        assert float(x_star.min()) >= 0 and float(x_star.max()) <= 1, "test problem leaves the box"
        assert torch.allclose(lp_norm(delta, p), radius)
        # the minimiser really is adversarial (up to rounding at the boundary)
        assert (model(x_star.float() + 1e-4 * delta.sign().float()).argmax(1) != y).all()
    return radius.float()
