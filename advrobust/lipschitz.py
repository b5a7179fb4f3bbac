"""Lipschitz estimates of a trained classifier: lower bounds from gradients, upper bounds from weights.

Two functions of the input are estimated (see ``docs/analysis.md``):

``margin``
    ``m_y(x) = f_y(x) - max_{j != y} f_j(x)``, the quantity an attack drives below zero. Its
    Lipschitz constant is taken from the attack norm ``||.||_p`` on inputs to ``|.|`` on the
    margin, and maximised over the class ``y``; it is what bounds a radius from below:
    ``radius_y(x) >= m_y(x) / Lip(m_y)``.
``logit``
    the map ``x -> f(x)`` from ``(R^D, ||.||_2)`` to ``(R^K, ||.||_2)``; its local constant is the
    spectral norm of the input Jacobian.

Every number says which way it bounds the true global constant:

- lower bounds (``lower*``): the largest local constant found (gradient dual norm, Jacobian
  spectral norm) at training points, at points on segments between training points and after a
  stochastic hill climb from the best points, plus secants ``(m(x) - m(x_adv)) / ||x_adv - x||``
  along the attacks' paths. The true constant is at least this.
- upper bounds (``upper``): products of the layers' operator norms (ReLU is 1-Lipschitz in every
  Lp norm), minimised over the intermediate norms l1, l2, linf. The true constant is at most this
  (exact up to floating point when every layer's norm is computed exactly; see ``upper_exact``).

Command line (:mod:`advrobust.cli.lipschitz`)::

    python -m advrobust.lipschitz RUN_DIR [--norm l2] [--ascent-steps 100] [--json]

writes ``lipschitz.json`` in the run directory (atomically; estimates for other norms already in
the file are kept under ``by_norm``). In Python: :func:`lipschitz_run` with a :class:`LipschitzConfig`.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import jacrev, vmap

from attacks.losses import label_margin

from .errors import UserError
from .models import named_leaves
from .norms import INF, NORMS, dual, lp_norm, norm_name, parse_norm, row_norm
from ._progress import bar

from . import configs, runs
from ._stats import median
from .models import select_device

_NORMS = tuple(NORMS.values())  # 1, 2, inf: the candidate norms of the intermediate representations
# Above this many matrix entries a convolution's L2 operator norm comes from power iteration
# instead of an exact SVD of the explicit matrix (a digits-sized conv is a few thousand entries).
_EXPLICIT_CONV_MAX_ENTRIES = 4_000_000


# --------------------------------------------------------------------------- layers
def flatten_layers(model: nn.Module) -> list[nn.Module]:
    """The model's leaf modules in call order (nested ``nn.Sequential`` are unrolled).

    Raises
    ------
    UserError
        If the model is not built from ``nn.Sequential`` containers (we cannot know its call order).
    """
    if not isinstance(model, nn.Sequential):
        raise UserError(f"Lipschitz upper bounds need an nn.Sequential model, got {type(model).__name__}; "
                        "build models with advrobust.models.build_model")
    return [layer for _, layer in named_leaves(model)]


def _conv_apply(layer: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
    return nn.functional.conv2d(v, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def _conv_apply_t(layer: nn.Conv2d, u: torch.Tensor, in_shape: Sequence[int]) -> torch.Tensor:
    """Adjoint of the (bias-free) convolution, via conv_transpose2d with the output padding that
    restores the input's spatial size."""
    out_pad = []
    for i in range(2):
        size = (u.shape[2 + i] - 1) * layer.stride[i] - 2 * layer.padding[i] \
            + layer.dilation[i] * (layer.kernel_size[i] - 1) + 1
        out_pad.append(int(in_shape[1 + i]) - size)
    return nn.functional.conv_transpose2d(u, layer.weight, None, layer.stride, layer.padding,
                                          tuple(out_pad), layer.groups, layer.dilation)


