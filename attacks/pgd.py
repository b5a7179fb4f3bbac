"""Projected gradient descent (PGD), a budget attack for L1, L2 and Linf.

Reference: Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
Adversarial Attacks. ICLR 2018. The L1 steps are sparse (top-k coordinates, box-aware), after
Tramer, Boneh. Adversarial Training and Robustness for Multiple Perturbations (SLIDE),
NeurIPS 2019, and Croce, Hein. Mind the box: l1-APGD. ICML 2021, with the exact projection onto
the intersection of the L1 ball and the box [0, 1]^d.

This module also holds the pieces shared by the budget attacks of this package (losses, the
gradient of a per-sample loss, the exact L1-ball-and-box projection, the budget step).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    INF,
    check_inputs,
    check_norm,
    dual,
    flat,
    input_grad,
    is_adversarial,
    label_margin,
    lp_norm,
    make_generator,
    pair_backward,
    random_in_ball,
    sort_rows,
    update_rows_,
    view_as_batch,
)

_NORMS = (1.0, 2.0, INF)


# ----------------------------------------------------------------------------- shared pieces
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


def ce_loss(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Per-sample loss to maximise: CE of the label (untargeted) or minus CE of the target."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def dlr_loss(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Difference-of-logits-ratio loss to maximise (Croce & Hein 2020), scale invariant.

    Untargeted: -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3). Targeted (labels are targets):
    -(max_{j!=t} z_j - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2). With fewer classes than the
    denominator needs, the last sorted logit is used instead; with two classes, the plain margin.
    """
    c = logits.shape[1]
    if c < 3:  # the ratio is a constant +-1 with two classes: fall back to the plain margin
        return -label_margin(logits, labels, targeted)
    srt = logits.sort(dim=1, descending=True).values
    if targeted:
        low = 0.5 * (srt[:, min(2, c - 1)] + srt[:, min(3, c - 1)])
    else:
        low = srt[:, min(2, c - 1)]
    scale = (srt[:, 0] - low).clamp_min(1e-12)
    return -label_margin(logits, labels, targeted) / scale


def rival_classes(model: nn.Module, x0: Tensor, logits: Tensor, labels: Tensor, p: float, top: int = 9) -> Tensor:
    """(B, K) wrong classes to push above the label, nearest linearised boundary first.

    The ``top`` most likely wrong classes at the clean point are ranked by the DeepFool
    estimate (z_label - z_j) / ||grad(z_label - z_j)||_q (q dual to p). One forward pass on the
    batch and one backward pass through it per candidate (K * B sample passes backward), each
    gradient reduced to its norm as it comes.
    """
    b, c = logits.shape
    k = max(1, min(top, c - 1))
    masked = logits.detach().clone()
    masked.scatter_(1, labels.unsqueeze(1), -INF)
    cand = masked.topk(k, dim=1).indices  # (B, K)
    if k == 1:
        return cand
    lab = labels.unsqueeze(1)
    zd, _, _, weights, grad = pair_backward(model, x0, lambda z: (lab, cand))
    dist = (zd.gather(1, lab) - zd.gather(1, cand)).t().contiguous()  # (K, B), divided by the norms below
    q = dual(p)
    for j in range(k):
        dist[j].div_(lp_norm(grad(weights[j]), q).clamp_min_(1e-30))
    return cand.gather(1, dist.t().argsort(dim=1))


def pair_loss(logits: Tensor, rival: Tensor, labels: Tensor) -> Tensor:
    """z_rival - z_label: linear in the logits; positive means the label lost the top place."""
    return logits.gather(1, rival.unsqueeze(1)).squeeze(1) - logits.gather(1, labels.unsqueeze(1)).squeeze(1)


def dlr_pair_loss(logits: Tensor, rival: Tensor, labels: Tensor) -> Tensor:
    """Targeted DLR towards ``rival`` of a sample labelled ``labels`` (AutoAttack's APGD-T)."""
    c = logits.shape[1]
    srt = logits.sort(dim=1, descending=True).values
    scale = (srt[:, 0] - 0.5 * (srt[:, min(2, c - 1)] + srt[:, min(3, c - 1)])).clamp_min(1e-12)
    return pair_loss(logits, rival, labels) / scale


def objective(kind: str, labels: Tensor, rival: Tensor | None, targeted: bool):
    """Per-sample loss to maximise, ``logits -> (B,)``.

    kind: ``"ce"``, ``"dlr"`` (untargeted, or targeted at ``labels`` when ``targeted``),
    ``"pair"``, ``"dlr-pair"`` (push ``rival`` above ``labels``).
    """
    if kind == "ce":
        return lambda z: ce_loss(z, labels, targeted)
    if kind == "dlr":
        return lambda z: dlr_loss(z, labels, targeted)
    if kind == "pair":
        return lambda z: pair_loss(z, rival, labels)
    return lambda z: dlr_pair_loss(z, rival, labels)


