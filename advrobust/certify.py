"""Certified lower bounds on minimal adversarial radii of ReLU networks.

Two bounds on the classification margins ``logit_y(x') - logit_j(x')`` (``j != y``) over the
input set ``S(x, eps) = {x' : ||x' - x||_p <= eps} ∩ [0, 1]^d``:

``ibp``
    interval bound propagation (Gowal et al. 2018, "On the effectiveness of interval bound
    propagation for training verifiably robust models"). The input interval is the Linf ball of
    radius ``eps`` intersected with the box, which contains ``S`` for every ``p >= 1``.
``crown``
    a backward linear relaxation of every ReLU (Zhang et al. 2018, "Efficient neural network
    robustness certification with general activation functions", CROWN), with the adaptive
    lower slope (0 or 1, whichever is tighter for the neuron's pre-activation interval). The
    pre-activation bounds of every hidden layer are computed by CROWN itself ("full CROWN") and
    intersected with the IBP bounds; the final margin bound is the larger of the CROWN and the
    IBP bound, so ``crown`` is never looser than ``ibp``.
``crown-ibp``
    CROWN for the margins on top of IBP intermediate bounds (Zhang et al. 2020, CROWN-IBP):
    cheaper, usually looser than ``crown``, never looser than ``ibp``.

Every bound is a *lower* bound on each margin: if it is positive for all ``j``, no point of
``S(x, eps)`` changes the prediction, so the minimal adversarial radius is ``>= eps``.
The linear bounds are concretised over ``S`` exactly (up to floating point) for all three norms:
for Linf, ``S`` is a box; for L2 and L1 we solve ``min a.x'`` over ball ∩ box by a
one-dimensional dual (see ``docs/certify.md``). All arithmetic is in float64.

Models are ``nn.Sequential`` of ``nn.Flatten``, ``nn.Linear``, ``nn.Conv2d`` and ``nn.ReLU``
(nested ``nn.Sequential`` are flattened); any other layer is a :class:`UserError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import UserError
from .models import named_leaves
from .norms import INF, parse_norm
from ._progress import bar

METHODS = ("ibp", "crown", "crown-ibp")
#: neurons whose CROWN bounds are computed in one backward pass: memory is about
#: 2 x CHUNK x (largest layer width) float64 values per tensor, whatever the batch and layer sizes
DEFAULT_CHUNK = 128


# --------------------------------------------------------------------------- the network as ops
@dataclass
class AffineOp:
    """An affine layer on flattened vectors: ``z = W h + b`` with W given as operators."""

    name: str
    in_dim: int
    out_dim: int
    bias: Tensor  # (out_dim,) float64
    fwd: Callable[[Tensor], Tensor]  # (N, in) -> (N, out), no bias
    fwd_abs: Callable[[Tensor], Tensor]  # (N, in) -> (N, out) with |W|, no bias
    bwd: Callable[[Tensor], Tensor]  # (N, out) -> (N, in): rows times W
    dense: Tensor | None = None  # (out, in) when it is a Linear layer


@dataclass
class ReluOp:
    """A ReLU on flattened vectors of length ``dim``."""

    name: str
    dim: int


def parse_network(model: nn.Module, input_shape: tuple[int, ...]) -> list:
    """Translate ``model`` into a list of affine and ReLU ops on flattened float64 vectors.

    Parameters
    ----------
    model : nn.Sequential
        Built from ``nn.Flatten``, ``nn.Linear``, ``nn.Conv2d``, ``nn.ReLU`` only.
    input_shape : tuple of int
        Shape of one input (without the batch dimension).

    Returns
    -------
    list of ``AffineOp`` / ``ReluOp``; consecutive affine layers are kept separate.

    Raises
    ------
    UserError
        For any other layer type (named), or shapes that do not fit.
    """
    if not isinstance(model, nn.Sequential):
        raise UserError(f"certification needs an nn.Sequential of Flatten/Linear/Conv2d/ReLU, got {type(model).__name__}")
    ops: list = []
    shape = tuple(int(s) for s in input_shape)  # current (unbatched) tensor shape
    for name, layer in named_leaves(model):
        label = f"{name or 'model'} ({type(layer).__name__})"
        if isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise UserError(f"layer {label}: only Flatten(start_dim=1, end_dim=-1) is supported by certify")
            shape = (int(np.prod(shape)),)
        elif isinstance(layer, nn.ReLU):
            ops.append(ReluOp(name=label, dim=int(np.prod(shape))))
        elif isinstance(layer, nn.Linear):
            if len(shape) != 1 or shape[0] != layer.in_features:
                raise UserError(f"layer {label} expects {layer.in_features} features but gets shape {list(shape)}")
            w = layer.weight.detach().to(torch.float64)
            b = layer.bias.detach().to(torch.float64) if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
            wa = w.abs()
            ops.append(AffineOp(name=label, in_dim=w.shape[1], out_dim=w.shape[0], bias=b,
                               fwd=lambda h, w=w: h @ w.T, fwd_abs=lambda h, wa=wa: h @ wa.T,
                               bwd=lambda a, w=w: a @ w, dense=w))
            shape = (w.shape[0],)
        elif isinstance(layer, nn.Conv2d):
            ops.append(_conv_op(layer, label, shape))
            c_out = layer.out_channels
            h_out, w_out = _conv_out_hw(layer, shape)
            shape = (c_out, h_out, w_out)
        else:
            raise UserError(f"layer {label} is not supported by certify/exact; models must be built from "
                            "nn.Flatten, nn.Linear, nn.Conv2d and nn.ReLU only")
    if not ops or not isinstance(ops[-1], AffineOp):
        raise UserError("certification needs a model whose last layer is nn.Linear or nn.Conv2d (the logits)")
    return ops


def _conv_out_hw(layer: nn.Conv2d, shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3 or shape[0] != layer.in_channels:
        raise UserError(f"layer Conv2d expects input (C={layer.in_channels}, H, W) but gets shape {list(shape)}")
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros" or layer.groups != 1:
        raise UserError("Conv2d with string padding, non-zero padding mode or groups is not supported by certify")
    outs = []
    for i in range(2):
        n = shape[1 + i] + 2 * layer.padding[i] - layer.dilation[i] * (layer.kernel_size[i] - 1) - 1
        outs.append(n // layer.stride[i] + 1)
    return outs[0], outs[1]


def _conv_op(layer: nn.Conv2d, label: str, shape: tuple[int, ...]) -> AffineOp:
    h_out, w_out = _conv_out_hw(layer, shape)
    c_in, h_in, w_in = shape
    w = layer.weight.detach().to(torch.float64)
    wa = w.abs()
    c_out = w.shape[0]
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    # conv_transpose2d can produce several input sizes; output_padding picks ours
    op = tuple(
        int(n_in - ((n_out - 1) * s - 2 * p + d * (k - 1) + 1))
        for n_in, n_out, s, p, d, k in zip((h_in, w_in), (h_out, w_out), layer.stride, layer.padding,
                                          layer.dilation, layer.kernel_size)
    )
    b = layer.bias.detach().to(torch.float64) if layer.bias is not None else torch.zeros(c_out, dtype=torch.float64, device=w.device)
    bias = b.repeat_interleave(h_out * w_out)  # (C_out * H * W,), channel-major like Flatten

    def fwd(h: Tensor, w: Tensor = w) -> Tensor:
        return F.conv2d(h.reshape(-1, c_in, h_in, w_in), w, **kw).reshape(h.shape[0], -1)

    def fwd_abs(h: Tensor) -> Tensor:
        return F.conv2d(h.reshape(-1, c_in, h_in, w_in), wa, **kw).reshape(h.shape[0], -1)

    def bwd(a: Tensor) -> Tensor:
        out = F.conv_transpose2d(a.reshape(-1, c_out, h_out, w_out), w, output_padding=op, **kw)
        return out.reshape(a.shape[0], -1)

    return AffineOp(name=label, in_dim=c_in * h_in * w_in, out_dim=c_out * h_out * w_out, bias=bias,
                   fwd=fwd, fwd_abs=fwd_abs, bwd=bwd)


# --------------------------------------------------------------------------- input checks
def _prepare(model: nn.Module, inputs: Tensor, labels: Tensor | None, norm) -> tuple[list, Tensor, Tensor | None, float]:
    p = parse_norm(norm)
    if not isinstance(inputs, Tensor):
        raise UserError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim < 2:
        raise UserError(f"inputs must be batched (B, ...), got shape {list(inputs.shape)}")
    if inputs.numel() and (not torch.isfinite(inputs).all() or inputs.min() < 0 or inputs.max() > 1):
        raise UserError("inputs must be finite and lie in [0, 1]; put normalisation inside the model")
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.shape != (inputs.shape[0],):
            raise UserError(f"labels must be a tensor of shape ({inputs.shape[0]},), got "
                            f"{list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")
        labels = labels.to(torch.int64)
    ops = parse_network(model, tuple(inputs.shape[1:]))
    n_classes = ops[-1].out_dim
    if labels is not None and labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise UserError(f"labels must lie in [0, {n_classes - 1}] for a model with {n_classes} outputs")
    if labels is not None and n_classes < 2:
        raise UserError("certification needs a model with at least 2 classes")
    x = inputs.detach().to(torch.float64).reshape(inputs.shape[0], -1)
    return ops, x, labels, p


def _eps_vector(eps, batch: int, device) -> Tensor:
    e = torch.as_tensor(np.asarray(eps, dtype=np.float64) if not isinstance(eps, Tensor) else eps.detach(),
                        dtype=torch.float64, device=device)
    if e.ndim == 0:
        e = e.expand(batch)
    if e.shape != (batch,):
        raise UserError(f"eps must be a scalar or have shape ({batch},), got {list(e.shape)}")
    if not torch.isfinite(e).all() or (e < 0).any():
        raise UserError("eps must be finite and >= 0")
    return e.clone()


def margin_matrix(labels: Tensor, n_classes: int) -> Tensor:
    """Specification matrix ``C`` (B, K-1, K): row ``j`` is ``e_y - e_j`` for each ``j != y``."""
    b = labels.shape[0]
    others = torch.arange(n_classes, device=labels.device).expand(b, n_classes)
    others = others[others != labels.unsqueeze(1)].reshape(b, n_classes - 1)  # (B, K-1)
    c = torch.zeros(b, n_classes - 1, n_classes, dtype=torch.float64, device=labels.device)
    c.scatter_(2, labels.reshape(b, 1, 1).expand(b, n_classes - 1, 1), 1.0)
    c.scatter_(2, others.unsqueeze(2), -1.0)
    return c


def other_classes(labels: Tensor, n_classes: int) -> Tensor:
    """(B, K-1) the classes ``j != y`` in increasing order: column order of the margin bounds."""
    b = labels.shape[0]
    others = torch.arange(n_classes, device=labels.device).expand(b, n_classes)
    return others[others != labels.unsqueeze(1)].reshape(b, n_classes - 1)


# --------------------------------------------------------------------------- concretisation
def _input_box(x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """The Linf ball of radius eps ∩ [0, 1]: contains the Lp ball ∩ box for every p >= 1."""
    e = eps.unsqueeze(1)
    return (x - e).clamp_min(0.0), (x + e).clamp_max(1.0)


def concretize_min(a: Tensor, c: Tensor, x: Tensor, eps: Tensor, p: float) -> Tensor:
    """Lower bound of ``a . x' + c`` over ``{||x' - x||_p <= eps} ∩ [0, 1]^d``.

    Parameters
    ----------
    a : (B, M, D) tensor
    c : (B, M) tensor
    x : (B, D) centres in [0, 1]
    eps : (B,) radii
    p : 1, 2 or inf

    Returns
    -------
    (B, M) lower bounds. Exact minimum for Linf (the set is a box) and L1 (fractional knapsack);
    for L2 the value of the Lagrangian dual at a bisected multiplier, maxed with the box bound
    and the ball bound, each of which is a valid lower bound.
    """
    lo_x, hi_x = _input_box(x, eps)
    lo = (lo_x - x).unsqueeze(1)  # (B, 1, D) delta range, <= 0
    hi = (hi_x - x).unsqueeze(1)  # >= 0
    base = (a * x.unsqueeze(1)).sum(-1) + c  # value at delta = 0
    box_min = (a.clamp_min(0) * lo + a.clamp_max(0) * hi).sum(-1)  # exact over the Linf ball ∩ box
    if p == INF:
        return base + box_min
    e = eps.reshape(-1, 1)
    if p == 1:
        # min a.delta, sum |delta_i| <= eps, lo <= delta <= hi: spend the L1 budget on the
        # coordinates with the largest |a_i|, each up to its room in the direction -sign(a_i).
        mag = a.abs()
        room = torch.where(a > 0, -lo.expand_as(a), hi.expand_as(a))  # >= 0
        mag_s, idx = mag.sort(dim=-1, descending=True)
        room_s = room.gather(-1, idx)
        before = room_s.cumsum(-1) - room_s  # budget used by larger coordinates
        take = torch.minimum(room_s, (e.unsqueeze(-1) - before).clamp_min(0))
        return base - (mag_s * take).sum(-1)
    # L2: weak duality. For lam > 0, g(lam) = sum_i min_{lo<=d<=hi} (a_i d + lam d^2 / 2) - lam eps^2 / 2
    # is a lower bound for every lam; it is maximal where ||d*(lam)|| = eps (bisection, log scale).
    ball_min = -e * a.norm(dim=-1)
    best = torch.maximum(box_min, ball_min)
    with torch.no_grad():
        # ||d*(lam)|| <= ||a|| / lam, so lam_hi = ||a|| / eps is never too long
        lam_hi = (a.norm(dim=-1) / e.clamp_min(1e-300)).clamp(1e-300, 1e300)
        lam_lo = (lam_hi * 1e-12).clamp_min(1e-300)
        for _ in range(60):
            lam = (lam_lo * lam_hi).sqrt()
            d = (-a / lam.unsqueeze(-1)).clamp(lo, hi)
            too_long = (d * d).sum(-1) > (e * e)
            lam_lo = torch.where(too_long, lam, lam_lo)
            lam_hi = torch.where(too_long, lam_hi, lam)
        for lam in (lam_lo, lam_hi):
            d = (-a / lam.unsqueeze(-1)).clamp(lo, hi)
            g = (a * d + 0.5 * lam.unsqueeze(-1) * d * d).sum(-1) - 0.5 * lam * e * e
            best = torch.maximum(best, torch.nan_to_num(g, nan=-INF))  # any lam gives a valid bound
    # eps = 0: the set is the point x
    best = torch.where(e > 0, best, torch.zeros_like(best))
    return base + best


# --------------------------------------------------------------------------- bounds
def _ibp_affine(op: AffineOp, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    m = op.fwd(mid) + op.bias
    r = op.fwd_abs(rad)
    return m - r, m + r


def _relu_relax(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slopes of the linear lower bound (``alpha``, through 0) and of the upper bound
    (``s * (z - lo)``, intercept ``-s * lo``) of relu on [lo, hi], per neuron."""
    active = lo >= 0
    inactive = hi <= 0
    unstable = ~(active | inactive)
    denom = torch.where(unstable, hi - lo, torch.ones_like(hi))
    s = torch.where(unstable, hi / denom, active.to(hi.dtype))
    intercept = torch.where(unstable, -s * lo, torch.zeros_like(lo))
    alpha = torch.where(unstable, (hi >= -lo).to(hi.dtype), active.to(hi.dtype))
    return alpha, s, intercept


