"""The losses the attacks ascend or descend, as functions of the logits, and their logit gradients.

- :func:`label_margin`: logit of the label minus the best other (> 0 until the attack succeeds);
- :func:`ce_loss`, :func:`dlr_loss` (Croce & Hein 2020), :func:`pair_loss`, :func:`dlr_pair_loss`;
- :func:`margin_weights`, :func:`logit_weights`: the same losses with their gradient with respect
  to the logits in closed form, as the ``weigh`` argument of :func:`attacks._common.input_grad`
  (which starts the backward pass at the logits, so the loss never enters the autograd graph).

Why closed forms rather than autograd through ``F.cross_entropy`` and friends: they pay.
``python experiments/bench_logit_grads.py --n 200 --repeats 9`` swaps autograd in for them inside
each attack (digits MLPs of width 16 and 512, one thread): autograd takes 1.13x the time of the
whole attack (median over attacks and norms; 1.13-1.46x at width 16, where the loss's autograd
nodes cost as much as the model's, 0.92-1.15x at width 512), and for the cross-entropy its
softmax backward rounds differently, which moves 19-35% of the L2 points of PGD and APGD in the
last bits (radii by up to 7e-6 relative). The margins and DLR give the same points bit for bit
either way. ``tests/test_attack_helpers.py`` checks every closed form against autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .norms import INF


def label_margin(logits: Tensor, labels: Tensor, targeted: bool = False) -> Tensor:
    """Margin that is > 0 while the attack has not succeeded.

    Untargeted: logit[label] - max_{j != label} logit[j]. Targeted (labels are targets):
    max_{j != target} logit[j] - logit[target].
    """
    lab = labels.unsqueeze(1)
    with torch.no_grad():  # index of the best other class; its logit is then gathered, so the
        # backward pass is a cheap scatter (amax's backward is several full-size kernels)
        other = logits.scatter(1, lab, -INF).argmax(dim=1, keepdim=True)
    pair = logits.gather(1, torch.cat((lab, other), 1))
    true, best_other = pair[:, 0], pair[:, 1]
    return best_other - true if targeted else true - best_other


def margin_weights(logits: Tensor, labels: Tensor, targeted: bool = False,
                   onehot: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The margin of :func:`label_margin` and its gradient with respect to the logits.

    For detached ``logits`` (B, C) returns ``(w, margin)``: ``w`` (B, C) is +1 at the label and
    -1 at the best other class (signs flipped when ``targeted``), ``margin`` (B,) as in
    :func:`label_margin`. Pass it to :func:`input_grad` (its ``w`` is the incoming gradient).
    ``onehot``: the labels' one-hot rows (B, C) in the logits' dtype, when the caller keeps them
    across steps (saves two small kernels per call).
    """
    lab = labels.unsqueeze(1)
    best_other, other = logits.scatter(1, lab, -INF).max(dim=1, keepdim=True)
    margin = (logits.gather(1, lab) - best_other).squeeze(1)
    if onehot is None:
        onehot = torch.zeros_like(logits).scatter_(1, lab, 1.0)
    w = onehot.scatter(1, other, -1.0)
    if targeted:
        return w.neg_(), margin.neg_()
    return w, margin


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


def pair_loss(logits: Tensor, rival: Tensor, labels: Tensor) -> Tensor:
    """z_rival - z_label: linear in the logits; positive means the label lost the top place."""
    return logits.gather(1, rival.unsqueeze(1)).squeeze(1) - logits.gather(1, labels.unsqueeze(1)).squeeze(1)


def dlr_pair_loss(logits: Tensor, rival: Tensor, labels: Tensor) -> Tensor:
    """Targeted DLR towards ``rival`` of a sample labelled ``labels`` (AutoAttack's APGD-T)."""
    c = logits.shape[1]
    srt = logits.sort(dim=1, descending=True).values
    scale = (srt[:, 0] - 0.5 * (srt[:, min(2, c - 1)] + srt[:, min(3, c - 1)])).clamp_min(1e-12)
    return pair_loss(logits, rival, labels) / scale


def logit_weights(kind: str, labels: Tensor, rival: Tensor | None, targeted: bool, num_classes: int,
                  dtype: torch.dtype, with_loss: bool = True):
    """A loss below as a ``weigh`` function for :func:`attacks._common.input_grad`.

    ``kind``: ``"ce"`` (:func:`ce_loss`), ``"dlr"`` (:func:`dlr_loss`, untargeted, or targeted at
    ``labels`` when ``targeted``), ``"pair"`` (:func:`pair_loss`), ``"dlr-pair"``
    (:func:`dlr_pair_loss`: push ``rival`` above ``labels``).
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
        return w, (loss if with_loss else None)
    return weigh