def logit_weights(kind: str, labels: Tensor, rival: Tensor | None, targeted: bool, num_classes: int,
                  dtype: torch.dtype, with_loss: bool = True):
    """The loss of :func:`objective` as a ``weigh`` function for :func:`attacks._common.input_grad`.

    Returns ``weigh(logits) -> (w, loss)``: ``w`` (B, C) is the gradient of the per-sample loss
    with respect to the logits, in closed form (CE: softmax minus the label's one-hot row; the
    pair loss: a constant +-1 pair; the DLR losses: differences of logits over their spread,
    with the quotient rule), ``loss`` (B,) its value, or None when ``with_loss`` is False.
    ``dtype``: the logits' dtype. The labels' one-hot rows are built once here, not at every step.
    """
    lab = labels.unsqueeze(1)
    onehot = torch.zeros((labels.shape[0], num_classes), dtype=dtype, device=labels.device).scatter_(1, lab, 1.0)
    if kind == "pair":
        riv = rival.unsqueeze(1)
        w_pair = onehot.neg().scatter_(1, riv, 1.0)  # d(z_rival - z_label)/dz

        def weigh(z):
            return w_pair, (z.gather(1, riv) - z.gather(1, lab)).squeeze(1) if with_loss else None
        return weigh
    if kind == "ce":
        def weigh(z):
            # softmax written out: torch.softmax is several times slower on (B, 10) CPU logits
            shifted = z - z.amax(dim=1, keepdim=True)
            e = shifted.exp()
            tot = e.sum(dim=1, keepdim=True)
            w = e.div_(tot).sub_(onehot)  # d CE / dz = softmax - onehot
            if not with_loss:
                return (w.neg_() if targeted else w), None
            ce = tot.log_().sub_(shifted.gather(1, lab)).squeeze(1)  # logsumexp - z_label
            return (w.neg_(), ce.neg_()) if targeted else (w, ce)
        return weigh
    c = num_classes
    i3, i4 = min(2, c - 1), min(3, c - 1)
    riv = None if rival is None else rival.unsqueeze(1)

    def margin_w(z):
        """(d num / dz, num): the numerator of the loss and its logit gradient."""
        if kind == "dlr-pair":  # z_rival - z_label
            return onehot.neg().scatter_(1, riv, 1.0), (z.gather(1, riv) - z.gather(1, lab)).squeeze(1)
        best, other = z.scatter(1, lab, -INF).max(dim=1, keepdim=True)
        num = (best - z.gather(1, lab)).squeeze(1)  # best other - label: >= 0 once adversarial
        w = onehot.neg().scatter_(1, other, 1.0)
        if targeted:  # dlr targeted: -(best other - target); untargeted dlr: -(label - best other)
            return w.neg_(), num.neg_()
        return w, num

    if kind == "dlr" and c < 3:
        def weigh(z):
            w, num = margin_w(z)
            return w, num if with_loss else None  # -label_margin
        return weigh
    two_sided = targeted or kind == "dlr-pair"  # spread z_pi1 - (z_pi3 + z_pi4) / 2

    def weigh(z):
        w_num, num = margin_w(z)
        top = z.topk(i4 + 1, dim=1)
        if two_sided:
            low = 0.5 * (top.values[:, i3] + top.values[:, i4])
        else:
            low = top.values[:, i3]
        raw = top.values[:, 0] - low
        s = raw.clamp_min(1e-12)
        loss = num / s
        # d(num / s) = d num / s - num / s^2 d s; the clamp passes no gradient below 1e-12
        coef = torch.where(raw >= 1e-12, -loss / s, torch.zeros_like(s)).unsqueeze(1)
        if two_sided:
            ds = torch.cat([coef, -0.5 * coef, -0.5 * coef], 1)
            idx = top.indices[:, [0, i3, i4]]
        else:
            ds = torch.cat([coef, -coef], 1)
            idx = top.indices[:, [0, i3]]
        w = (w_num / s.unsqueeze(1)).scatter_add_(1, idx, ds)
        return w, loss
    return weigh


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


def project_budget(x0: Tensor, x: Tensor, eps: Tensor, p: float) -> Tensor:
    """Project ``x`` onto {||x - x0||_p <= eps} ∩ [0, 1] (exact for Linf and L1; L2: ball then box)."""
    delta = x - x0
    if p == INF:
        e = view_as_batch(eps, x)
        delta = torch.maximum(torch.minimum(delta, e), -e)
    elif p == 2:
        n = lp_norm(delta, 2)
        factor = torch.where(n > eps, eps / n.clamp_min(1e-30), torch.ones_like(n))
        delta = delta * view_as_batch(factor, x)
    else:
        f0 = flat(x0)
        delta = project_l1_box(flat(delta), -f0, 1 - f0, eps).view_as(x)
    return (x0 + delta).clamp(0, 1)


class _Budget:
    """The feasible set {||x - x0||_p <= eps} ∩ [0, 1] of a batch of flat (n, D) points, with what
    its projection needs precomputed (the Linf box bounds, the L1 box room)."""

    def __init__(self, x0: Tensor, eps: Tensor, p: float):
        self.x0, self.eps, self.p = x0, eps, p
        if p == INF:
            e = eps.unsqueeze(1)
            self.lo, self.hi = (x0 - e).clamp_min_(0), (x0 + e).clamp_max_(1)
        elif p == 1:
            self.lo, self.hi = x0.neg(), 1 - x0

    def subset(self, keep: Tensor) -> "_Budget":
        return _Budget(self.x0[keep], self.eps[keep], self.p)

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


# ----------------------------------------------------------------------------- PGD
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

    def step_(self, x: Tensor, g: Tensor, step: Tensor, budget: _Budget, t: int) -> Tensor:
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
        budget = _Budget(xs, es, self.p)
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
        budget = _Budget(x0f, e, self.p)
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