def _crown_backward(ops: list, upto: int, a: Tensor, c: Tensor, pre_bounds: dict, x: Tensor, eps: Tensor, p: float) -> Tensor:
    """Lower bound of ``a . z_upto + c`` where ``z_upto`` is the output of op ``upto``.

    ``a`` (B, M, out_dim of ops[upto]) and ``c`` (B, M). ``pre_bounds[k]`` holds (lo, hi) of the
    input of ReLU op ``k``.
    """
    b, m = a.shape[0], a.shape[1]
    for k in range(upto, -1, -1):
        op = ops[k]
        if isinstance(op, AffineOp):
            c = c + a @ op.bias
            a = op.bwd(a.reshape(b * m, -1)).reshape(b, m, -1)
        else:
            lo, hi = pre_bounds[k]
            alpha, s, intercept = _relu_relax(lo, hi)
            pos, neg = a.clamp_min(0), a.clamp_max(0)
            c = c + (neg * intercept.unsqueeze(1)).sum(-1)
            a = pos * alpha.unsqueeze(1) + neg * s.unsqueeze(1)
    return concretize_min(a, c, x, eps, p)


def _refine(ops: list, k: int, lo: Tensor, hi: Tensor, pre: dict, x: Tensor, eps: Tensor, p: float, *,
            unstable_only: bool, chunk: int) -> tuple[Tensor, Tensor]:
    """CROWN bounds on the output neurons of op ``k``, intersected with (lo, hi) from IBP.

    Neurons are refined in chunks of ``chunk`` (sample, neuron) pairs: each chunk is one backward
    pass of ``2 x chunk`` rows (upper and lower bound), so memory does not grow with the layer's
    width squared. With ``unstable_only``, only neurons that IBP leaves unstable (lo < 0 < hi) are
    refined: a stable neuron's ReLU relaxation is exact (identity or zero) whatever its bounds, so
    the bounds of later layers are the same; the next layer's IBP bounds can be looser, and are
    then refined by CROWN in turn.
    """
    bsz, n = lo.shape
    mask = (lo < 0) & (hi > 0) if unstable_only else torch.ones_like(lo, dtype=torch.bool)
    bi, ji = mask.nonzero(as_tuple=True)
    lo, hi = lo.clone(), hi.clone()
    for s in range(0, bi.numel(), chunk):
        b, j = bi[s:s + chunk], ji[s:s + chunk]
        m = b.numel()
        rows = torch.arange(m, device=x.device)
        a = torch.zeros(m, 2, n, dtype=torch.float64, device=x.device)  # (pairs, [lower, -upper], neurons)
        a[rows, 0, j] = 1.0
        a[rows, 1, j] = -1.0
        sub_pre = {q: (pl[b], ph[b]) for q, (pl, ph) in pre.items()}
        v = _crown_backward(ops, k, a, torch.zeros(m, 2, dtype=torch.float64, device=x.device), sub_pre,
                            x[b], eps[b], p)
        lo[b, j] = torch.maximum(lo[b, j], v[:, 0])
        hi[b, j] = torch.minimum(hi[b, j], -v[:, 1])
    return lo, torch.maximum(hi, lo)  # guard against crossing by rounding


