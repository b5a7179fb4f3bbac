"""Exact references for the attack, bound and API tests (test-only oracles).

:func:`exact_radius`: the minimal radius of a linear classifier whose minimiser stays inside the
box (closed form, checked). :func:`linear_radii`: exact minimal radii of an affine classifier
inside the [0, 1] box, box constraints active or not (also checked against scipy in
tests/test_optimality.py), as follows. For logits ``z = W x + b`` and a point ``x`` of class ``y``, the smallest perturbation that
makes class ``j`` score at least as high as ``y`` solves

    minimise ||delta||_p  subject to  a . delta <= -c,  0 <= x + delta <= 1,

with ``a = w_y - w_j`` and ``c = z_y - z_j``. The minimal radius is the minimum over ``j != y``.
Every optimal ``delta`` moves coordinate ``i`` against the sign of ``a_i``, so with
``t_i = |delta_i|`` and ``room_i`` (``x_i`` where ``a_i > 0``, ``1 - x_i`` where ``a_i < 0``) the
problem becomes ``sum_i |a_i| t_i >= c, 0 <= t_i <= room_i``, solved exactly per norm:

* L1: a fractional knapsack: fill coordinates in decreasing ``|a_i|`` until the margin is gone.
* Linf: ``t_i = min(eps, room_i)``; the reduction ``sum_i |a_i| min(eps, room_i)`` is piecewise
  linear and increasing in ``eps``, so the smallest sufficient ``eps`` is found on the sorted
  breakpoints ``room_i``.
* L2: the KKT conditions give ``t_i = min(lambda |a_i|, room_i)`` (water-filling); the reduction is
  piecewise linear in ``lambda`` with breakpoints ``room_i / |a_i|``.

All three are closed forms after one sort, computed in float64. A class that cannot be reached
inside the box gives ``inf``. This is the ground truth the attack tests compare against.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from attacks.norms import dual, lp_norm, row_norm

INF = math.inf


def exact_radius(model: nn.Linear, x, y, p: float):
    """Exact untargeted minimal radius (B,) of a linear classifier, ``min_j (z_y - z_j) / ||w_y - w_j||_q``,
    after checking that a minimiser lies inside the box and really flips the label."""
    with torch.no_grad():
        w = model.weight.double()
        z = model(x).double()
        a = w[y][:, None, :] - w[None]  # (B, K, D): w_y - w_j
        q = dual(p)
        a_dual = row_norm(a, q)
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


def _first_reaching(values: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first entry along the last axis with ``values >= target``; and whether any."""
    ok = values >= target[..., None]
    found = ok.any(axis=-1)
    idx = np.where(found, ok.argmax(axis=-1), values.shape[-1] - 1)
    return idx, found