def conv_spectral_norm(layer: nn.Conv2d, in_shape: Sequence[int], *, iters: int = 200, seed: int = 0) -> float:
    """L2 operator norm of a bias-free ``Conv2d`` acting on inputs of shape ``in_shape`` (C, H, W).

    Power iteration on ``A^T A`` with ``A`` applied by ``conv2d`` and ``A^T`` by
    ``conv_transpose2d`` (the convolution as a linear operator, padding and stride included, not
    the reshaped kernel). Power iteration approaches the norm from below.
    """
    gen = torch.Generator().manual_seed(seed)
    w = layer.weight.detach()
    v = torch.randn((1, *in_shape), generator=gen, dtype=w.dtype).to(w.device)
    v = v / v.norm()
    sigma = 0.0
    with torch.no_grad():
        for _ in range(iters):
            u = _conv_apply(layer, v)
            v = _conv_apply_t(layer, u, in_shape)
            nv = v.norm()
            if nv == 0:
                return 0.0
            v = v / nv
            new = float(_conv_apply(layer, v).norm())
            if abs(new - sigma) <= 1e-7 * max(new, 1e-30):
                sigma = new
                break
            sigma = new
    return sigma


def _conv_matrix(layer: nn.Conv2d, in_shape: Sequence[int]) -> torch.Tensor:
    """The convolution (bias-free) as an explicit (out_numel, in_numel) matrix."""
    n_in = int(torch.tensor(in_shape).prod())
    w = layer.weight.detach()
    eye = torch.eye(n_in, dtype=w.dtype, device=w.device).reshape(n_in, *in_shape)
    with torch.no_grad():
        cols = _conv_apply(layer, eye).reshape(n_in, -1)  # (in_numel, out_numel)
    return cols.T


def _dense_op_norms(w: torch.Tensor) -> dict[tuple[float, float], float]:
    """Exactly computable induced norms ||W||_{a->b} of a matrix W (out, in)."""
    w = w.detach().double()
    return {
        (1.0, 1.0): float(w.abs().sum(0).max()),
        (1.0, 2.0): float(w.norm(dim=0).max()),
        (1.0, INF): float(w.abs().max()),
        (2.0, 2.0): float(torch.linalg.matrix_norm(w, ord=2)),
        (2.0, INF): float(w.norm(dim=1).max()),
        (INF, INF): float(w.abs().sum(1).max()),
    }


def _conv_op_norms(layer: nn.Conv2d, in_shape: Sequence[int], seed: int) -> tuple[dict, bool]:
    """Induced norms of a convolution on inputs of ``in_shape``; (norms, exact)."""
    n_in = int(torch.tensor(in_shape).prod())
    with torch.no_grad():
        out_shape = _conv_apply(layer, torch.zeros((1, *in_shape), dtype=layer.weight.dtype,
                                                    device=layer.weight.device)).shape[1:]
    n_out = int(torch.tensor(out_shape).prod())
    if n_in * n_out <= _EXPLICIT_CONV_MAX_ENTRIES:
        return _dense_op_norms(_conv_matrix(layer, in_shape)), True
    # Large: row / column sums through convolutions of |K| and K^2 with all-ones maps (exact),
    # the L2 norm by power iteration (a lower estimate of the true norm).
    w = layer.weight.detach().double()
    absl = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.dilation, layer.groups, bias=False).double().to(w.device)
    with torch.no_grad():
        ones_in = torch.ones((1, *in_shape), dtype=torch.float64, device=w.device)
        ones_out = torch.ones((1, *out_shape), dtype=torch.float64, device=w.device)
        absl.weight.copy_(w.abs())
        row_abs = _conv_apply(absl, ones_in)
        col_abs = _conv_apply_t(absl, ones_out, in_shape)
        absl.weight.copy_(w * w)
        row_sq = _conv_apply(absl, ones_in)
        col_sq = _conv_apply_t(absl, ones_out, in_shape)
    norms = {
        (1.0, 1.0): float(col_abs.max()),
        (1.0, 2.0): float(col_sq.max().sqrt()),
        (1.0, INF): float(w.abs().max()),
        (2.0, 2.0): conv_spectral_norm(layer, in_shape, seed=seed),
        (2.0, INF): float(row_sq.max().sqrt()),
        (INF, INF): float(row_abs.max()),
    }
    return norms, False