def _bounds(ops: list, x: Tensor, eps: Tensor, p: float, method: str, spec: Tensor | None, *,
            chunk: int | None = DEFAULT_CHUNK, unstable_only: bool = True, prior: dict | None = None):
    """Propagate; return (pre-activation bounds per ReLU op index, spec lower bound or None).

    ``prior``: pre-activation bounds per ReLU op index already known to hold over this input set
    (e.g. computed for a larger radius around the same points); they are intersected with the new
    ones before a layer's unstable neurons are chosen, so neurons they prove stable are not refined.

    ``chunk=None`` is the reference implementation: every neuron of a layer at once through an
    identity matrix (memory B x n^2 per layer), kept to check and benchmark the chunked one
    (``experiments/bench_certify_cnn.py``)."""
    if method not in METHODS:
        raise UserError(f"unknown bound method {method!r}; use one of {', '.join(METHODS)}")
    lo, hi = _input_box(x, eps)
    pre: dict[int, tuple[Tensor, Tensor]] = {}
    bsz = x.shape[0]
    last = len(ops) - 1
    for k, op in enumerate(ops):
        if isinstance(op, ReluOp):
            pre[k] = (lo, hi)
            lo, hi = lo.clamp_min(0), hi.clamp_min(0)
            continue
        if k == last and spec is not None:
            break
        nlo, nhi = _ibp_affine(op, lo, hi)
        if prior is not None and k + 1 in prior:
            plo, phi = prior[k + 1]
            nlo, nhi = torch.maximum(nlo, plo), torch.minimum(nhi, phi)
            nhi = torch.maximum(nhi, nlo)
        # full CROWN for pre-activations that feed a ReLU (for the first layer this is the exact
        # bound over ball ∩ box, tighter than IBP's box for L1 and L2)
        if method == "crown" and k + 1 <= last and isinstance(ops[k + 1], ReluOp) and chunk is not None:
            # Linf, first layer: the input set is a box and IBP's bound of one affine layer over a box
            # is exact, so CROWN cannot tighten it (the reference path computes it anyway)
            # L1/L2, first layer: every neuron (the exact bound over ball ∩ box, cheap without ReLUs behind
            # it), since stable neurons' bounds feed the IBP bounds of the next layer
            if not (k == 0 and p == INF and unstable_only):
                nlo, nhi = _refine(ops, k, nlo, nhi, pre, x, eps, p, unstable_only=unstable_only and k > 0,
                                   chunk=chunk)
        elif method == "crown" and k + 1 <= last and isinstance(ops[k + 1], ReluOp):
            n = op.out_dim
            eye = torch.eye(n, dtype=torch.float64, device=x.device).expand(bsz, n, n)
            zero = torch.zeros(bsz, n, dtype=torch.float64, device=x.device)
            clo = _crown_backward(ops, k, eye, zero, pre, x, eps, p)
            chi = -_crown_backward(ops, k, -eye, zero, pre, x, eps, p)
            nlo, nhi = torch.maximum(nlo, clo), torch.minimum(nhi, chi)
            nhi = torch.maximum(nhi, nlo)  # guard against crossing by rounding
        lo, hi = nlo, nhi
    if spec is None:
        return pre, (lo, hi)
    # last affine layer with the margin matrix folded in: spec @ (W h + b)
    op = ops[last]
    n_spec = spec.shape[1]
    c = spec @ op.bias  # (B, M)
    # rows of spec @ W: (B, M, in)
    a = op.bwd(spec.reshape(bsz * n_spec, -1)).reshape(bsz, n_spec, -1)
    # IBP with the folded matrix
    mid, rad = ((hi + lo) / 2).unsqueeze(1), ((hi - lo) / 2).unsqueeze(1)
    ibp = (a * mid).sum(-1) + c - (a.abs() * rad).sum(-1)
    if method == "ibp":
        return pre, ibp
    crown = _crown_backward(ops, last - 1, a, c, pre, x, eps, p) if last > 0 else concretize_min(a, c, x, eps, p)
    return pre, torch.maximum(crown, ibp)


