"""FAB, the Fast Adaptive Boundary attack, as a minimal-norm attack for L1, L2 and Linf.

Reference: Croce, Hein. Minimally distorted Adversarial Examples with a Fast Adaptive Boundary
Attack. ICML 2020.

Each step linearises the classifier at the current iterate, projects both the iterate and the
clean input onto the nearest linearised decision hyperplane intersected with the box [0, 1]^d
(exact minimal-Lp projections, :func:`project_hyperplane_box`), and moves to a convex
combination of the two projections, biased towards the clean input; once adversarial the
iterate is pulled back towards the clean input. The smallest verified adversarial point is kept.

The geometry (the nearest linearised boundary within the box, the exact hyperplane-box
projection, the final bisection) lives in :mod:`attacks._geometry`, shared with DeepFool.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_inputs, check_norm, flat, is_adversarial, make_generator, random_in_ball, update_rows_
from ._geometry import candidate_classes, line_search, nearest_plane, project_hyperplane_box
from .norms import INF, row_norm

# pair_grads and the geometry are also imported from here by boundary.py and starts.py (another
# branch's files); at the merge they import attacks._geometry and this list shrinks to ["fab"]
_NORMS = (1.0, 2.0, INF)
_ALPHA_MAX = 0.1  # largest weight of the projection of the clean input (paper default)
_BETA = 0.9  # pull-back factor towards the clean input after a success (paper default)


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
    # Over half of this function is its docstring; the step is the paper's, the geometry is in _geometry.
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