def _identity_factor(a: float, b: float, dim: int) -> float:
    """Smallest c with ||z||_b <= c ||z||_a for z in R^dim."""
    if a == b:
        return 1.0
    inv = lambda r: 0.0 if r == INF else 1.0 / r  # noqa: E731
    return float(dim) ** max(0.0, inv(b) - inv(a))


def _relax(state: dict[float, float], dim: int) -> dict[float, float]:
    """Allow switching the norm of an intermediate representation (cost: the identity's norm)."""
    return {b: min(state[a] * _identity_factor(a, b, dim) for a in _NORMS) for b in _NORMS}


def _margin_bound(w: torch.Tensor, prefix: dict[float, float]) -> float:
    """``max_{y != j} min_a prefix[a] * ||w_y - w_j||_{a*}``: the margin bound through the last
    layer ``w`` (K, h), with ``prefix[a]`` the bound up to its input measured in norm ``a``."""
    k = w.shape[0]
    diff = (w.unsqueeze(1) - w.unsqueeze(0)).reshape(k * k, -1)  # rows w_y - w_j
    off = ~torch.eye(k, dtype=torch.bool).reshape(-1)
    diff = diff[off]
    per_pair = torch.full((diff.shape[0],), INF, dtype=torch.float64)
    for a in _NORMS:
        if math.isfinite(prefix[a]):
            per_pair = torch.minimum(per_pair, prefix[a] * row_norm(diff, dual(a)))
    return float(per_pair.max())


def upper_bounds(model: nn.Module, input_shape: Sequence[int], *, norm: float = 2.0, seed: int = 0) -> dict:
    """Upper bounds on the Lipschitz constants of the margin functions and of the logit map.

    Product of the layers' operator norms: ``Linear`` and ``Conv2d`` by their induced norms,
    ``ReLU`` and ``Flatten`` 1-Lipschitz, biases irrelevant. The norm of each intermediate
    representation is chosen among l1, l2, linf to minimise the product (a dynamic programme;
    every choice gives a valid bound). The margin bound treats the last ``Linear`` together with
    the difference rows ``e_y - e_j``: ``max_{y != j} min_a L_a * ||W_L^T (e_y - e_j)||_{a*}``.

    Parameters
    ----------
    model : nn.Sequential of Flatten, Linear, Conv2d, ReLU
    input_shape : shape of one input, e.g. (1, 8, 8) or (64,)
    norm : input norm for the margin bound (1, 2 or inf); the logit bound is always l2 -> l2.

    Returns
    -------
    dict with ``margin``, ``logit`` (floats, or None with ``reason`` when a layer is unsupported),
    ``exact`` (False if a convolution's L2 norm came from power iteration) and per-layer norms.
    """
    # One dynamic programme over the layers (its state is the two dicts below); the docstring is a quarter.
    p = parse_norm(norm)
    layers = flatten_layers(model)
    shape = tuple(int(s) for s in input_shape)
    exact = True
    per_layer: list[dict] = []
    # state[a] = upper bound on Lip from (input, ||.||_p) to (current, ||.||_a)
    dim = int(torch.tensor(shape).prod())
    state_m = _relax({a: (1.0 if a == p else INF) for a in _NORMS}, dim)
    state_l = _relax({a: (1.0 if a == 2.0 else INF) for a in _NORMS}, dim)
    last_linear = max((i for i, l in enumerate(layers) if isinstance(l, nn.Linear)), default=None)
    margin_prefix: dict[float, float] | None = None
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear) and i == last_linear:
            margin_prefix = dict(state_m)
        if isinstance(layer, (nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout)):
            if isinstance(layer, nn.Flatten):
                shape = (int(torch.tensor(shape).prod()),)
            per_layer.append({"layer": type(layer).__name__, "norms": None})
            continue
        if isinstance(layer, nn.Linear):
            ops = _dense_op_norms(layer.weight)
            shape = (layer.out_features,)
        elif isinstance(layer, nn.Conv2d):
            if len(shape) != 3:
                return {"margin": None, "logit": None, "exact": False,
                        "reason": f"Conv2d expects (C, H, W) inputs, got {shape}"}
            ops, ex = _conv_op_norms(layer, shape, seed)
            exact = exact and ex
            with torch.no_grad():
                shape = tuple(_conv_apply(layer, torch.zeros((1, *shape), dtype=layer.weight.dtype,
                                                              device=layer.weight.device)).shape[1:])
        else:
            return {"margin": None, "logit": None, "exact": False,
                    "reason": f"layer {type(layer).__name__} has no operator-norm rule "
                              "(supported: Flatten, Linear, Conv2d, ReLU)"}
        per_layer.append({"layer": type(layer).__name__,
                          "norms": {f"{norm_name(a)}->{norm_name(b)}": v for (a, b), v in ops.items()}})
        new_m = {b: INF for b in _NORMS}
        new_l = {b: INF for b in _NORMS}
        for (a, b), v in ops.items():
            new_m[b] = min(new_m[b], state_m[a] * v)
            new_l[b] = min(new_l[b], state_l[a] * v)
        dim = int(torch.tensor(shape).prod())
        state_m, state_l = _relax(new_m, dim), _relax(new_l, dim)
    logit = state_l[2.0]
    margin = None
    reason = None
    if margin_prefix is None or last_linear != max(i for i, l in enumerate(layers)
                                                   if not isinstance(l, (nn.ReLU, nn.Flatten, nn.Identity,
                                                                         nn.Dropout))):
        reason = "the margin bound needs a final nn.Linear layer"
    else:
        w = layers[last_linear].weight.detach().double()  # (K, h)
        if w.shape[0] < 2:
            reason = "the margin needs at least two classes"
        else:
            margin = _margin_bound(w, margin_prefix)
    out = {"margin": margin, "logit": logit, "exact": exact, "layers": per_layer,
           "method": "product of layer operator norms, intermediate norms chosen among l1/l2/linf"}
    if reason:
        out["reason"] = reason
    return out