def layer_bounds(model: nn.Module, inputs: Tensor, eps, *, norm, method: str = "crown") -> list[tuple[Tensor, Tensor]]:
    """Bounds on the input of every ReLU over ``{||x' - x||_p <= eps} ∩ [0, 1]^d``.

    Parameters
    ----------
    model : nn.Sequential of Flatten/Linear/Conv2d/ReLU
    inputs : (B, ...) tensor in [0, 1]
    eps : float or (B,) radii
    norm : 1, 2, inf (or 'l1', 'l2', 'linf')
    method : 'ibp', 'crown' or 'crown-ibp'

    Returns
    -------
    list, one ``(lower, upper)`` pair of (B, n) float64 tensors per ReLU in order, followed by the
    bounds on the logits.
    """
    ops, x, _, p = _prepare(model, inputs, None, norm)
    e = _eps_vector(eps, x.shape[0], x.device)
    with torch.no_grad():  # every neuron refined: these bounds are returned, not only relaxed
        pre, logits = _bounds(ops, x, e, p, method, None, unstable_only=False)
    return [pre[k] for k in sorted(pre)] + [logits]


def margin_lower_bounds(model: nn.Module, inputs: Tensor, labels: Tensor, eps, *, norm, method: str = "crown") -> Tensor:
    """Lower bounds on ``logit_y - logit_j`` for every ``j != y`` over the Lp ball ∩ [0, 1]^d.

    Parameters
    ----------
    model : nn.Sequential of Flatten/Linear/Conv2d/ReLU
    inputs : (B, ...) tensor in [0, 1]
    labels : (B,) int64 tensor
    eps : float or (B,) radii
    norm : 1, 2, inf (or 'l1', 'l2', 'linf')
    method : 'ibp', 'crown' (default) or 'crown-ibp'

    Returns
    -------
    (B, K-1) float64 tensor; column ``i`` is the class ``other_classes(labels, K)[:, i]``.
    Every entry is <= the true minimum of that margin over the set.
    """
    ops, x, labels, p = _prepare(model, inputs, labels, norm)
    e = _eps_vector(eps, x.shape[0], x.device)
    spec = margin_matrix(labels.to(x.device), ops[-1].out_dim)
    with torch.no_grad():
        _, lb = _bounds(ops, x, e, p, method, spec)
    return lb


