"""Projected gradient descent (PGD), a budget attack for L1, L2 and Linf.

Reference: Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
Adversarial Attacks. ICLR 2018. The L1 steps are sparse (top-k coordinates, box-aware), after
Tramer, Boneh. Adversarial Training and Robustness for Multiple Perturbations (SLIDE),
NeurIPS 2019, and Croce, Hein. Mind the box: l1-APGD. ICML 2021, with the exact projection onto
the intersection of the L1 ball and the box [0, 1]^d.

The losses live in :mod:`attacks.losses`, the feasible set and its projections in
:mod:`attacks._budget`, the rival ranking in :mod:`attacks._geometry` (all shared with APGD).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._budget import Budget, as_eps, sparse_l1_direction, start_in_ball
from ._common import check_inputs, check_norm, flat, input_grad, is_adversarial, make_generator, update_rows_
from ._geometry import rival_classes
from .losses import ce_loss, logit_weights
from .norms import INF

_NORMS = (1.0, 2.0, INF)


def pgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    norm: float,
    eps: float | Tensor,
    steps: int = 40,
    step_size: float | None = None,
    targeted: bool = False,
    random_start: bool = True,
    restarts: int = 1,
    seed: int = 0,
    early_stop: bool = True,
    rivals: Tensor | None = None,
) -> Tensor:
    """Projected gradient ascent on the cross-entropy inside an Lp ball (budget attack).

    Madry et al., ICLR 2018. The first run ascends the cross-entropy; with ``restarts > 1`` an
    untargeted attack spends restart r on pushing one wrong class above the label (loss
    z_rival - z_label), as AutoAttack's APGD-T does, because one loss cannot find the nearest
    boundary of a many-class model: the rivals are the 9 most likely wrong classes at the clean
    point, nearest linearised boundary first (one extra forward and backward pass over the batch
    replicated 9 times, once). Linf: signed-gradient steps; L2: normalised-gradient steps; L1:
    sparse box-aware top-k sign steps whose sparsity anneals from 5% of the coordinates down
    to one over the run (SLIDE, Tramer & Boneh 2019), each followed by the exact projection
    onto the L1 ball intersected with the box. By default a sample stops as soon as an iterate
    is adversarial and the first adversarial point found is returned (what a robustness
    evaluation or a minimal-radius search needs); ``early_stop=False`` instead returns the
    loss-maximising point of the ball for every sample (what adversarial training needs).

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
        Budget, a float or a (B,) tensor of per-sample budgets.
    steps : int
        Gradient steps per restart.
    step_size : float, optional
        Step length as a fraction of each sample's ``eps``; default ``2.5 / steps`` for L2 and
        Linf (Madry et al.), ``1.0`` for L1 (the projection absorbs most of each step).
    targeted : bool
        Minimise the cross-entropy of ``labels`` (targets) instead.
    random_start : bool
        Start from a uniform-ish random point of the ball (the first restart too).
    restarts : int
        Runs from fresh random starts, each only on the samples still unbroken.
    seed : int
        Seed of the local generator for the random starts.
    early_stop : bool
        True (default): stop each sample at its first adversarial iterate and return that point;
        the input where none was found or the input is already adversarial. False: run all
        ``steps`` of every restart on every sample (already adversarial ones included) and
        return, per sample, the point of highest cross-entropy (minus the target's
        cross-entropy when ``targeted``) among the clean input and all iterates, each inside
        the ball ∩ [0, 1]. This is the inner maximisation of adversarial training (Madry et al.
        2018), which wants the worst point of the ball, not merely an adversarial one. Later
        restarts of an untargeted attack still push rival classes (see above), but their
        iterates are ranked by the cross-entropy too.
    rivals : Tensor, optional
        (B, K) rival classes of the samples as :func:`rival_classes` returns them, for callers
        that attack the same points repeatedly (an epsilon search); computed here when needed
        and not given.

    Returns
    -------
    Tensor
        Points with ``||adv - inputs||_p <= eps`` in [0, 1]. ``early_stop=True``: adversarial
        inputs, the input where none was found (and where the input is already adversarial).
        ``early_stop=False``: the highest-loss point found for every sample, adversarial or not.
    """
    # Over half of this function is its docstring; the iterations are in _Run.
    p = check_norm(norm, _NORMS, "pgd")
    check_inputs(inputs, labels)
    if steps < 0 or restarts < 1:
        raise ValueError("pgd: steps must be >= 0 and restarts >= 1")
    b = inputs.shape[0]
    x0 = inputs.detach()
    e = as_eps(eps, b, x0, "pgd")
    if step_size is None:
        rel = 1.0 if p == 1 else 2.5 / max(steps, 1)
    else:
        if not step_size > 0:
            raise ValueError("pgd: step_size must be > 0")
        rel = float(step_size)
    gen = make_generator(seed, x0.device)
    adv = x0.clone()
    if b == 0:
        return adv
    with torch.no_grad():
        clean_logits = model(x0)
    done = is_adversarial(clean_logits, labels, targeted)
    d = flat(x0).shape[1]
    k0 = max(1, int(math.ceil(0.05 * d)))

    if rivals is None and restarts > 1 and not targeted:
        rivals = rival_classes(model, x0, clean_logits, labels, p)
    run = _Run(model, x0.shape[1:], clean_logits.shape[1], p, rel, steps, k0, targeted)
    if not early_stop:
        return run.max_loss(x0, labels, e, clean_logits, rivals, random_start, restarts, gen)

    adv_f = flat(adv)
    for r in range(restarts):
        idx = (~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, ys, es = x0[idx], labels[idx], e[idx]
        if r == 0 or targeted:
            kind, riv = "ce", None
        else:  # later restarts: push one rival class above the label, APGD-T style
            kind, riv = "pair", rivals[idx, (r - 1) % rivals.shape[1]]
        x = start_in_ball(xs, es, p, gen) if random_start else xs.clone()
        found, xr = run.first_hits(flat(xs), ys, es, kind, riv, flat(x))
        hit = idx[found]
        adv_f[hit] = xr[found]
        done[hit] = True
    return adv


_COMPACT = 0.5  # a run drops its finished samples from the batch once at most this share is left


class _Run:
    """The PGD iterations on flat (n, D) batches; the model sees them in the inputs' shape."""

    def __init__(self, model: nn.Module, shape, num_classes: int, p: float, rel: float, steps: int,
                 k0: int, targeted: bool):
        self.model, self.shape, self.c, self.p = model, tuple(shape), num_classes, p
        self.rel, self.steps, self.k0, self.targeted = rel, steps, k0, targeted

    def step_(self, x: Tensor, g: Tensor, step: Tensor, budget: Budget, t: int) -> Tensor:
        """One ascent step of length ``step`` (n, 1) along ``g`` from ``x`` (in place), projected:
        the gradient's sign (Linf), its normalised form (L2), or a sparse box-aware step over
        ``k`` coordinates (L1), ``k`` shrinking geometrically from ``k0`` to 1 over the steps."""
        if self.p == INF:
            return budget.project_(x.addcmul_(g.sign_(), step))
        if self.p == 2:
            return budget.project_(x.addcmul_(g, step / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min_(1e-30)))
        k = max(1, int(round(self.k0 ** (1.0 - t / max(self.steps - 1, 1)))))
        return budget.project_(x.addcmul_(sparse_l1_direction(g, x, k), step))

    def first_hits(self, xs: Tensor, ys: Tensor, es: Tensor, kind: str, riv: Tensor | None,
                   x: Tensor) -> tuple[Tensor, Tensor]:
        """One early-stopping run from ``x`` (n, D) around ``xs``; returns (found (n,), adv (n, D)),
        ``adv`` the first adversarial iterate where found.

        Finished samples stay in the batch (their steps are ignored) until at most
        ``_COMPACT`` of it is still searching; then the batch is cut down to those.
        """
        n = xs.shape[0]
        found = torch.zeros(n, dtype=torch.bool, device=xs.device)
        adv = xs.clone()
        pos = torch.arange(n, device=xs.device)  # row of each batch member in the outputs
        alive = torch.ones(n, dtype=torch.bool, device=xs.device)
        n_alive = n
        budget = Budget(xs, es, self.p)
        step = (self.rel * es).unsqueeze(1)
        weigh = logit_weights(kind, ys, riv, self.targeted, self.c, xs.dtype, with_loss=False)
        for t in range(self.steps + 1):
            xm = x.view(-1, *self.shape)
            if t == self.steps:  # final check of the last iterate
                with torch.no_grad():
                    logits = self.model(xm)
            else:
                logits, _, g = input_grad(self.model, xm, weigh)
            newly = is_adversarial(logits, ys, self.targeted).logical_and_(alive)
            cnt = int(newly.sum())
            if cnt:
                hit = pos[newly]
                adv[hit] = x[newly]
                found[hit] = True
                alive.logical_xor_(newly)
                n_alive -= cnt
            if n_alive == 0 or t == self.steps:
                break
            g = g.view(x.shape)
            if n_alive <= _COMPACT * alive.shape[0]:
                keep = alive.nonzero().squeeze(1)
                pos, x, g, ys, step = pos[keep], x[keep], g[keep], ys[keep], step[keep]
                riv = None if riv is None else riv[keep]
                budget = budget.subset(keep)
                weigh = logit_weights(kind, ys, riv, self.targeted, self.c, xs.dtype, with_loss=False)
                alive = alive[keep]
            x = self.step_(x, g, step, budget, t)
        return found, adv

    def max_loss(self, x0: Tensor, labels: Tensor, e: Tensor, clean_logits: Tensor, rivals: Tensor | None,
                 random_start: bool, restarts: int, gen: torch.Generator) -> Tensor:
        """``pgd(..., early_stop=False)``: every sample runs every step; the highest-CE point wins."""
        x0f = flat(x0)
        budget = Budget(x0f, e, self.p)
        step = (self.rel * e).unsqueeze(1)
        best = x0f.clone()
        best_loss = ce_loss(clean_logits, labels, self.targeted)
        ce = logit_weights("ce", labels, None, self.targeted, self.c, x0.dtype)
        for r in range(restarts):
            if r == 0 or self.targeted:
                weigh = ce
            else:
                riv = rivals[:, (r - 1) % rivals.shape[1]]
                weigh = logit_weights("pair", labels, riv, self.targeted, self.c, x0.dtype, with_loss=False)
            x = flat(start_in_ball(x0, e, self.p, gen)) if random_start else x0f.clone()
            for t in range(self.steps + 1):
                xm = x.view(-1, *self.shape)
                if t == self.steps:  # the last iterate is scored too
                    with torch.no_grad():
                        loss = ce_loss(self.model(xm), labels, self.targeted)
                else:
                    logits, loss, g = input_grad(self.model, xm, weigh)
                    if weigh is not ce:
                        loss = ce_loss(logits, labels, self.targeted)
                better = loss > best_loss
                best_loss = torch.where(better, loss, best_loss)
                update_rows_(best, x, better)
                if t == self.steps:
                    break
                x = self.step_(x, g.view(x.shape), step, budget, t)
        return best.view_as(x0)
