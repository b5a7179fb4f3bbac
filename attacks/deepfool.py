"""DeepFool for L2 and Linf, with a SuperDeepFool-style boundary refinement in L2.

References: Moosavi-Dezfooli, Fawzi, Frossard. DeepFool: a simple and accurate method to fool
deep neural networks. CVPR 2016. Abdollahpour, Abroshan, Moosavi-Dezfooli. SuperDeepFool:
a new fast and accurate minimal adversarial attack. 2023 (arXiv:2303.12481): alternate landing
on the boundary with projections of the clean point onto the boundary's tangent plane.

Unlike the original, each step is box-aware: the step onto the nearest linearised boundary is
the exact minimal-norm projection onto that hyperplane intersected with [0, 1]^d (shared with
FAB), so pixels at 0 or 1 do not stall the attack.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_inputs, check_norm, flat, is_adversarial, view_as_batch
from ._geometry import candidate_classes, line_search, nearest_plane, pair_grads
from .norms import INF, lp_norm

_NORMS = (2.0, INF)


def _deepfool_run(model, x0, start, labels, cands, targeted, p, steps, overshoot):
    """Box-aware DeepFool iterations from ``start``.

    Each step projects the iterate onto the nearest of the linearised boundaries intersected
    with the box (exact minimal-Lp projection) and goes ``1 + overshoot`` times as far. Only the
    samples not yet adversarial are stepped (the batch shrinks as they break). Returns
    ``(found (B,), first adversarial iterate (B, ...))``.
    """
    b = x0.shape[0]
    shape = x0.shape[1:]
    found = torch.zeros(b, dtype=torch.bool, device=x0.device)
    out = flat(start).clone()
    act = torch.arange(b, device=x0.device)  # the samples still stepped, and their state:
    x, lab, cnd = flat(start), labels, cands
    for it in range(steps + 1):
        if it == steps:
            with torch.no_grad():
                hit = is_adversarial(model(x.view(-1, *shape)), lab, targeted)
        else:
            # the nearest linearised boundary within the box, aimed slightly past so that a
            # step never lands short
            logits, _, _, r, _, _ = nearest_plane(model, x.view(-1, *shape), lab, cnd, targeted, p, nudge=1e-6)
            hit = is_adversarial(logits, lab, targeted)
        if hit.any():
            out[act[hit]] = x[hit]
            found[act[hit]] = True
            if it == steps or hit.all():
                break
            keep = (~hit).nonzero().squeeze(1)
            act, x, lab, r = act[keep], x[keep], lab[keep], r[keep]
            cnd = None if cnd is None else cnd[keep]
        elif it == steps:
            break
        x = torch.add(x, r, alpha=1 + overshoot).clamp_(0, 1)
    return found, out.view_as(start)


def _refine_l2(model, xs, ys, cands, adv, targeted, steps, overshoot, search_steps):
    """SuperDeepFool-style refinement of boundary points ``adv`` of the inputs ``xs`` (L2).

    ``max(1, steps // 5)`` rounds: project the input orthogonally onto the tangent plane of the
    boundary at the current boundary point, take DeepFool steps from there until adversarial
    again (at most 3), bisect back onto the boundary; keep the smaller verified point per sample.
    Stops early when no sample improves.
    """
    best_norm = lp_norm(adv - xs, 2)
    for _ in range(max(1, steps // 5)):
        # tangent plane of the boundary at the current boundary point (h ~ 0 there)
        # (adv is adversarial: untargeted, its top class other than the label is its top class)
        _, h, g = pair_grads(model, adv, ys, targeted)
        gn2 = (g * g).sum(1).clamp_min(1e-24)
        # orthogonal projection of the input onto {h + g.(z - adv) = 0}
        coef = (h + (g * flat(xs - adv)).sum(1)) / gn2
        proj = flat(xs) - coef.unsqueeze(1) * g
        start = (xs + (1 + overshoot) * (proj.view_as(xs) - xs)).clamp(0, 1)
        ok, cand = _deepfool_run(model, xs, start, ys, cands, targeted, 2.0, 3, overshoot)
        cand = torch.where(view_as_batch(ok, xs), cand, adv)
        cand = line_search(model, xs, cand, ys, targeted, search_steps)
        with torch.no_grad():
            valid = is_adversarial(model(cand), ys, targeted)
        n = lp_norm(cand - xs, 2)
        better = valid & (n < best_norm)
        if not better.any():
            break
        adv = torch.where(view_as_batch(better, xs), cand, adv)
        best_norm = torch.where(better, n, best_norm)
    return adv


def deepfool(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    steps: int = 50,
    targeted: bool = False,
    overshoot: float = 0.02,
    candidates: int | None = 9,
    search_steps: int = 10,
) -> Tensor:
    """DeepFool (minimal attack) for L2 and Linf, refined onto the boundary.

    Moosavi-Dezfooli et al., CVPR 2016: at each step linearise the logit differences of the
    label and the ``candidates`` most likely other classes, move to the nearest linearised
    boundary (minimal L2 or Linf step, made box-aware: the exact projection onto the
    hyperplane intersected with [0, 1]^d), ``1 + overshoot`` times as far; each sample stops
    when it is adversarial. Then:

    - both norms: bisection on the segment from the input to the adversarial point
      (``search_steps`` halvings), which removes the overshoot;
    - L2 only, SuperDeepFool-style (Abdollahpour et al., 2023): ``max(1, steps // 5)`` rounds
      of projecting the input orthogonally onto the tangent plane of the boundary at the current
      boundary point, DeepFool steps from there until adversarial again, and bisection; the
      smallest verified adversarial point is kept.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; used in its current mode, parameters untouched.
    inputs : Tensor
        (B, ...) in [0, 1].
    labels : Tensor
        (B,) true labels, or target classes when ``targeted`` (then the rival is the current
        top class other than the target).
    norm : float
        2 or ``math.inf``.
    steps : int
        Maximum DeepFool iterations.
    overshoot : float
        Relative overshoot of each DeepFool iterate.
    candidates : int or None
        Number of most likely wrong classes (at the input) to linearise; None: all.
    search_steps : int
        Bisection steps of each boundary search.

    Returns
    -------
    Tensor
        Adversarial inputs in [0, 1]; the input where none was found.
    """
    # Half of this function is its docstring; the iterations are _deepfool_run, the L2 polish _refine_l2.
    p = check_norm(norm, _NORMS, "deepfool")
    check_inputs(inputs, labels)
    if steps < 0 or overshoot < 0 or search_steps < 0:
        raise ValueError("deepfool: steps, overshoot and search_steps must be >= 0")
    x0 = inputs.detach()
    b = x0.shape[0]
    best = x0.clone()
    if b == 0:
        return best
    with torch.no_grad():
        logits = model(x0)
    cands = None if targeted else candidate_classes(logits, labels, candidates)
    done0 = is_adversarial(logits, labels, targeted)
    idx = (~done0).nonzero().squeeze(1)
    if idx.numel() == 0:
        return best
    xs, ys = x0[idx], labels[idx]
    cs = None if cands is None else cands[idx]
    found, adv = _deepfool_run(model, xs, xs, ys, cs, targeted, p, steps, overshoot)
    f = found.nonzero().squeeze(1)
    if f.numel() == 0:
        return best
    xs, ys, adv = xs[f], ys[f], adv[f]
    cs = None if cs is None else cs[f]
    adv = line_search(model, xs, adv, ys, targeted, search_steps)
    if p == 2:
        adv = _refine_l2(model, xs, ys, cs, adv, targeted, steps, overshoot, search_steps)
    best[idx[f]] = adv
    return best