def box_radius(norm, dim: int) -> float:
    """The radius whose ball contains the whole box [0, 1]^d around any point in it."""
    p = parse_norm(norm)
    return {1.0: float(dim), 2.0: math.sqrt(dim), INF: 1.0}[p]


class _Certifier:
    """Certification of points at given radii, cheaper bounds first (the ``cascade`` of methods).

    ``x``, ``spec``: the points (N, D) and their margin matrices. Pre-activation bounds of each
    point at the last radius it failed CROWN at hold at every smaller radius, so they are kept
    and later bisection steps start from them (``prior``).
    """

    def __init__(self, ops: list, x: Tensor, spec: Tensor, p: float, cascade: tuple, chunk: int | None):
        self.ops, self.x, self.spec, self.p, self.cascade, self.chunk = ops, x, spec, p, cascade, chunk
        self.cache: dict[int, tuple[Tensor, Tensor]] | None = None

    def __call__(self, pos: Tensor, eps: Tensor) -> Tensor:
        """(len(pos),) bool: points ``pos`` certified at radii ``eps``; caches CROWN's failures."""
        x, chunk, cache = self.x, self.chunk, self.cache
        ok = torch.zeros(pos.numel(), dtype=torch.bool, device=x.device)
        with torch.no_grad():
            for m in self.cascade:
                todo = torch.nonzero(~ok).flatten()
                if todo.numel() == 0:
                    break
                rows = pos[todo]
                prior = None if cache is None or m != "crown" else {k: (lo[rows], hi[rows]) for k, (lo, hi) in cache.items()}
                pre, lb = _bounds(self.ops, x[rows], eps[todo], self.p, m, self.spec[rows], chunk=chunk,
                                  unstable_only=chunk is not None, prior=prior)
                ok[todo] = (lb > 0).all(1)
                if m == self.cascade[-1] and m == "crown" and chunk is not None:
                    failed = ~ok[todo]
                    if cache is None:
                        n_pts = x.shape[0]
                        cache = self.cache = {
                            k: (torch.full((n_pts, lo.shape[1]), -INF, dtype=torch.float64, device=x.device),
                                torch.full((n_pts, lo.shape[1]), INF, dtype=torch.float64, device=x.device))
                            for k, (lo, _) in pre.items()}
                    for k, (lo, hi) in pre.items():
                        cache[k][0][rows[failed]] = lo[failed]
                        cache[k][1][rows[failed]] = hi[failed]
        return ok