# --------------------------------------------------------------------------- lower bounds
def _jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, K) and input Jacobians (B, K, D) of a batch."""
    def single(z):
        return model(z.unsqueeze(0)).squeeze(0)

    with torch.no_grad():
        logits = model(x)
    if not torch.isfinite(logits).all():
        raise UserError("the model produced NaN or infinite logits; check the checkpoint and the inputs")
    jac = vmap(jacrev(single))(x)
    return logits, jac.reshape(x.shape[0], logits.shape[1], -1)


def _local_constants(model: nn.Module, x: torch.Tensor, p: float,
                     labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point: the largest margin gradient dual norm over classes (or for ``labels`` only)
    and the Jacobian's spectral norm."""
    logits, jac = _jacobian(model, x)
    b, k, _ = jac.shape
    q = dual(p)
    # for each class y: active competitor j*(y) = argmax_{j != y} f_j
    masked = logits.unsqueeze(1).expand(b, k, k).clone()  # [b, y, j]
    idx = torch.arange(k, device=x.device)
    masked[:, idx, idx] = -INF
    jstar = masked.argmax(dim=2)  # (b, k)
    grads = jac - jac.gather(1, jstar.unsqueeze(2).expand_as(jac))  # (b, k, D): grad of m_y
    gnorm = row_norm(grads, q)  # (b, k)
    if labels is not None:
        margin_c = gnorm.gather(1, labels.view(-1, 1)).squeeze(1)
    else:
        margin_c = gnorm.amax(dim=1)
    spec = torch.linalg.matrix_norm(jac.double(), ord=2).to(jac.dtype)
    return margin_c.detach(), spec.detach()


