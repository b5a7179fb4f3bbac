"""DeepFool for L2 and Linf, with a SuperDeepFool-style boundary refinement in L2.

References: Moosavi-Dezfooli, Fawzi, Frossard. DeepFool: a simple and accurate method to fool
deep neural networks. CVPR 2016. Abdollahpour, Abroshan, Moosavi-Dezfooli. SuperDeepFool:
a new fast and accurate minimal adversarial attack. 2023 (arXiv:2303.12481): alternate landing
on the boundary with projections of the clean point onto the boundary's tangent plane.

This module also holds two pieces shared with FAB: the gradients of the label-versus-rival
logit differences (:func:`pair_grads`) and the bisection onto the boundary (:func:`line_search`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import INF, check_inputs, check_norm, dual, flat, is_adversarial, lp_norm, view_as_batch

_NORMS = (2.0, INF)


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


def _step(h: Tensor, g: Tensor, p: float) -> Tensor:
    """Linearised step onto {h + g.r = 0}: the minimal-Lp r, (B, D) from h (B,), g (B, D)."""
    q = dual(p)
    gn = lp_norm(g, q).clamp_min(1e-12)
    if p == 2:
        return -(h / gn**2).unsqueeze(1) * g
    return -(h / gn).unsqueeze(1) * g.sign()


def _deepfool_run(model, x0, start, labels, cands, targeted, p, steps, overshoot):
    """DeepFool iterations from ``start``; returns (found (B,), first adversarial iterate (B, ...))."""
    b = x0.shape[0]
    found = torch.zeros(b, dtype=torch.bool, device=x0.device)
    out = start.clone()
    x = start.clone()
    r_tot = flat(start - x0) / (1 + overshoot)
    for it in range(steps + 1):
        a = (~found).nonzero().squeeze(1)
        if a.numel() == 0:
            break
        if it == steps:
            with torch.no_grad():
                hit = is_adversarial(model(x[a]), labels[a], targeted)
            out[a[hit]] = x[a[hit]]
            found[a[hit]] = True
            break
        logits, h, g = pair_grads(model, x[a], labels[a], None if cands is None else cands[a], targeted)
        hit = is_adversarial(logits, labels[a], targeted)
        out[a[hit]] = x[a[hit]]
        found[a[hit]] = True
        keep = ~hit
        a, h, g = a[keep], h[keep], g[keep]
        if a.numel() == 0:
            break
        dist = h.clamp_min(0) / lp_norm(g.reshape(-1, g.shape[2]), dual(p)).reshape(h.shape).clamp_min(1e-12)
        j = dist.argmin(1)  # nearest linearised boundary
        ar = torch.arange(a.numel(), device=x0.device)
        r = _step(h[ar, j] + 1e-6 * h[ar, j].abs().clamp_min(1e-6), g[ar, j], p)
        r_tot[a] = r_tot[a] + r
        x[a] = (x0[a] + (1 + overshoot) * r_tot[a].view_as(x0[a])).clamp(0, 1)
    return found, out


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
    boundary (minimal L2 or Linf step), overshoot the accumulated perturbation by
    ``1 + overshoot``; each sample stops when it is adversarial. Then:

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
    best_norm = lp_norm(adv - xs, p)
    if p == 2:
        for _ in range(max(1, steps // 5)):
            # tangent plane of the boundary at the current boundary point (h ~ 0 there)
            if targeted:
                _, h, g = pair_grads(model, adv, ys, None, True)
            else:
                with torch.no_grad():
                    top = model(adv).argmax(1, keepdim=True)
                _, h, g = pair_grads(model, adv, ys, top, False)
            h, g = h[:, 0], g[:, 0]
            gn2 = (g * g).sum(1).clamp_min(1e-24)
            # orthogonal projection of the input onto {h + g.(z - adv) = 0}
            coef = (h + (g * flat(xs - adv)).sum(1)) / gn2
            proj = flat(xs) - coef.unsqueeze(1) * g
            start = (xs + (1 + overshoot) * (proj.view_as(xs) - xs)).clamp(0, 1)
            ok, cand = _deepfool_run(model, xs, start, ys, cs, targeted, p, 3, overshoot)
            cand = torch.where(view_as_batch(ok, xs), cand, adv)
            cand = line_search(model, xs, cand, ys, targeted, search_steps)
            with torch.no_grad():
                valid = is_adversarial(model(cand), ys, targeted)
            n = lp_norm(cand - xs, p)
            better = valid & (n < best_norm)
            if not better.any():
                break
            adv = torch.where(view_as_batch(better, xs), cand, adv)
            best_norm = torch.where(better, n, best_norm)
    best[idx[f]] = adv
    return best
