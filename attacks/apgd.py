"""Auto-PGD (APGD), a step-size-free budget attack for Linf, L2 and L1.

References: Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks. ICML 2020 (APGD-CE, APGD-DLR, APGD-T). Croce, Hein. Mind the
box: l1-APGD for sparse adversarial attacks on image classifiers. ICML 2021 (L1 version:
sparsity-adaptive top-k steps and the exact projection onto the L1 ball intersected with the box).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._budget import Budget, as_eps, sparse_l1_direction, start_in_ball
from ._common import check_inputs, check_norm, flat, input_grad, is_adversarial, make_generator, update_rows_
from ._geometry import rival_classes
from .losses import logit_weights
from .norms import INF

_NORMS = (1.0, 2.0, INF)
_MOMENTUM = 0.75  # weight of the new step; 0.25 of the previous displacement (paper's alpha)
_RHO = 0.75  # a checkpoint halves the step if fewer than rho of the steps since raised the loss
_L1_ALPHA = 1.0  # L1: the step size is alpha * eps at most and alpha * eps / 10 at least


def _checkpoints(steps: int) -> list[int]:
    """Iterations at which the Linf/L2 step size is reconsidered: p0=0, p1=0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    ps = [0.0, 0.22]
    while ps[-1] < 1.0:
        ps.append(ps[-1] + max(ps[-1] - ps[-2] - 0.03, 0.06))
    out = sorted({int(math.ceil(q * steps)) for q in ps[1:] if q <= 1.0})
    return [w for w in out if 0 < w <= steps]


def apgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    eps: float | Tensor,
    steps: int = 100,
    targeted: bool = False,
    loss: str = "ce",
    restarts: int = 1,
    seed: int = 0,
    rivals: Tensor | None = None,
) -> Tensor:
    """APGD: projected gradient ascent with momentum and an adaptive step size (budget attack).

    Croce & Hein, ICML 2020; L1 as in Croce & Hein, ICML 2021. Linf/L2: step size starts at
    2 eps and is halved at checkpoints where the loss rose in fewer than 75% of the steps since
    the last checkpoint, or where neither the step nor the best loss changed; after a halving
    the run restarts from the best point. Momentum 0.75. L1: sparse sign steps on the top-k
    coordinates, k adapted to the sparsity of the best point every 4% of the steps, step size
    between eps/10 and eps, exact projection onto the L1 ball intersected with the box. A
    sample stops as soon as it is adversarial.

    With ``restarts > 1`` an untargeted attack spends restart r >= 1 on the targeted DLR loss
    towards one wrong class (APGD-T): the 9 most likely wrong classes at the clean point, nearest
    linearised boundary first, each restart only on
    the samples still unbroken and from a fresh random start.

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
    eps : float or Tensor
        Budget, a float or a (B,) tensor.
    steps : int
        Iterations per restart.
    targeted : bool
        Make ``labels`` (the targets) the prediction; with ``loss="dlr"`` the targeted DLR loss.
    loss : {"ce", "dlr"}
        Cross-entropy or the difference-of-logits-ratio loss.
    restarts : int
        Number of runs (see above).
    seed : int
        Seed of the local generator for the random starts.
    rivals : Tensor, optional
        (B, K) rival classes as :func:`attacks._geometry.rival_classes` returns them, for callers that
        attack the same points repeatedly; computed here when needed and not given.

    Returns
    -------
    Tensor
        Adversarial inputs within the budget and the box; the input where none was found.
    """
    # Over half of this function is its docstring; one run is _single_run.
    p = check_norm(norm, _NORMS, "apgd")
    check_inputs(inputs, labels)
    if loss not in ("ce", "dlr"):
        raise ValueError(f"apgd: loss must be 'ce' or 'dlr', got {loss!r}")
    if steps < 0 or restarts < 1:
        raise ValueError("apgd: steps must be >= 0 and restarts >= 1")
    b = inputs.shape[0]
    x0 = inputs.detach()
    e = as_eps(eps, b, x0, "apgd")
    adv = x0.clone()
    if b == 0:
        return adv
    gen = make_generator(seed, x0.device)
    with torch.no_grad():
        clean_logits = model(x0)
    done = is_adversarial(clean_logits, labels, targeted)
    if rivals is None and restarts > 1 and not targeted:
        rivals = rival_classes(model, x0, clean_logits, labels, p)
    adv_f = flat(adv)
    for r in range(restarts):
        idx = (~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        if r == 0 or targeted:
            kind, riv = loss, None
        else:
            kind, riv = "dlr-pair", rivals[idx, (r - 1) % rivals.shape[1]]
        found, xadv = _single_run(model, x0[idx], labels[idx], riv, e[idx], p, steps, kind, targeted, gen,
                                  clean_logits.shape[1])
        hit = idx[found]
        adv_f[hit] = xadv[found]
        done[hit] = True
    return adv


_COMPACT = 0.5  # a run drops its finished samples from the batch once at most this share is left


def _single_run(model, xs, ys, riv, es, p, steps, kind, targeted, gen, num_classes):
    """One APGD run on a sub-batch; returns (found (b,), first adversarial points (b, D) flat).

    The iterates are kept flat (b, D) and reshaped for the model only. Finished samples stay in
    the batch (their updates are ignored) until at most ``_COMPACT`` of it is still searching;
    then every per-sample state is cut down to those.
    """
    # One function: the paper's loop over shared per-sample state (``st``); the step, the L1
    # sparsity rule and the checkpoint rule are the helpers below.
    b = xs.shape[0]
    shape = xs.shape[1:]
    dev = xs.device
    x0 = flat(xs)
    d = x0.shape[1]
    found = torch.zeros(b, dtype=torch.bool, device=dev)
    xadv = x0.clone()
    x = flat(start_in_ball(xs, es, p, gen))

    # per-sample state, all indexed like the current batch; ``pos`` maps it to the outputs
    st = {"pos": torch.arange(b, device=dev), "y": ys, "riv": riv, "es": es,
          "alive": torch.ones(b, dtype=torch.bool, device=dev)}
    budget = Budget(x0, es, p)
    weigh = logit_weights(kind, ys, riv, targeted, num_classes, x0.dtype)
    n_alive = b

    def evaluate(xe):
        """Loss and gradient at ``xe``; records the samples that are adversarial for the first time."""
        nonlocal n_alive
        logits, lv, g = input_grad(model, xe.view(-1, *shape), weigh)
        newly = is_adversarial(logits, st["y"], targeted).logical_and_(st["alive"])
        cnt = int(newly.sum())
        if cnt:
            hit = st["pos"][newly]
            xadv[hit] = xe[newly]
            found[hit] = True
            st["alive"].logical_xor_(newly)
            n_alive -= cnt
        return lv, g.view(xe.shape)

    loss_cur, grad = evaluate(x)
    loss_best = loss_cur.clone()
    st.update(loss_cur=loss_cur, loss_best=loss_best, x=x, x_best=x.clone(), grad=grad, grad_best=grad.clone(),
              x_prev=x.clone())
    if p == 1:
        st["step"] = _L1_ALPHA * es.clone()
        st["topk"] = torch.full((b,), 0.2 * d, dtype=es.dtype, device=dev)  # number of coordinates per sparse step
        st["sp_old"] = torch.full((b,), float(d), dtype=es.dtype, device=dev)
        period = max(int(0.04 * steps), 1)
    else:
        st["step"] = 2.0 * es.clone()
        checks = _checkpoints(steps)
        last_check = 0
        st["n_up"] = torch.zeros(b, dtype=es.dtype, device=dev)  # steps since the last checkpoint that raised the loss
        st["best_at_check"] = loss_best.clone()
        st["reduced_at_check"] = torch.ones(b, dtype=torch.bool, device=dev)

    for k in range(steps):
        if n_alive == 0:
            break
        if n_alive <= _COMPACT * st["alive"].shape[0]:
            keep = st["alive"].nonzero().squeeze(1)
            st = {key: (None if v is None else v[keep]) for key, v in st.items()}
            budget = budget.subset(keep)
            weigh = logit_weights(kind, st["y"], st["riv"], targeted, num_classes, x0.dtype)
        x = st["x"]
        z = _next_point(st, budget, p, k)
        lv, g = evaluate(z)
        st["x_prev"], st["x"], st["grad"] = x, z, g
        if p != 1:
            st["n_up"] += lv > st["loss_cur"]
        st["loss_cur"] = lv
        better = lv > st["loss_best"]
        st["loss_best"] = torch.where(better, lv, st["loss_best"])
        update_rows_(st["x_best"], z, better)
        update_rows_(st["grad_best"], g, better)

        it = k + 1
        if p == 1:
            if it % period == 0:
                _adapt_sparsity(st, budget, d)
        elif it in checks:
            _checkpoint(st, it - last_check)
            last_check = it
    return found, xadv


def _next_point(st: dict, budget: Budget, p: float, k: int) -> Tensor:
    """The step from ``st["x"]``: signed (Linf), normalised (L2) or sparse top-k (L1) gradient
    ascent, projected; then, for Linf and L2 after the first step, the momentum."""
    x, grad, x_prev = st["x"], st["grad"], st["x_prev"]
    step = st["step"].unsqueeze(1)
    if p == INF:
        z = budget.project_(torch.addcmul(x, step, grad.sign()))
    elif p == 2:
        z = budget.project_(torch.addcmul(x, step / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min_(1e-30), grad))
    else:
        z = budget.project_(torch.addcmul(x, step, sparse_l1_direction(grad, x, st["topk"].floor())))
    if p != 1 and k > 0:  # momentum (the L1 version of the paper uses none):
        # x + m (z - x) + (1 - m)(x - x_prev) = m z + 2 (1 - m) x - (1 - m) x_prev
        z = budget.project_(z.mul_(_MOMENTUM).add_(x, alpha=2 * (1 - _MOMENTUM)).sub_(x_prev, alpha=1 - _MOMENTUM))
    return z


def _adapt_sparsity(st: dict, budget: Budget, d: int) -> None:
    """L1, every 4% of the steps: k follows the sparsity of the best point; where the best point
    became sparser (by 5%), the step size resets to eps and the run goes back to the best point,
    elsewhere the step shrinks by 1.5 (between eps / 10 and eps)."""
    es = st["es"]
    sp = (st["x_best"] != budget.x0).sum(1).to(st["step"].dtype)
    shrink = sp / st["sp_old"] < 0.95
    st["topk"] = (sp / 1.5).clamp(1.0, float(d))
    new_step = torch.where(shrink, _L1_ALPHA * es, st["step"] / 1.5)
    st["step"] = torch.minimum(torch.maximum(new_step, _L1_ALPHA * es / 10), _L1_ALPHA * es)
    st["sp_old"] = sp
    _back_to_best(st, shrink)


def _checkpoint(st: dict, span: int) -> None:
    """Linf/L2, at a checkpoint ``span`` steps after the last: halve the step and go back to the
    best point where the loss rose in fewer than rho of those steps, or where the step was not
    halved last time and the best loss has not improved since."""
    osc = st["n_up"] < _RHO * span
    stuck = (~st["reduced_at_check"]) & (st["best_at_check"] >= st["loss_best"])
    halve = osc | stuck
    st["reduced_at_check"] = halve
    st["best_at_check"] = st["loss_best"].clone()
    st["n_up"].zero_()
    st["step"] = torch.where(halve, st["step"] / 2, st["step"])
    _back_to_best(st, halve)


def _back_to_best(st: dict, sel: Tensor) -> None:
    """Restart the samples ``sel`` (bool) from their best point: iterate, gradient, momentum."""
    update_rows_(st["x"], st["x_best"], sel)
    update_rows_(st["grad"], st["grad_best"], sel)
    update_rows_(st["x_prev"], st["x_best"], sel)