def certified_radii(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm, method: str = "crown",
                    tol: float = 1e-3, eps_hi: float | None = None, progress: bool = False,
                    chunk: int | None = DEFAULT_CHUNK) -> np.ndarray:
    """Largest radius each sample is certified at, by bisection on the margin lower bounds.

    Parameters
    ----------
    model : nn.Sequential of Flatten/Linear/Conv2d/ReLU
    inputs : (B, ...) tensor in [0, 1]
    labels : (B,) int64 tensor
    norm : 1, 2, inf (or 'l1', 'l2', 'linf')
    method : 'ibp', 'crown' (default) or 'crown-ibp'
    tol : float
        Relative width of the final bisection bracket (the result is the bracket's lower end,
        which is certified, so at most a fraction ``tol`` below the largest certifiable radius).
    eps_hi : float, optional
        Upper end of the search. Default: the radius of a ball that covers the whole box
        (1 for Linf, sqrt(d) for L2, d for L1).
    progress : bool
        Show a bar named ``certify <method>`` over the bisection steps (once it runs 2 s).
    chunk : int or None
        CROWN refines at most this many (point, neuron) pairs per backward pass (memory bound);
        ``None``: the reference implementation, every neuron of a layer at once.

    Returns
    -------
    numpy float64 (B,): 0 for misclassified samples (and for samples certified at no positive
    radius), ``inf`` for samples certified over the whole box, ``eps_hi`` for samples certified
    at a user-given ``eps_hi`` smaller than the box radius; otherwise a certified radius within
    relative ``tol`` of the largest the method can certify.
    """
    # Argument checks, then the bisection; certifying a batch at given radii is _Certifier.
    ops, x, labels, p = _prepare(model, inputs, labels, norm)
    if not (tol > 0 and tol < 1):
        raise UserError(f"tol must lie in (0, 1), got {tol}")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise UserError(f"chunk must be a positive integer (or None), got {chunk!r}")
    bsz, dim = x.shape
    full = box_radius(p, dim)
    hi_val = full if eps_hi is None else float(eps_hi)
    if not (hi_val > 0 and math.isfinite(hi_val)):
        raise UserError(f"eps_hi must be a positive finite number, got {eps_hi}")
    out = np.zeros(bsz, dtype=np.float64)
    if bsz == 0:
        return out
    with torch.no_grad():
        logits = model(inputs)
    if not torch.isfinite(logits).all():
        raise UserError("model outputs contain NaN or inf; check the model's weights")
    correct = (logits.argmax(1) == labels.to(logits.device)).cpu().numpy()
    spec = margin_matrix(labels.to(x.device), ops[-1].out_dim)

    # cheaper bounds first (IBP, then CROWN-IBP for crown): a point they certify is certified, and only
    # the others pay for the full method. Every bound is sound, so the decision is the reference's
    # (max of CROWN and IBP) or, where CROWN-IBP happens to beat CROWN, more.
    cascade = {"ibp": ("ibp",), "crown-ibp": ("ibp", "crown-ibp"), "crown": ("ibp", "crown-ibp", "crown")}[method] \
        if chunk is not None and method in METHODS else (method,)

    idx = torch.nonzero(torch.as_tensor(correct, device=x.device)).flatten()
    if idx.numel() == 0:
        return out
    certified = _Certifier(ops, x[idx], spec[idx], p, cascade, chunk)
    hi = torch.full((idx.numel(),), hi_val, dtype=torch.float64, device=x.device)
    at_hi = certified(torch.arange(idx.numel(), device=x.device), hi)
    res = torch.where(at_hi, hi, torch.zeros_like(hi))
    if hi_val >= full:
        res = torch.where(at_hi, torch.full_like(hi, INF), res)
    todo = ~at_hi
    lo = torch.zeros_like(hi)
    # bisection: lo is always certified, hi never (or the search cap). The first steps are
    # geometric (radii span orders of magnitude), then arithmetic.
    floor = hi_val * 1e-9
    # about log2(1 / tol) arithmetic steps after a few geometric ones
    steps = bar(desc=f"certify {method}", total=int(math.ceil(math.log2(1 / tol))) + 12, unit="step",
                enabled=progress)
    for _ in range(200):
        active = todo & ((hi - lo) > tol * torch.maximum(lo, torch.full_like(lo, floor)))
        steps.set_postfix_str(f"{int(active.sum())} of {idx.numel()} points open")
        steps.update()
        if not active.any():
            break
        a = torch.nonzero(active).flatten()
        lo_a, hi_a = lo[a], hi[a]
        mid = torch.where(lo_a > 0, (lo_a + hi_a) / 2, hi_a / 8)
        ok = certified(a, mid)
        lo[a] = torch.where(ok, mid, lo_a)
        hi[a] = torch.where(ok, hi_a, mid)
    steps.close()
    res = torch.where(todo, lo, res)
    out[idx.cpu().numpy()] = res.cpu().numpy()
    return out