def _batched(fn, x: torch.Tensor, batch_size: int):
    outs = [fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return tuple(torch.cat(t) for t in zip(*outs))


def _hill_climb(model, starts: torch.Tensor, value: torch.Tensor, which: int, p: float, *, steps: int,
                step0: float, gen: torch.Generator, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise a local constant (which=0: margin gradient norm, 1: Jacobian spectral norm) by
    random-direction hill climbing with per-point adaptive step sizes, inside the box [lo, hi].

    The local constants of a ReLU network are piecewise constant in x (their gradient vanishes
    almost everywhere), so gradient ascent on them cannot move; random steps that cross into other
    linear regions can.
    """
    x = starts.clone()
    best = value.clone()
    sigma = torch.full((x.shape[0],), step0, dtype=x.dtype, device=x.device)
    for _ in range(steps):
        d = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        d = d / d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
        cand = (x + sigma.view(-1, *([1] * (x.ndim - 1))) * d).clamp(lo, hi)
        vals = _local_constants(model, cand, p)[which]
        better = vals > best
        x = torch.where(better.view(-1, *([1] * (x.ndim - 1))), cand, x)
        best = torch.where(better, vals, best)
        sigma = torch.where(better, sigma * 1.5, sigma * 0.85).clamp(step0 * 1e-3, step0 * 10)
    return x, best


def attack_secants(model: nn.Module | None, results: Mapping[str, Any], x_split: torch.Tensor | None,
                   *, norm: float) -> dict:
    """Lower bounds on the margin's Lipschitz constant along the attacks' paths.

    For each sample with clean margin ``m > 0`` and a verified finite radius ``r`` (attack results
    ``margin`` and ``best_radius``), ``m(x_adv) <= 0`` gives ``Lip(m_y) >= m / r``. With the model
    and the clean inputs the exact secant ``(m(x) - m(x_adv)) / ||x_adv - x||_p`` is used too
    (larger: ``m(x_adv)`` is usually below zero).

    Returns
    -------
    dict: ``ratio_max``, ``ratio_median``, ``ratio_count``, ``secant_max`` (None without the model).
    """
    p = parse_norm(norm)
    margin = np.asarray(results["margin"], dtype=np.float64)
    radius = np.asarray(results["best_radius"], dtype=np.float64)
    ok = (margin > 0) & np.isfinite(radius) & (radius > 0)
    ratio = margin[ok] / radius[ok]
    out = {"ratio_max": float(ratio.max()) if ratio.size else None,
           "ratio_median": median(ratio) if ratio.size else None,
           "ratio_count": int(ratio.size), "secant_max": None}
    if model is not None and x_split is not None and "adv" in results and ratio.size:
        idx = torch.as_tensor(np.asarray(results["index"])[ok], dtype=torch.long)
        labels = torch.as_tensor(np.asarray(results["label"])[ok], dtype=torch.long)
        x = x_split[idx]
        adv = torch.as_tensor(np.asarray(results["adv"])[ok]).to(x.dtype).reshape(x.shape)
        with torch.no_grad():
            m_x = label_margin(model(x), labels)
            m_a = label_margin(model(adv), labels)
            dist = lp_norm(adv - x, p)
        good = dist > 0
        if good.any():
            out["secant_max"] = float(((m_x - m_a)[good] / dist[good]).max())
    return out


def _ascent_lower(model: nn.Module, cand_x: torch.Tensor, cand_m: torch.Tensor, cand_s: torch.Tensor, p: float,
                  steps: int, points: int, gen: torch.Generator, lo: float, hi: float) -> tuple:
    """Hill climbs from the ``points`` candidates of largest local margin (``cand_m``) and logit
    (``cand_s``) constant; returns the largest constants reached (None, None when ``steps`` is 0)."""
    if steps <= 0:
        return None, None
    k = min(points, cand_x.shape[0])
    step0 = 0.05 * float(cand_x.reshape(cand_x.shape[0], -1).norm(dim=1).mean().clamp_min(1e-6))
    top = cand_m.topk(k).indices
    _, vm = _hill_climb(model, cand_x[top], cand_m[top], 0, p, steps=steps, step0=step0, gen=gen, lo=lo, hi=hi)
    top = cand_s.topk(k).indices
    _, vs = _hill_climb(model, cand_x[top], cand_s[top], 1, p, steps=steps, step0=step0, gen=gen, lo=lo, hi=hi)
    return float(vm.max()), float(vs.max())


def _best_lower(margin: dict, logit: dict, secants: dict) -> None:
    """Set ``lower`` and ``lower_method`` of both sections: the largest of their lower bounds
    (for the margin, the attack secants' too)."""
    for sec, keys in ((margin, ("lower_gradient", "lower_segments", "lower_ascent")),
                      (logit, ("lower_gradient", "lower_segments", "lower_ascent"))):
        cands = {k: sec[k] for k in keys if sec.get(k) is not None}
        if sec is margin:
            for split, s in secants.items():
                for key in ("ratio_max", "secant_max"):
                    if s.get(key) is not None:
                        cands[f"attack_{split}_{key.split('_')[0]}"] = s[key]
        best = max(cands, key=cands.get)
        sec["lower"] = cands[best]
        sec["lower_method"] = best


def _add_upper(margin: dict, logit: dict, ub: dict) -> None:
    """Copy the upper bounds of :func:`upper_bounds` into both sections, with the ratio to ``lower``."""
    margin["upper"] = ub["margin"]
    logit["upper"] = ub["logit"]
    for sec in (margin, logit):
        sec["upper_method"] = ub["method"]
        sec["upper_exact"] = ub["exact"]
        if sec["upper"] is None:
            sec["upper_reason"] = ub.get("reason")
        sec["ratio_upper_lower"] = (sec["upper"] / sec["lower"]) if sec["upper"] is not None and sec["lower"] > 0 \
            else None


def estimate_lipschitz(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, *, norm: float = 2.0,
                       ascent_steps: int = 100, ascent_points: int = 16, segments: int = 256,
                       batch_size: int = 256, seed: int = 0,
                       attack_results: Mapping[str, tuple[Mapping[str, Any], torch.Tensor | None]] | None = None,
                       progress: bool = False) -> dict:
    """Lower and upper estimates of the Lipschitz constants of a classifier's margin and logits.

    Parameters
    ----------
    model : nn.Sequential (eval mode) mapping inputs in [0, 1] to logits
    x_train, y_train : training inputs (N, ...) and labels (N,)
    norm : input norm of the margin estimates (1, 2 or inf; the gradient is measured in the dual norm)
    ascent_steps : hill-climbing steps from the ``ascent_points`` best points (0 disables)
    segments : number of random pairs of training points whose segment is sampled at t = 1/4, 1/2, 3/4
    seed : seeds the segment pairs and the hill climb (deterministic)
    attack_results : optional ``{split: (npz_dict, x_split)}`` from ``attack-<norm>-<split>.npz``
        (same norm), for the secant lower bounds along the attacks' paths
    progress : show a bar naming the stage (gradients, segments, ascent, secants, upper bound) once
        the estimate takes 2 s

    Returns
    -------
    dict with ``margin`` and ``logit`` sections, each with ``lower`` (a lower bound: the true
    constant is at least this), ``lower_method``, the individual lower bounds, and ``upper`` (an
    upper bound, or None with ``upper_reason``). ``margin`` is Lip from ``(R^D, ||.||_norm)``
    to ``R`` of ``m_y``, maximised over classes ``y``; ``logit`` is l2 -> l2.
    """
    # The stages in order (the progress bar names them), each a call; the docstring is a third of it.
    p = parse_norm(norm)
    if x_train.ndim < 2 or y_train.shape != (x_train.shape[0],):
        raise UserError(f"x_train must be (N, ...) and y_train (N,), got {tuple(x_train.shape)} and "
                        f"{tuple(y_train.shape)}")
    if x_train.shape[0] == 0:
        raise UserError("no training points to estimate Lipschitz constants on")
    if not torch.isfinite(x_train).all():
        raise UserError("training inputs contain NaN or infinite values")
    model.eval()
    t0 = time.perf_counter()
    dev = next(model.parameters()).device
    x = x_train.to(dev).float()
    gen = torch.Generator().manual_seed(int(seed))
    fn = lambda z: _local_constants(model, z, p)  # noqa: E731

    steps = bar(desc="lipschitz", total=5, unit="stage", enabled=progress)

    def stage(name: str) -> None:
        steps.set_description_str(f"lipschitz: {name}")
        steps.update(0 if name == "gradients at training points" else 1)

    stage("gradients at training points")
    m_train, s_train = _batched(fn, x, batch_size)
    stage("segments")
    lo, hi = float(min(0.0, x.min())), float(max(1.0, x.max()))
    # segments between random pairs of training points
    m_seg = s_seg = torch.zeros(0)
    if segments > 0 and x.shape[0] > 1:
        i = torch.randint(0, x.shape[0], (segments,), generator=gen)
        j = torch.randint(0, x.shape[0], (segments,), generator=gen)
        ts = torch.tensor([0.25, 0.5, 0.75], dtype=x.dtype)
        pts = torch.cat([x[i] + t * (x[j] - x[i]) for t in ts])
        m_seg, s_seg = _batched(fn, pts, batch_size)
    # hill climb from the best points (training or segment points)
    cand_x = torch.cat([x, pts]) if m_seg.numel() else x
    cand_m = torch.cat([m_train, m_seg]) if m_seg.numel() else m_train
    cand_s = torch.cat([s_train, s_seg]) if m_seg.numel() else s_train
    stage("gradient ascent")
    m_asc, s_asc = _ascent_lower(model, cand_x, cand_m, cand_s, p, ascent_steps, ascent_points, gen, lo, hi)
    margin = {"lower_gradient": float(m_train.max()), "lower_gradient_median": median(m_train.detach().cpu().numpy()),
              "lower_segments": float(m_seg.max()) if m_seg.numel() else None, "lower_ascent": m_asc}
    logit = {"lower_gradient": float(s_train.max()), "lower_gradient_median": median(s_train.detach().cpu().numpy()),
             "lower_segments": float(s_seg.max()) if s_seg.numel() else None, "lower_ascent": s_asc}
    secants = {}
    stage("attack secants")
    for split, (res, xs) in (attack_results or {}).items():
        secants[split] = attack_secants(model, res, None if xs is None else xs.to(dev).float(), norm=p)
    margin["attack"] = secants
    _best_lower(margin, logit, secants)
    stage("upper bound")
    ub = upper_bounds(model, tuple(x.shape[1:]), norm=p, seed=seed)
    steps.update()
    steps.close()
    _add_upper(margin, logit, ub)
    margin["input_norm"], margin["output"] = norm_name(p), "margin (abs)"
    logit["input_norm"], logit["output"] = "l2", "logits (l2)"
    return {"norm": norm_name(p), "margin": margin, "logit": logit, "layers": ub["layers"],
            "n_points": int(x.shape[0]), "segments": int(segments), "ascent_steps": int(ascent_steps),
            "ascent_points": int(ascent_points), "seed": int(seed),
            "wall_time_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- scale
def input_scale(x_train: torch.Tensor | None, meta: Mapping[str, Any] | None = None) -> tuple[float | None, str]:
    """Typical L2 size ``s`` of a centred data point, for the law's unit-scale convention.

    The law's data have ``||x|| ~ 1``; ours live in [0, 1]^d around their mean. In order:
    synthetic data (``sphere``, ``gaussian``): ``meta["scale"]``, the radius ``r`` of the
    embedding ``x = 0.5 + r z`` (z of unit scale), exact; other data: ``meta["mean_l2_centered"]``
    when recorded, else ``meta["scale"]``, else the mean L2 norm of the centred training points.
    A Lipschitz constant ``L`` in input units is ``L * s`` in unit scale; a radius ``r`` is ``r / s``.

    Returns ``(s, source)``; ``(None, reason)`` when neither meta nor points are given.
    """
    meta = meta or {}
    ok = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0  # noqa: E731
    if meta.get("name") in ("sphere", "gaussian") and ok(meta.get("scale")):
        return float(meta["scale"]), "data meta scale (radius of the synthetic embedding)"
    if ok(meta.get("mean_l2_centered")):
        return float(meta["mean_l2_centered"]), "data meta mean_l2_centered"
    if ok(meta.get("scale")):
        return float(meta["scale"]), "data meta scale"
    if x_train is None:
        return None, "no data meta and no training points"
    f = x_train.reshape(x_train.shape[0], -1).double()
    return float((f - f.mean(0)).norm(dim=1).mean()), "mean L2 norm of centred training points"


# --------------------------------------------------------------------------- runs
#: ``format`` of the lipschitz.json this code writes; files without one (version 1) lack ``config``
LIPSCHITZ_FORMAT = "advrobust-lipschitz/2"


@dataclass(frozen=True)
class LipschitzConfig:
    """How :func:`lipschitz_run` estimates a run's constants (``python -m advrobust.lipschitz``'s
    options; the defaults are the command's). Checked on construction; the norm name is made
    canonical, so a recorded :meth:`to_dict` rebuilds an equal config."""

    # input norm of the margin estimates
    norm: str = "l2"
    # hill-climbing steps on the local gradient norm for the lower bound (0: none), from the
    # ascent_points points with the largest gradient norm
    ascent_steps: int = 100
    ascent_points: int = 16
    # random pairs of training points whose segments are sampled for the lower bound
    segments: int = 256
    # use only the first max_points training points (None: all)
    max_points: int | None = None
    # seeds the segments' random pairs and the hill climb
    seed: int = 0
    # cpu by default: the estimate is small next to training and attacks
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norm_name(parse_norm(self.norm)))
        for name in ("ascent_steps", "segments", "ascent_points"):
            v = getattr(self, name)
            if not configs.is_int(v) or v < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0")
        if self.max_points is not None and (not configs.is_int(self.max_points) or self.max_points < 1):
            raise UserError("--max-points must be >= 1")
        if not configs.is_int(self.seed):
            raise UserError(f"--seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        """What lipschitz.json holds as ``config``."""
        return configs.to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LipschitzConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a UserError."""
        return configs.from_dict(cls, d, "Lipschitz")


def command_line(run_dir: str | os.PathLike, config: LipschitzConfig) -> str:
    """A ``python -m advrobust.lipschitz`` command equivalent to ``lipschitz_run(run_dir, config)``:
    recorded in lipschitz.json when the library is called directly."""
    return " ".join(["python -m advrobust.lipschitz", str(run_dir), *configs.option_flags(config)])


def lipschitz_run(run_dir: str | os.PathLike, config: LipschitzConfig, *, write: bool = True,
                  progress: bool = True, command: str | None = None) -> dict:
    """Estimate the Lipschitz constants of a run's model (:func:`estimate_lipschitz` on its training
    points, with secants along the attacks' paths where ``attack-<norm>-<split>.npz`` exist).

    With ``write``, the estimate goes into the run's ``lipschitz.json`` (atomically, under the run's
    lock; estimates for other norms already there are kept under ``by_norm``). ``command``: the
    command line recorded (default: :func:`command_line` of the call). Returns the estimate, as
    the command's ``--json`` prints it.
    """
    p = parse_norm(config.norm)
    dev = select_device(config.device)
    run = runs.load_run(run_dir, device=dev)
    torch.manual_seed(config.seed)
    data = run.data
    x, y = data.x_train, data.y_train
    if config.max_points is not None:
        x, y = x[:config.max_points], y[:config.max_points]
    attack_results = {}
    for split in ("train", "test"):
        f = Path(run_dir) / f"{runs.results_stem(norm_name(p), split)}.npz"
        if f.is_file():
            xs = data.x_train if split == "train" else data.x_test
            attack_results[split] = (runs.load_npz(f), xs)
    est = estimate_lipschitz(run.model, x, y, norm=p, ascent_steps=config.ascent_steps,
                             ascent_points=config.ascent_points, segments=config.segments, seed=config.seed,
                             attack_results=attack_results, progress=progress)
    s, src = input_scale(data.x_train, getattr(data, "meta", None))
    est["input_scale"] = s
    est["input_scale_source"] = src
    est["versions"] = runs.versions()
    est["device"] = runs.device_info(dev)
    est["command"] = command if command is not None else command_line(run_dir, config)
    est["format"] = LIPSCHITZ_FORMAT
    est["config"] = config.to_dict()
    if write:
        path = Path(run_dir) / "lipschitz.json"
        with runs.run_lock(run_dir):  # read-modify-write: one writer at a time
            by_norm = {}
            if path.is_file():
                try:
                    old = runs.read_json(path, what="Lipschitz file")
                    by_norm = dict(old.get("by_norm", {})) if isinstance(old, dict) else {}
                except UserError:
                    by_norm = {}
            entry = {k: v for k, v in est.items() if k != "by_norm"}
            by_norm[est["norm"]] = entry
            runs.atomic_write_json(path, {**entry, "by_norm": by_norm})
    return est


if __name__ == "__main__":
    from advrobust.cli._common import run_main
    from advrobust.cli.lipschitz import main

    raise SystemExit(run_main(main))
