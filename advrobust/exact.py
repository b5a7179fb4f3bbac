"""Exact minimal adversarial radii of small ReLU MLPs by mixed-integer programming.

For a sample ``x`` of class ``y`` and each target class ``j != y`` we solve

    minimise ||x' - x||_p  subject to  x' in [0, 1]^d,  ||x' - x||_p <= R,
                                       logits(x')_j >= logits(x')_y,

with the network encoded exactly: one continuous variable per pre-activation and per unstable
ReLU output, and one binary per unstable ReLU with the big-M constraints of Tjeng, Xiao,
Tedrake, "Evaluating robustness of neural networks with mixed integer programming" (ICLR 2019):

    a >= 0,  a >= z,  a <= z - l (1 - b),  a <= u b,  b in {0, 1},

where ``[l, u]`` bounds the pre-activation ``z`` over the ball of radius ``R`` ∩ box (computed by
:mod:`advrobust.certify`, CROWN). ReLUs proven active are the identity and proven inactive are
the constant 0 (no binary). ``R`` is a radius known to contain an adversarial point (an attack's
radius, ``upper``), or the radius of the whole box when none is given.

Linf and L1 are MILPs solved by HiGHS through ``scipy.optimize.milp``; L2 is an MIQP (a convex
quadratic epigraph constraint) solved by SCIP through ``pyscipopt``
(``pip install advrobust[exact]``). Every solution is checked with a fresh forward pass of the
model; the radius reported is the norm of that checked point.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .errors import UserError
from .models import named_leaves
from .norms import INF, parse_norm, row_norm
from ._progress import bar
from .certify import (ReluOp, box_radius, certified_radii, layer_bounds, margin_lower_bounds,
                      other_classes, parse_network)

STATUS = {0: "optimal", 1: "time limit (bounds only)", 2: "infeasible or error", -1: "not run"}
REL_GAP = 1e-6  # relative optimality gap asked of the solvers
_MARGIN = 1e-6  # a verified point must beat the label by this much (relative to the logits' scale, >= 1e-2)
_ROUNDING = 4  # ... and by this many units of roundoff of the logits' magnitudes (see _roundoff)
_TIES = (3e-6, 1e-4)  # margins demanded when the optimum is an unbreakable tie (relative to the logits' scale)
_WIDEN = 1e-7  # relative widening of the big-M bounds, against rounding in the bound computation


@dataclass
class _Program:
    """A mixed-integer program with linear constraints, built row by row."""

    lb: list = field(default_factory=list)
    ub: list = field(default_factory=list)
    integer: list = field(default_factory=list)
    obj: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # (indices, values, row_lb, row_ub)

    def var(self, lb: float, ub: float, *, integer: bool = False, obj: float = 0.0) -> int:
        self.lb.append(float(lb))
        self.ub.append(float(ub))
        self.integer.append(bool(integer))
        self.obj.append(float(obj))
        return len(self.lb) - 1

    def row(self, idx, val, lo: float, hi: float) -> None:
        self.rows.append((np.asarray(idx, dtype=np.int64), np.asarray(val, dtype=np.float64), float(lo), float(hi)))


def _mlp_ops(model: nn.Module, input_shape: tuple[int, ...]) -> list:
    if isinstance(model, nn.Sequential):
        for name, layer in named_leaves(model):
            if isinstance(layer, nn.Conv2d):
                raise UserError(f"exact radii support MLPs only (Flatten/Linear/ReLU); layer {name} is Conv2d: "
                                "use certified_radii for convolutional models")
    return parse_network(model, input_shape)


def _encode(ops: list, bounds: list, x0: np.ndarray, radius: float, p: float, y: int, j: int,
            margin: float = 0.0) -> tuple[_Program, list, int | None]:
    """Build the program for target class ``j`` (``logit_j - logit_y >= margin``).

    Returns (program, x' variable indices, t index).
    """
    prog = _Program()
    d = x0.shape[0]
    lo_x = np.maximum(x0 - radius, 0.0)
    hi_x = np.minimum(x0 + radius, 1.0)
    xv = [prog.var(lo_x[i], hi_x[i]) for i in range(d)]
    t_idx = None
    if p == INF:
        t_idx = prog.var(0.0, radius, obj=1.0)
        for i in range(d):  # |x'_i - x0_i| <= t
            prog.row([xv[i], t_idx], [1.0, -1.0], -INF, x0[i])
            prog.row([xv[i], t_idx], [1.0, 1.0], x0[i], INF)
    elif p == 1:
        split = []
        for i in range(d):  # x' - x0 = pos - neg, objective sum(pos + neg)
            pos = prog.var(0.0, hi_x[i] - x0[i], obj=1.0)
            neg = prog.var(0.0, x0[i] - lo_x[i], obj=1.0)
            prog.row([xv[i], pos, neg], [1.0, -1.0, 1.0], x0[i], x0[i])
            split += [pos, neg]
        prog.row(split, np.ones(len(split)), -INF, radius)
    # p == 2: the quadratic objective is added by the SCIP builder
    # h: the current layer as a list of variable indices (None = the constant 0)
    h: list = list(xv)
    relu_count = 0
    last = len(ops) - 1
    for k, op in enumerate(ops):
        if isinstance(op, ReluOp):
            lo, hi = bounds[relu_count]
            relu_count += 1
            new: list = []
            for n, z in enumerate(h):
                l, u = float(lo[n]), float(hi[n])
                l -= _WIDEN * (1 + abs(l))
                u += _WIDEN * (1 + abs(u))
                if z is None or u <= 0:
                    new.append(None)
                elif l >= 0:
                    new.append(z)
                else:
                    a = prog.var(0.0, u)
                    b = prog.var(0.0, 1.0, integer=True)
                    prog.row([a, z], [1.0, -1.0], 0.0, INF)  # a >= z
                    prog.row([a, z, b], [1.0, -1.0, -l], -INF, -l)  # a <= z - l (1 - b)
                    prog.row([a, b], [1.0, -u], -INF, 0.0)  # a <= u b
                    new.append(a)
            h = new
            continue
        w = op.dense.cpu().numpy()
        bias = op.bias.cpu().numpy()
        live = [n for n, v in enumerate(h) if v is not None]
        live_vars = [h[n] for n in live]
        if k == last:
            # logit_j - logit_y >= margin, written directly on the last hidden layer
            coef = w[j, live] - w[y, live]
            prog.row(live_vars, coef, margin - (bias[j] - bias[y]), INF)
            break
        nxt_relu = k + 1 <= last and isinstance(ops[k + 1], ReluOp)
        lo, hi = bounds[relu_count] if nxt_relu else (None, None)
        out: list = []
        for n in range(op.out_dim):
            if nxt_relu:
                l, u = float(lo[n]), float(hi[n])
                zl, zu = l - _WIDEN * (1 + abs(l)), u + _WIDEN * (1 + abs(u))
            else:
                zl, zu = -INF, INF
            z = prog.var(zl, zu)
            prog.row([z] + live_vars, np.concatenate([[1.0], -w[n, live]]), bias[n], bias[n])
            out.append(z)
        h = out
    return prog, xv, t_idx


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level writes to stdout (some HiGHS builds print debugging lines even with
    ``disp=False``), so that commands printing JSON on stdout stay parseable."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced (pytest capture, notebooks)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _solve_highs(prog: _Program, time_limit: float):
    # scipy's solvers are imported by the one path that needs them (half a second of import time)
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    n = len(prog.lb)
    rows, cols, vals = [], [], []
    for r, (idx, val, _, _) in enumerate(prog.rows):
        rows.append(np.full(idx.shape[0], r))
        cols.append(idx)
        vals.append(val)
    a = csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(prog.rows), n))
    cons = LinearConstraint(a, [r[2] for r in prog.rows], [r[3] for r in prog.rows])
    start = time.monotonic()
    for presolve in (True, False):  # HiGHS occasionally reports a solve error that presolve causes
        left = max(float(time_limit) - (time.monotonic() - start), 0.01)
        with _quiet_stdout():
            res = milp(np.asarray(prog.obj), integrality=np.asarray(prog.integer, dtype=np.int64),
                       bounds=Bounds(np.asarray(prog.lb), np.asarray(prog.ub)), constraints=cons,
                       options={"time_limit": left, "mip_rel_gap": REL_GAP, "presolve": presolve})
        if res.status in (0, 1, 2):
            break
    x = None if res.x is None else np.asarray(res.x)
    dual = getattr(res, "mip_dual_bound", None)
    if res.status == 0:
        kind = "optimal"
        dual = res.fun if dual is None or not np.isfinite(dual) else dual
    elif res.status == 2:
        kind = "infeasible"
    elif res.status == 1:
        kind = "limit"
    else:
        kind = "error"
    return kind, x, (float(dual) if dual is not None and np.isfinite(dual) else -INF)


def _solve_scip(prog: _Program, xv: list, x0: np.ndarray, radius: float, time_limit: float, scale_to: float):
    try:  # an optional dependency (the exact extra), needed for L2 only
        import pyscipopt
    except ImportError:
        raise UserError("exact L2 radii need SCIP: pip install advrobust[exact] (installs pyscipopt)") from None
    m = pyscipopt.Model()
    m.hideOutput()
    m.setParam("limits/time", max(float(time_limit), 0.01))
    m.setParam("limits/gap", REL_GAP)
    vs = [m.addVar(lb=None if not np.isfinite(lb) else lb, ub=None if not np.isfinite(ub) else ub,
                   vtype="B" if integ else "C") for lb, ub, integ in zip(prog.lb, prog.ub, prog.integer)]
    for idx, val, lo, hi in prog.rows:
        expr = pyscipopt.quicksum(float(v) * vs[i] for i, v in zip(idx, val))
        if lo == hi:
            m.addCons(expr == lo)
        else:
            if np.isfinite(lo):
                m.addCons(expr >= lo)
            if np.isfinite(hi):
                m.addCons(expr <= hi)
    # s = ||x' - x0||^2 / rho^2 with rho a lower bound on the optimum: SCIP's feasibility
    # tolerance (1e-6) is absolute for values below 1, so s >= 1 keeps its relative error small
    rho = min(max(scale_to, 1e-3 * radius, 1e-12), radius)
    scale = 1.0 / rho
    s = m.addVar(lb=0.0, ub=(radius / rho) ** 2)
    m.addCons(pyscipopt.quicksum(((vs[i] - float(x0[n])) * scale) * ((vs[i] - float(x0[n])) * scale)
                                 for n, i in enumerate(xv)) <= s)
    m.setObjective(s, "minimize")
    m.optimize()
    status = m.getStatus()
    x = None
    if m.getNSols() > 0:
        sol = m.getBestSol()
        x = np.array([m.getSolVal(sol, v) for v in vs])
    dual = m.getDualbound()
    dual = math.sqrt(max(dual, 0.0)) * rho if np.isfinite(dual) else -INF
    if status == "optimal" or status == "gaplimit":
        return "optimal", x, dual
    if status == "infeasible":
        return "infeasible", None, INF
    if status in ("timelimit", "nodelimit", "memlimit", "userinterrupt", "sollimit", "stallnodelimit", "totalnodelimit"):
        return "limit", x, dual
    return "error", x, dual


def _roundoff(model: nn.Module, x: Tensor) -> float:
    """Roundoff scale of the model's logits at ``x``: machine epsilon times the largest logit
    computed with absolute weights on ``|x|`` (which bounds every partial sum of the forward pass).

    A margin a few times this survives any summation order, so a point verified with it stays
    adversarial in a batched forward pass too (a margin relative to the logits alone does not
    when the logits nearly cancel).
    """
    h = x.detach().reshape(1, -1).abs().to(torch.float64)
    for _, layer in named_leaves(model):
        if isinstance(layer, nn.Linear):
            h = h @ layer.weight.detach().abs().to(torch.float64).T
            if layer.bias is not None:
                h = h + layer.bias.detach().abs().to(torch.float64)
    return float(torch.finfo(x.dtype).eps * h.max())


def margin_needed(logits: Tensor, noise: float) -> float:
    """The margin by which a verified point's logits (C,) must beat the label: ``_MARGIN``
    relative to their scale, and at least ``noise``, the rounding noise of the input's logits
    (``_ROUNDING * _roundoff``), so that batched re-checks agree."""
    return max(_MARGIN * float(logits.abs().max().clamp_min(1e-2)), noise)


def _verify(model: nn.Module, x: Tensor, y: int, cand: np.ndarray, p: float, noise: float):
    """A point on the ray from ``x`` through ``cand`` (clipped to the box) that the model
    misclassifies, as close to ``x`` as a short bisection finds, and its radius; or None.

    Solvers stop at tolerances, so the optimum may sit on the decision boundary or a hair
    short of it: scale the perturbation up by at most 1e-3 (relative) until the label flips
    with the margin of :func:`margin_needed` (``noise``: the rounding noise at ``x``), then
    bisect the scale down towards the boundary.
    """
    x0 = x.detach().reshape(-1).to(torch.float64)

    def enough(logits: Tensor) -> bool:
        other = torch.cat([logits[:y], logits[y + 1:]]).max()
        return float(other - logits[y]) > margin_needed(logits, noise)

    delta = torch.as_tensor(cand, dtype=torch.float64, device=x.device) - x0

    def point(factor: float) -> Tensor:
        return (x0 + delta * factor).clamp(0.0, 1.0).to(x.dtype).reshape(x.shape)

    def flips(factor: float) -> bool:
        with torch.no_grad():
            return enough(model(point(factor).unsqueeze(0))[0])

    factors = (1.0, 1 + 1e-6, 1 + 1e-5, 1 + 1e-4, 1 + 1e-3)
    k = next((k for k, f in enumerate(factors) if flips(f)), None)
    hi = None if k is None else factors[k]
    lo = None
    if k:  # the last factor that fell short
        lo = factors[k - 1]
    elif k == 0:
        # the solver's point already flips with room to spare (e.g. it was asked for a
        # positive margin): walk back along the ray to the last factor that still flips
        for f in (1 - 1e-6, 1 - 1e-5, 1 - 1e-4, 1 - 1e-3, 1 - 1e-2, 0.9, 0.5):
            if not flips(f):
                lo = f
                break
            hi = f
    if lo is not None:  # bisect between a factor that falls short and one that flips
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if flips(mid) else (mid, hi)
    if hi is None:
        # the ray does not cross (the optimum sits on a kink): step along the margin's gradient
        xc = point(1.0).detach().requires_grad_(True)
        logits = model(xc.unsqueeze(0))[0]
        other = torch.cat([logits[:y], logits[y + 1:]]).max()
        (g,) = torch.autograd.grad(other - logits[y], xc)
        g = g.reshape(-1).to(torch.float64)
        size = float(row_norm(delta, p))
        gdir = g.sign() if p == INF else (g / g.norm().clamp_min(1e-300) if p == 2 else g / g.abs().sum().clamp_min(1e-300))
        for step in (1e-6, 1e-5, 1e-4, 1e-3):
            cand2 = x0 + delta + gdir * step * size
            delta2 = cand2 - x0
            xa = (x0 + delta2).clamp(0.0, 1.0).to(x.dtype).reshape(x.shape)
            with torch.no_grad():
                lg = model(xa.unsqueeze(0))[0]
            if enough(lg):
                r = xa.reshape(-1).to(torch.float64) - x0
                rad = float(row_norm(r, p))
                return xa, rad
        return None
    xa = point(hi)
    r = xa.reshape(-1).to(torch.float64) - x.reshape(-1).to(torch.float64)
    rad = float(row_norm(r, p))
    return xa, rad


def _run(prog: _Program, xv: list, x0: np.ndarray, radius: float, p: float, time_limit: float, scale_to: float):
    if p == 2:
        return _solve_scip(prog, xv, x0, radius, time_limit, scale_to)
    return _solve_highs(prog, time_limit)


def _exact_point(model: nn.Module, ops: list, x: Tensor, y: int, logits: Tensor, up: float, full: float, p: float,
                 time_limit: float) -> tuple[float, float, int, Tensor | None]:
    """One correctly classified sample: ``(radius, lower, status, adversarial point or None)``.

    The target classes are solved one by one, most likely first, each within the ball of the
    best radius so far (so the big-M bounds tighten as it falls); a class whose CROWN margin bound
    is positive over that ball is skipped. The ``time_limit`` is shared by the classes.
    """
    start = time.monotonic()
    known = bool(np.isfinite(up) and up > 0)
    r_max = min(up, full) * (1 + 1e-6) + 1e-9 if known else full
    xs, ys = x.unsqueeze(0), torch.tensor([y], device=x.device)
    noise = _ROUNDING * _roundoff(model, x)  # rounding noise of this input's logits
    lb_cert = float(certified_radii(model, xs, ys, norm=p, method="crown", tol=1e-3, eps_hi=r_max)[0])
    x0 = x.detach().reshape(-1).to(torch.float64).cpu().numpy()
    others = other_classes(ys, ops[-1].out_dim)[0].cpu().numpy()
    order = [int(c) for c in others[np.argsort(-logits[others].detach().cpu().numpy(), kind="stable")]]
    best, best_x = INF, None
    class_lower = []
    failed = False
    timed_out = False
    bound_r = None
    for j in order:
        cur = min(r_max, best * (1 + 1e-6) + 1e-9) if np.isfinite(best) else r_max
        if cur != bound_r:  # bounds over the current search ball (tighter after each improvement)
            with torch.no_grad():
                lbs = layer_bounds(model, xs, cur, norm=p, method="crown")
                marg = margin_lower_bounds(model, xs, ys, cur, norm=p, method="crown")[0].cpu().numpy()
            bounds = [(lo[0].cpu().numpy(), hi[0].cpu().numpy()) for lo, hi in lbs[:-1]]
            bound_r = cur
        if marg[list(others).index(j)] > 0:  # class j provably unreachable within cur
            class_lower.append(cur)
            continue
        remaining = time_limit - (time.monotonic() - start)
        if remaining <= 0:
            timed_out = True
            class_lower.append(lb_cert)
            continue
        prog, xv, _ = _encode(ops, bounds, x0, cur, p, y, j)
        kind, sol, dual = _run(prog, xv, x0, cur, p, remaining, lb_cert)
        if kind == "infeasible":
            class_lower.append(cur)
            continue
        if kind == "error":
            failed = True
        if kind == "limit":
            timed_out = True
        class_lower.append(dual)
        if sol is None:
            continue
        checked = _verify(model, x, y, sol[xv], p, noise)
        if checked is None:
            # the optimum is a tie no nudge breaks (an isolated touching point of the
            # decision regions): ask for a strictly positive margin instead
            for tie in _TIES:  # (below twice the noise, the verification could not accept it)
                tau = max(tie * float(logits.abs().max().clamp_min(1e-2)), 2 * noise)
                prog, xv, _ = _encode(ops, bounds, x0, cur, p, y, j, margin=tau)
                remaining = time_limit - (time.monotonic() - start)
                kind2, sol2, _ = _run(prog, xv, x0, cur, p, max(remaining, 0.01), lb_cert)
                if kind2 == "limit":
                    timed_out = True
                checked = None if sol2 is None else _verify(model, x, y, sol2[xv], p, noise)
                if checked is not None or kind2 in ("infeasible", "limit"):
                    break
            if checked is None and kind2 not in ("infeasible", "limit"):
                failed = True
        if checked is not None and checked[1] < best:
            best, best_x = checked[1], checked[0]
    low = max(min(class_lower) if class_lower else r_max, lb_cert)
    if best_x is not None:
        low = min(low, best)
    if failed:
        return (best if best_x is not None else np.nan), low, 2, best_x
    if timed_out:
        return (min(best, up) if known else best), low, 1, best_x
    if best_x is None:
        # every class is infeasible within r_max: fine if r_max is the whole box
        return (np.nan, low, 2, None) if known else (INF, low, 0, None)
    return best, low, 0, best_x


def exact_radii(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm, upper=None, time_limit: float = 10.0,
                progress: bool = False) -> dict:
    """Exact minimal adversarial radii of a small ReLU MLP, by MILP (Linf, L1) or MIQP (L2).

    Parameters
    ----------
    model : nn.Sequential of Flatten, Linear and ReLU layers (a Conv2d is a UserError)
    inputs : (B, ...) tensor in [0, 1]
    labels : (B,) int64 tensor
    norm : 1, 2, inf (or 'l1', 'l2', 'linf')
    upper : float or array (B,), optional
        Radii known to contain an adversarial point (e.g. an attack's verified radius). They
        bound the search and the big-M constants; non-finite or non-positive entries (and
        ``None``) mean "unknown", and then the whole box is searched.
    time_limit : float
        Seconds per sample (shared by that sample's target classes).
    progress : bool
        Show a bar named ``exact (MILP)`` over the points, with the solver's status so far (after 2 s).

    Returns
    -------
    dict of numpy arrays, one entry per sample:
    ``radius`` (float64): norm of the verified adversarial point the solver found (for status 0,
    the minimal radius up to the solver gap 1e-6 and the verification: the point must beat the
    label by a margin above the logits' float roundoff, which costs about that margin over the
    margin gradient's dual norm in radius (relative 1e-6 or less unless the logits nearly tie);
    for status 1, the best verified upper bound: the incumbent or ``upper``; ``inf`` when the
    whole box holds no adversarial point; 0 for misclassified samples; NaN on error).
    ``lower`` (float64): a proven lower bound on the minimal radius (the solver's dual bound,
    never below the CROWN certified radius). ``status`` (int64): 0 optimal, 1 stopped at the time
    limit with bounds, 2 infeasible within ``upper`` or solver/verification error, -1 not run.
    ``adv`` (inputs' dtype, inputs' shape): the verified point, the input where none.
    """
    # Argument checks, then one _exact_point per correctly classified sample; the docstring is a third.
    p = parse_norm(norm)
    if not isinstance(inputs, Tensor) or inputs.ndim < 2:
        raise UserError("inputs must be a batched torch.Tensor (B, ...)")
    if not (time_limit > 0):
        raise UserError(f"time_limit must be positive, got {time_limit}")
    ops = _mlp_ops(model, tuple(inputs.shape[1:]))
    bsz = inputs.shape[0]
    if not isinstance(labels, Tensor) or labels.shape != (bsz,):
        raise UserError(f"labels must be a tensor of shape ({bsz},)")
    if inputs.numel() and (not torch.isfinite(inputs).all() or inputs.min() < 0 or inputs.max() > 1):
        raise UserError("inputs must be finite and lie in [0, 1]; put normalisation inside the model")
    if upper is None:
        up = np.full(bsz, np.nan)
    else:
        try:
            up = np.broadcast_to(np.asarray(upper, dtype=np.float64).reshape(-1) if np.ndim(upper) else
                                 np.asarray(upper, dtype=np.float64), (bsz,)).copy()
        except (ValueError, TypeError):
            raise UserError(f"upper must be a number or one radius per sample ({bsz}), got shape {np.shape(upper)}") from None
    full = box_radius(p, int(np.prod(inputs.shape[1:])))
    with torch.no_grad():
        logits = model(inputs)
    if not torch.isfinite(logits).all():
        raise UserError("model outputs contain NaN or inf; check the model's weights")
    pred = logits.argmax(1).cpu().numpy()
    lab = labels.to(torch.int64).cpu().numpy()
    radius = np.full(bsz, np.nan)
    lower = np.full(bsz, np.nan)
    status = np.full(bsz, -1, dtype=np.int64)
    adv = inputs.detach().clone()
    points = bar(range(bsz), desc="exact (MILP)", unit="point", enabled=progress)
    for s in points:
        if s:  # the solver's status so far, and the last point's
            done = status[:s]
            points.set_postfix_str(f"last {STATUS.get(int(status[s - 1]), '?')}; optimal {int((done == 0).sum())}, "
                                   f"time limit {int((done == 1).sum())}, error {int((done == 2).sum())}")
        y = int(lab[s])
        if pred[s] != y:
            radius[s], lower[s], status[s] = 0.0, 0.0, 0
            continue
        radius[s], lower[s], status[s], best_x = _exact_point(model, ops, inputs[s], y, logits[s], float(up[s]), full,
                                                              p, time_limit)
        if best_x is not None:
            adv[s] = best_x
    if bsz:
        points.set_postfix_str(f"optimal {int((status == 0).sum())}, time limit {int((status == 1).sum())}, "
                               f"error {int((status == 2).sum())}")
    points.close()
    return {"radius": radius, "lower": lower, "status": status, "adv": adv.cpu().numpy()}


__all__ = ["exact_radii", "STATUS"]