# --------------------------------------------------------------------------- soundness checks
def check_bracket(lower, exact, upper, *, rtol: float = 1e-4, atol: float = 1e-7) -> list[dict]:
    """Check ``lower <= exact <= upper`` per sample; return the violations (empty list when sound).

    Parameters
    ----------
    lower : array (B,) or None
        Certified radii (a lower bound on the minimal adversarial radius). NaN = not computed.
    exact : array (B,) or None
        Exact minimal radii. NaN = not computed.
    upper : array (B,) or None
        Attack radii of verified adversarial points (an upper bound). inf = no point found.
    rtol, atol : float
        Tolerance: ``a <= b`` is violated when ``a > b * (1 + rtol) + atol``.

    Returns
    -------
    list of dicts ``{"index", "kind", "lower"/"exact"/"upper" values, "message"}``. An attack
    radius below a certified or exact radius means a bug in the attack's verification, the
    certifier or the MILP: callers should report every violation loudly.
    """
    names = ("certified", "exact", "attack")
    arrays = [None if v is None else np.asarray(v, dtype=np.float64).reshape(-1) for v in (lower, exact, upper)]
    sizes = {a.shape[0] for a in arrays if a is not None}
    if len(sizes) > 1:
        raise UserError(f"check_bracket: arrays have different lengths {sorted(sizes)}")
    out: list[dict] = []
    pairs = [(0, 1), (1, 2), (0, 2)]
    for i, j in pairs:
        a, b = arrays[i], arrays[j]
        if a is None or b is None:
            continue
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(a) & ~np.isnan(b) & (a > b * (1 + rtol) + atol)
        for k in np.nonzero(bad)[0]:
            out.append({"index": int(k), "kind": f"{names[i]}>{names[j]}", names[i]: float(a[k]), names[j]: float(b[k]),
                        "message": f"sample {int(k)}: {names[i]} radius {a[k]:.6g} exceeds {names[j]} radius {b[k]:.6g}"})
    return out


__all__ = ["METHODS", "certified_radii", "margin_lower_bounds", "layer_bounds", "concretize_min",
           "check_bracket", "margin_matrix", "other_classes", "parse_network", "box_radius"]