def _solve(a: np.ndarray, c: np.ndarray, room: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``min ||t||_p s.t. sum |a| t >= c, 0 <= t <= room`` for a batch of problems.

    ``a, room``: (..., D), ``c``: (...,) with c > 0. Returns (radius (...,), t (..., D)).
    """
    w = np.abs(a)
    room = np.where(w > 0, room, 0.0)
    if p == 1:
        key = -w  # largest |a_i| first
        order = np.argsort(key, axis=-1, kind="stable")
        ws = np.take_along_axis(w, order, -1)
        rs = np.take_along_axis(room, order, -1)
        cap = np.cumsum(ws * rs, axis=-1)  # reduction after filling the first k coordinates
        k, found = _first_reaching(cap, c)
        cap_before = np.where(k > 0, np.take_along_axis(cap, np.maximum(k - 1, 0)[..., None], -1)[..., 0], 0.0)
        w_k = np.take_along_axis(ws, k[..., None], -1)[..., 0]
        ar = np.arange(ws.shape[-1])
        ts = np.where(ar < k[..., None], rs, 0.0)
        partial = np.where(w_k > 0, (c - cap_before) / np.where(w_k > 0, w_k, 1.0), 0.0)
        np.put_along_axis(ts, k[..., None], partial[..., None], -1)
        radius = ts.sum(-1)
    else:
        # breakpoints: eps = room_i (Linf) or lambda = room_i / |a_i| (L2); beyond its breakpoint a
        # coordinate is saturated at room_i, before it grows like eps (Linf) or lambda |a_i| (L2).
        if p == INF:
            bp = np.where(w > 0, room, INF)
            slope = w  # d(reduction)/d(eps) from an unsaturated coordinate
        else:
            bp = np.where(w > 0, room / np.where(w > 0, w, 1.0), INF)
            slope = w * w
        order = np.argsort(bp, axis=-1, kind="stable")
        bps = np.take_along_axis(bp, order, -1)
        ws = np.take_along_axis(w, order, -1)
        rs = np.take_along_axis(room, order, -1)
        ss = np.take_along_axis(slope, order, -1)
        sat = np.cumsum(ws * rs, axis=-1)  # reduction of the coordinates saturated at bps[k]
        free = ss.sum(-1, keepdims=True) - np.cumsum(ss, axis=-1)  # slope of those not yet saturated
        bps_f = np.where(np.isfinite(bps), bps, 0.0)
        at_bp = sat + bps_f * free  # reduction at each breakpoint
        at_bp = np.where(np.isfinite(bps), at_bp, -INF)
        k, found = _first_reaching(at_bp, c)
        # on the segment before breakpoint k: coordinates < k saturated, the rest grow freely
        sat_before = np.where(k > 0, np.take_along_axis(sat, np.maximum(k - 1, 0)[..., None], -1)[..., 0], 0.0)
        slope_rest = ss.sum(-1) - np.where(k > 0, np.take_along_axis(np.cumsum(ss, -1), np.maximum(k - 1, 0)[..., None], -1)[..., 0], 0.0)
        level = np.where(slope_rest > 0, (c - sat_before) / np.where(slope_rest > 0, slope_rest, 1.0), 0.0)
        if p == INF:
            t = np.minimum(level[..., None], room)
            radius_sorted = level
        else:
            t = np.minimum(level[..., None] * w, room)
            radius_sorted = None
        t = np.where(w > 0, t, 0.0)
        radius = t.max(-1) if p == INF else np.sqrt((t * t).sum(-1))
        if radius_sorted is not None:
            radius = np.where(found, radius_sorted, radius)
        radius = np.where(found, radius, INF)
        return radius, np.where(found[..., None], t, 0.0)
    radius = np.where(found, radius, INF)
    t_out = np.zeros_like(ts)
    np.put_along_axis(t_out, order, ts, -1)
    return radius, np.where(found[..., None], t_out, 0.0)


def linear_radii(weight, bias, inputs, labels, *, norm: float, return_delta: bool = False):
    """Exact minimal Lp adversarial radii of ``logits = inputs @ weight.T + bias`` in the [0, 1] box.

    Parameters
    ----------
    weight : array_like, (K, D)
    bias : array_like, (K,)
    inputs : array_like, (B, D) or (B, ...) flattened to D; values in [0, 1]
    labels : array_like, (B,) int
    norm : float
        1, 2 or inf.
    return_delta : bool
        Also return a minimiser per sample (it lies exactly on the decision boundary; in floating
        point the prediction there may still be the label, so scale it by 1 + 1e-6 to cross).

    Returns
    -------
    radii : np.ndarray (B,) float64
        0 where the point is already misclassified, inf where no class is reachable in the box.
    delta : np.ndarray (B, D) float64, only with ``return_delta``.
    """
    p = float(norm)
    if p not in (1.0, 2.0, INF):
        raise ValueError(f"norm must be 1, 2 or inf, got {norm!r}")
    W = np.asarray(_to_numpy(weight), dtype=np.float64)
    b = np.asarray(_to_numpy(bias), dtype=np.float64)
    x = np.asarray(_to_numpy(inputs), dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    y = np.asarray(_to_numpy(labels), dtype=np.int64)
    if W.ndim != 2 or W.shape[1] != x.shape[1] or b.shape != (W.shape[0],) or y.shape != (x.shape[0],):
        raise ValueError(f"shape mismatch: weight {W.shape}, bias {b.shape}, inputs {x.shape}, labels {y.shape}")
    B, D = x.shape
    z = x @ W.T + b  # (B, K)
    a = W[y][:, None, :] - W[None, :, :]  # (B, K, D)
    c = z[np.arange(B), y][:, None] - z  # (B, K)
    room = np.where(a > 0, x[:, None, :], 1.0 - x[:, None, :])  # (B, K, D)
    c_pos = np.maximum(c, 1e-300)
    radius, t = _solve(a, c_pos, room, p)
    radius = np.where(c <= 0, 0.0, radius)  # already at or past the boundary with class j
    radius[np.arange(B), y] = INF
    best = radius.argmin(axis=1)
    radii = radius[np.arange(B), best]
    pred = z.argmax(1)
    radii = np.where(pred != y, 0.0, radii)
    if not return_delta:
        return radii
    tj = t[np.arange(B), best]  # (B, D)
    aj = a[np.arange(B), best]
    delta = -np.sign(aj) * tj
    delta = np.where((radii > 0)[:, None] & np.isfinite(radii)[:, None], delta, 0.0)
    return radii, delta


def model_affine(model) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of a model that is a single ``nn.Linear`` after optional ``nn.Flatten`` layers.

    Raises ValueError for anything else.
    """
    mods = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    lin = [m for m in mods if not isinstance(m, nn.Flatten)]
    if len(lin) != 1 or not isinstance(lin[0], nn.Linear):
        raise ValueError("model_affine needs a model made of nn.Flatten layers and one nn.Linear")
    m = lin[0]
    b = m.bias.detach().cpu().double().numpy() if m.bias is not None else np.zeros(m.out_features)
    return m.weight.detach().cpu().double().numpy(), b


def _to_numpy(v):
    if hasattr(v, "detach"):
        return v.detach().cpu().numpy()
    return v

