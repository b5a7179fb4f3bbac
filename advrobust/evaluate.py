"""Attack cascades with verified radii, cost accounting and sanity flags.

:func:`run_cascade` runs several attacks on the same inputs and keeps, per sample, the radius
each attack found, the best one and which attack found it. Radii are never taken from an
attack's word: each returned point is checked here.

Verification of every attack output (per sample)
------------------------------------------------
1. ``adv`` must have the inputs' shape, be finite and lie in [0, 1] *as returned* (nothing is
   clamped here: an attack that leaves the box has a bug, and its point counts as a failure,
   flagged ``out-of-box``).
2. A fresh forward pass on ``adv`` must be misclassified (``argmax != label``).
3. The radius is measured here, ``||adv - x||_p`` in float64 of the float32 difference.
A failed sample gets radius ``inf``; a sample the attack did not run on ``nan``; a sample
misclassified before any attack radius 0 (no attack runs on it).

Which attack runs on which sample
---------------------------------
* Minimal attacks (``kind="minimal"``) run on every correctly classified sample: their radii are
  all kept, so the per-attack columns compare attacks on the same samples.
* Budget attacks made minimal by an epsilon search (``pgd-min``, ``apgd-min``: their function
  takes ``eps_init``) start their search at the current best radius per sample, so they bisect
  below it; samples no earlier attack broke search from the attack's own initial estimate.
* A sample whose best radius already matches a proven lower bound (``lower``: an exact MILP
  radius or a certified bound, within ``rtol``) is skipped by the later attacks: nothing can
  improve on it.

Flags (stable names, each explained in ``docs/attacks.md``): ``attack-failed``,
``unbroken-samples``, ``out-of-box``, ``nan-output``, ``attack-error``,
``radius-below-certified``, ``zero-gradients``, ``gradient-masking-suspected``.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from attacks import get_attack
from attacks.counting import count_passes

from ._progress import bar
from .errors import UserError
from .norms import INF, NORMS, norm_name, row_norm
from ._stats import quantile

#: Default cascades per norm, strongest first. Chosen from experiments/bench_attacks.py on digits
#: MLPs (see docs/attacks.md); every attack named here supports the norm.
#: The cheap gradient attacks come first; ``boundary`` comes last: it starts from each sample's best
#: point so far, from far points (the nearest training points of other classes, other samples'
#: adversarial points, random box points) and from random rays near the best direction, walks
#: along the boundary and polishes with cutting planes (see docs/attacks.md, "How the default
#: cascade decides").
DEFAULT_CASCADES: dict[float, tuple[str, ...]] = {
    2.0: ("fmn", "ddn", "alma", "fab", "deepfool", "boundary"),
    INF: ("fmn", "fab", "apgd-min", "deepfool", "boundary"),
    1.0: ("fmn", "alma", "fab", "apgd-min", "boundary"),
}

#: Default robust-accuracy epsilons per norm, for inputs in [0, 1].
DEFAULT_EPS: dict[float, tuple[float, ...]] = {
    2.0: (0.1, 0.25, 0.5, 1.0, 2.0),
    INF: (0.01, 0.02, 0.05, 0.1, 0.2),
    1.0: (0.5, 1.0, 2.0, 4.0, 8.0),
}

#: Largest candidate pool for far starting points (a larger one is subsampled, seeded).
POOL_MAX = 4096

FLAG_NAMES = ("attack-failed", "unbroken-samples", "out-of-box", "nan-output", "attack-error",
              "radius-below-certified", "zero-gradients", "gradient-masking-suspected")


@dataclass
class CascadeResult:
    """Per-sample results of :func:`run_cascade` (numpy arrays over the B samples)."""

    norm: float
    attacks: list[str]
    labels: np.ndarray  # (B,) int64
    pred: np.ndarray  # (B,) int64 clean prediction
    margin: np.ndarray  # (B,) float64 logit[label] - max other
    best_radius: np.ndarray  # (B,) float64; 0 misclassified, inf unbroken
    best_attack: np.ndarray  # (B,) int64 index into attacks, -1 none
    radius: dict[str, np.ndarray]  # per attack (B,) float64; inf failed, nan not run
    forward: dict[str, np.ndarray]  # per attack (B,) samples passed forward per sample
    backward: dict[str, np.ndarray]
    time: dict[str, np.ndarray]  # seconds per sample
    adv: np.ndarray  # (B, ...) float32 best adversarial input (clean input where none)
    flags: list[dict] = field(default_factory=list)
    lower: np.ndarray | None = None  # (B,) proven lower bounds used for skipping, if any
    wall_time_s: float = 0.0

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.labels


def make_attack(name: str, *, norm: float, steps: int | None = None, seed: int = 0) -> Callable:
    """A configured attack ``fn(model, inputs, labels) -> adv`` for ``name`` (ours or ``foolbox:X``).

    ``steps=None`` keeps the attack's own default number of steps.

    Raises
    ------
    UserError
        Unknown name, or an attack that does not support ``norm``.
    """
    try:
        info = get_attack(name)
    except (KeyError, ValueError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    if not info.supports(norm):
        names = ", ".join(norm_name(n) for n in info.norms)
        raise UserError(f"attack {name!r} does not support norm {_norm_str(norm)}; it supports {names}")
    fn = info.fn
    params = inspect.signature(fn).parameters
    kwargs = {"norm": float(norm)}
    if steps is not None:
        kwargs["steps"] = int(steps)
    if "seed" in params:
        kwargs["seed"] = int(seed)
    # epsilon-search attacks start their search at the current best radius (a budget known to
    # hold an adversarial point), so they bisect below it instead of searching from scratch
    takes_upper = "eps_init" in params
    # attacks that start from given adversarial points (boundary) get each sample's best point so
    # far, the candidate pool (the training set) and the other samples' adversarial points
    takes_starts = "starts" in params

    def configured(model: nn.Module, inputs: Tensor, labels: Tensor, upper: Tensor | None = None, *,
                   starts: Tensor | None = None, pool: Tensor | None = None, pool_adv: Tensor | None = None) -> Tensor:
        if takes_starts and (starts is not None or pool is not None):
            extra = {"bad_starts": "drop"} if starts is not None else {}
            return fn(model, inputs, labels, starts=starts, pool=pool, pool_adv=pool_adv, **extra, **kwargs)
        if not takes_upper or upper is None:
            return fn(model, inputs, labels, **kwargs)
        known = torch.isfinite(upper) & (upper > 0)
        if known.all():
            return fn(model, inputs, labels, eps_init=upper, **kwargs)
        adv = inputs.detach().clone()
        if (~known).any():
            adv[~known] = fn(model, inputs[~known], labels[~known], **kwargs)
        if known.any():
            adv[known] = fn(model, inputs[known], labels[known], eps_init=upper[known], **kwargs)
        return adv

    configured.takes_upper = takes_upper  # type: ignore[attr-defined]
    configured.takes_starts = takes_starts  # type: ignore[attr-defined]
    configured.kind = info.kind  # type: ignore[attr-defined]
    configured.__name__ = name
    return configured


def _norm_str(norm: float) -> str:
    return norm_name(norm) if float(norm) in NORMS.values() else str(norm)


def _lp(diff: Tensor, p: float) -> Tensor:
    """Per-sample Lp norm in float64 (radii are kept in double precision)."""
    return row_norm(diff.reshape(diff.shape[0], -1).double(), p)


def _margin(logits: Tensor, labels: Tensor) -> Tensor:
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, labels[:, None], -INF)
    return true - other.amax(1)


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else model(x)


def verify(model: nn.Module, inputs: Tensor, labels: Tensor, adv: Tensor, *, norm: float):
    """Check attack outputs; returns ``(radius (B,) float64 tensor, out_of_box (B,), nan (B,))``.

    ``radius`` is the measured Lp distance where ``adv`` is finite, in [0, 1] and misclassified
    by a fresh forward pass, ``inf`` elsewhere.
    """
    b = inputs.shape[0]
    flat = adv.reshape(b, -1)
    nan = ~torch.isfinite(flat).all(1)
    oob = ((flat < 0) | (flat > 1)).any(1) & ~nan
    with torch.no_grad():
        out = model(torch.where(nan.view(-1, *[1] * (adv.ndim - 1)), inputs, adv))
    nan = nan | ~torch.isfinite(out).all(1)
    wrong = out.argmax(1) != labels
    ok = wrong & ~nan & ~oob
    r = _lp(adv - inputs, norm)
    radius = torch.where(ok, r, torch.full_like(r, INF))
    return radius, oob, nan


def run_cascade(model: nn.Module, inputs: Tensor, labels: Tensor, *, norm: float,
                attacks: Sequence[tuple[str, Callable]], batch_size: int = 256,
                device: torch.device | str | None = None, seed: int = 0, progress: bool = False,
                lower: np.ndarray | None = None, rtol: float = 1e-4, random_checks: int = 8,
                pool: Tensor | None = None, starts: Tensor | None = None) -> CascadeResult:
    """Run ``attacks`` in order on ``inputs`` and keep verified per-sample radii.

    Parameters
    ----------
    model : nn.Module
        Maps inputs in [0, 1] to logits; put in eval mode by the caller.
    inputs, labels : Tensor
        (B, ...) in [0, 1] and (B,) int64.
    norm : float
        1, 2 or inf.
    attacks : sequence of (name, callable)
        ``callable(model, inputs, labels) -> adv`` (see :func:`make_attack`); callables with an
        attribute ``takes_upper`` also accept ``upper`` (B,) and search below it.
    batch_size : int
        Samples per attack call.
    device : torch.device or str, optional
        Where to run (default: the model's device).
    seed : int
        Seeds torch's global generator once before the first attack (for attacks that use it).
    progress : bool
        Show a tqdm bar over batches.
    lower : np.ndarray, optional
        (B,) proven lower bounds (exact radii or certified); samples whose best radius is within
        ``rtol`` of it are skipped by later attacks, and radii below it are flagged.
    random_checks : int
        Random directions per sample for the gradient-masking check (0 disables it).
    pool : Tensor, optional
        (N, ...) candidate far starting points for attacks that take starts (``boundary``): the
        nearest ones the model puts in another class start walks (default: ``inputs``; the
        attack command passes the training split). Pools of more than :data:`POOL_MAX` points
        are subsampled (seeded by ``seed``).
    starts : Tensor, optional
        (B, ...) or (B, S, ...) adversarial starting points given by the caller, passed (after
        each sample's best point so far) to the attacks that take starts; a start equal to its
        input means none. They must be adversarial (checked: UserError otherwise).

    Returns
    -------
    CascadeResult

    Raises
    ------
    UserError
        Inputs outside [0, 1], mismatched shapes, or a model returning NaN on clean inputs.
    """
    # One function: a quarter is its docstring; the rest is argument checks, then one loop whose
    # per-sample state (best radius and point, winner, per-attack radii, passes, times, flags) every
    # attack updates in turn, then the verification of the winners; the pieces without state are
    # the helpers above (_logits, _margin, verify) and below (_check_starts, _masking_checks).
    p = float(norm)
    if p not in (1.0, 2.0, INF):
        raise UserError(f"norm must be 1, 2 or inf, got {norm!r}")
    names = [n for n, _ in attacks]
    if len(set(names)) != len(names):
        raise UserError(f"attack names must be unique, got {names}")
    if inputs.ndim < 2 or labels.shape != (inputs.shape[0],):
        raise UserError(f"inputs (B, ...) and labels (B,) do not match: {tuple(inputs.shape)} vs {tuple(labels.shape)}")
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    if device is None:
        try:
            device = next(model.parameters()).device
        except (StopIteration, AttributeError):
            device = torch.device("cpu")
    device = torch.device(device)
    x_all = inputs.detach().to(device)
    y_all = labels.detach().to(device).long()
    if x_all.numel() and (not torch.isfinite(x_all).all() or x_all.min() < 0 or x_all.max() > 1):
        raise UserError("inputs must be finite and lie in [0, 1]; put normalisation inside the model")
    user_starts = None if starts is None else _check_starts(model, x_all, y_all, starts, batch_size)
    t_start = time.perf_counter()
    torch.manual_seed(int(seed))
    B = x_all.shape[0]
    logits = _logits(model, x_all, batch_size)
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits).all(1)).sum())
        raise UserError(f"the model returned NaN/inf logits on {bad} clean inputs; check the model and its weights")
    pred = logits.argmax(1)
    margin = _margin(logits, y_all).double()
    correct = pred == y_all

    best = torch.where(correct, torch.full((B,), INF, dtype=torch.float64, device=device),
                       torch.zeros(B, dtype=torch.float64, device=device))
    best_attack = torch.full((B,), -1, dtype=torch.int64, device=device)
    best_adv = x_all.clone()
    radius = {n: torch.full((B,), math.nan, dtype=torch.float64, device=device) for n in names}
    fwd = {n: np.full(B, math.nan) for n in names}
    bwd = {n: np.full(B, math.nan) for n in names}
    tpe = {n: np.full(B, math.nan) for n in names}
    oob_count = {n: 0 for n in names}
    nan_count = {n: 0 for n in names}
    errors: dict[str, str] = {}
    lower_t = None if lower is None else torch.as_tensor(np.asarray(lower, dtype=np.float64), device=device)
    if pool is not None:
        if tuple(pool.shape[1:]) != tuple(x_all.shape[1:]):
            raise UserError(f"pool points have shape {tuple(pool.shape[1:])}, the inputs {tuple(x_all.shape[1:])}")
        if pool.shape[0] > POOL_MAX:  # far starts predict the whole pool once per batch: a seeded subset
            keep = torch.randperm(pool.shape[0], generator=torch.Generator().manual_seed(int(seed)))[:POOL_MAX]
            pool = pool[keep.to(pool.device)]
        pool = pool.detach().to(device=device, dtype=x_all.dtype)

    batches = range(0, B, batch_size)
    if progress:
        batches = bar(batches, desc=f"attacks {_norm_str(p)}", unit="batch")
    for start in batches:
        sl = slice(start, min(start + batch_size, B))
        x, y = x_all[sl], y_all[sl]
        for k, (name, fn) in enumerate(attacks):
            active = correct[sl].clone()
            if lower_t is not None:
                done = best[sl] <= lower_t[sl] * (1 + rtol) + 1e-12
                active &= ~done
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            xa, ya = x[idx], y[idx]
            upper = best[sl][idx].to(x.dtype) if getattr(fn, "takes_upper", False) else None
            extra = {}
            if getattr(fn, "takes_starts", False):
                gi0 = idx + start
                have = torch.isfinite(best[gi0])
                own = torch.where(have.view(-1, *[1] * (xa.ndim - 1)), best_adv[gi0], xa).unsqueeze(1)
                if user_starts is not None:
                    own = torch.cat([own, user_starts[gi0]], 1)
                extra = {"starts": own,
                         "pool": x_all if pool is None else pool,
                         "pool_adv": best_adv[torch.isfinite(best) & (best > 0)]}
            t0 = time.perf_counter()
            try:
                with count_passes(model) as counter:
                    adv = fn(model, xa, ya, upper=upper, **extra) if upper is not None else fn(model, xa, ya, **extra)
            except UserError:
                raise
            except Exception as exc:  # one broken attack must not sink the others; it is flagged
                errors.setdefault(name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
                radius[name][idx + start] = INF
                continue
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            if not isinstance(adv, Tensor) or adv.shape != xa.shape:
                errors.setdefault(name, f"returned shape {getattr(adv, 'shape', type(adv))}, expected {tuple(xa.shape)}")
                radius[name][idx + start] = INF
                continue
            adv = adv.detach().to(device=device, dtype=xa.dtype)
            r, oob, nan = verify(model, xa, ya, adv, norm=p)
            oob_count[name] += int(oob.sum())
            nan_count[name] += int(nan.sum())
            gi = idx + start
            radius[name][gi] = r
            n_run = idx.numel()
            fwd[name][gi.cpu().numpy()] = counter.forward / n_run
            bwd[name][gi.cpu().numpy()] = counter.backward / n_run
            tpe[name][gi.cpu().numpy()] = dt / n_run
            better = r < best[gi]
            if better.any():
                bi = gi[better]
                best[bi] = r[better]
                best_attack[bi] = k
                best_adv[bi] = adv[better]

    flags: list[dict] = []
    correct_np = correct.cpu().numpy()
    n_correct = int(correct_np.sum())
    for name in names:
        r = radius[name].cpu().numpy()
        failed = int((np.isinf(r) & correct_np).sum())
        if failed:
            flags.append({"name": "attack-failed", "attack": name, "count": failed,
                          "message": f"{name} found no verified adversarial point for {failed} of "
                                     f"{int(np.isfinite(r).sum() + failed)} samples it ran on"})
        if oob_count[name]:
            flags.append({"name": "out-of-box", "attack": name, "count": oob_count[name],
                          "message": f"{name} returned {oob_count[name]} points outside [0, 1] (counted as failures)"})
        if nan_count[name]:
            flags.append({"name": "nan-output", "attack": name, "count": nan_count[name],
                          "message": f"{name}: {nan_count[name]} points were NaN or gave NaN logits (counted as failures)"})
        if name in errors:
            flags.append({"name": "attack-error", "attack": name, "count": 1,
                          "message": f"{name} raised {errors[name]}; its samples count as failures"})
    best_np = best.cpu().numpy()
    unbroken = int(np.isinf(best_np).sum())
    if unbroken:
        flags.append({"name": "unbroken-samples", "count": unbroken,
                      "message": f"{unbroken} of {n_correct} correctly classified samples were broken by no attack "
                                 "(radius inf)"})
    if lower_t is not None:
        lo = lower_t.cpu().numpy()
        below = np.isfinite(best_np) & (best_np < lo * (1 - rtol) - 1e-9)
        if below.any():
            flags.append({"name": "radius-below-certified", "count": int(below.sum()),
                          "message": f"{int(below.sum())} verified attack radii lie below their certified lower "
                                     "bound: the certificate (or the model loaded) is wrong"})
    if random_checks > 0 and n_correct:
        flags.extend(_masking_checks(model, x_all, y_all, correct, best, p, batch_size, random_checks, seed))

    return CascadeResult(
        norm=p, attacks=names, labels=y_all.cpu().numpy(), pred=pred.cpu().numpy(),
        margin=margin.cpu().numpy(), best_radius=best_np, best_attack=best_attack.cpu().numpy(),
        radius={n: v.cpu().numpy() for n, v in radius.items()}, forward=fwd, backward=bwd, time=tpe,
        adv=best_adv.detach().cpu().float().numpy(), flags=flags, lower=None if lower is None else np.asarray(lower),
        wall_time_s=time.perf_counter() - t_start)


def _check_starts(model: nn.Module, x: Tensor, y: Tensor, starts, batch_size: int) -> Tensor:
    """Caller-given starting points as (B, S, ...): the right shape, in the box, adversarial (or equal
    to their input, meaning none). UserError otherwise."""
    b, shape = x.shape[0], tuple(x.shape[1:])
    st = torch.as_tensor(starts)
    if tuple(st.shape) == (b, *shape):
        st = st.unsqueeze(1)
    if st.ndim != len(shape) + 2 or st.shape[0] != b or tuple(st.shape[2:]) != shape:
        raise UserError(f"starts have shape {tuple(st.shape)}; expected {(b, *shape)} or (B, S, {', '.join(map(str, shape))}) "
                        f"with B = {b}, one row per attacked point")
    st = st.to(device=x.device, dtype=x.dtype)
    if not torch.isfinite(st).all() or st.min() < 0 or st.max() > 1:
        raise UserError("starts must be finite and lie in [0, 1], like the inputs")
    s_n = st.shape[1]
    none = (st == x.unsqueeze(1)).reshape(b, s_n, -1).all(-1)
    flat_st = st.reshape(b * s_n, *shape)
    pred = _logits(model, flat_st, batch_size).argmax(1).view(b, s_n)
    bad = (pred == y.unsqueeze(1)) & ~none
    if bad.any():
        rows = bad.any(1).nonzero().squeeze(1)[:5].tolist()
        raise UserError(f"{int(bad.sum())} starts are not adversarial (the model still predicts the label; rows "
                        f"{rows}...); give misclassified points, or the input itself for 'no start'")
    return st


def _random_directions(x: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """Unit-norm (in the Lp norm) random directions, same shape as x."""
    d = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    if p == INF:
        d = d.sign()
    elif p == 1:
        # sparse direction: a few coordinates, so an L1 budget moves them far
        mask = torch.rand(x.shape, generator=gen, device=x.device) < 0.1
        d = d * mask
    return d / _lp(d, p).to(x.dtype).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))


def _masking_checks(model, x_all, y_all, correct, best, p, batch_size, n_dirs, seed) -> list[dict]:
    """Zero input gradients on clean points, and a random search that beats every attack."""
    flags = []
    idx = correct.nonzero().squeeze(1)
    zero = 0
    for s in range(0, idx.numel(), batch_size):
        i = idx[s:s + batch_size]
        x = x_all[i].clone().requires_grad_(True)
        m = _margin(model(x), y_all[i])
        (g,) = torch.autograd.grad(m.sum(), x)
        zero += int((g.reshape(len(i), -1).abs().amax(1) == 0).sum())
    if zero:
        flags.append({"name": "zero-gradients", "count": zero,
                      "message": f"{zero} correctly classified samples have an exactly zero input gradient of the "
                                 "margin: gradient attacks cannot move them"})
    # random search along rays x + t d (clipped to the box), t on a geometric grid
    gen = torch.Generator(device=x_all.device)
    gen.manual_seed(int(seed) + 7919)
    # 16 step lengths, a factor ~2 apart: random directions are far worse than gradient ones
    # (about sqrt(d) in L2), so a factor-2 resolution only matters when the attacks are broken
    ts = torch.logspace(-3, 1.5, 16, device=x_all.device, dtype=torch.float64)
    if p == 1:
        ts = ts * 10
    beats = 0
    with torch.no_grad():
        for s in range(0, idx.numel(), batch_size):
            i = idx[s:s + batch_size]
            x, y = x_all[i], y_all[i]
            found = torch.full((len(i),), INF, dtype=torch.float64, device=x.device)
            for _ in range(n_dirs):
                d = _random_directions(x, p, gen)
                for t in ts:
                    cand = (x + float(t) * d).clamp(0, 1)
                    hit = model(cand).argmax(1) != y
                    r = torch.where(hit, _lp(cand - x, p), torch.full_like(found, INF))
                    found = torch.minimum(found, r)
            beats += int((found < best[i] * 0.99).sum())
    if beats:
        flags.append({"name": "gradient-masking-suspected", "count": beats,
                      "message": f"a random search along {n_dirs} directions found smaller adversarial perturbations "
                                 f"than every attack on {beats} samples: the attacks are failing (masked or "
                                 "uninformative gradients)"})
    return flags


def _quantiles(r: np.ndarray, qs=(0.1, 0.25, 0.5, 0.75, 0.9)) -> dict:
    # the project's one definition (advrobust._stats): an observed value, inf stays inf
    return {f"q{int(q * 100)}": quantile(r, q) for q in qs}


def _nanmean(v: np.ndarray) -> float:
    """Mean over the samples an attack ran on (nan when it ran on none or raised)."""
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def summarize(result: CascadeResult, eps_grid: Sequence[float] | None = None) -> dict:
    """Summary of a cascade: success rate, radius quantiles, robust accuracy, per-attack costs.

    Parameters
    ----------
    result : CascadeResult
    eps_grid : sequence of float, optional
        Radii for robust accuracy (default :data:`DEFAULT_EPS` for the norm).

    Returns
    -------
    dict
        ``n, clean_accuracy, n_correct, success_rate`` (broken / correctly classified),
        ``unbroken``, ``median`` and ``quantiles`` of the best radius over all samples (0 for
        misclassified, inf for unbroken), ``median_correct`` over correctly classified samples,
        ``robust_accuracy`` {eps: fraction with radius > eps} (an upper bound: attacks can only
        overestimate robustness), ``robust_accuracy_certified`` (a lower bound, when bounds
        exist), and ``per_attack`` {name: success_rate, median, forward, backward, time, wins}.
    """
    eps_grid = tuple(DEFAULT_EPS[result.norm] if eps_grid is None else eps_grid)
    r = result.best_radius
    n = int(r.size)
    correct = result.correct
    n_correct = int(correct.sum())
    broken = int((np.isfinite(r) & correct).sum())
    out = {
        "n": n,
        "clean_accuracy": float(correct.mean()) if n else math.nan,
        "n_correct": n_correct,
        "success_rate": broken / n_correct if n_correct else math.nan,
        "unbroken": n_correct - broken,
        "median": _quantiles(r)["q50"],
        "quantiles": _quantiles(r),
        "median_correct": _quantiles(r[correct])["q50"],
        "robust_accuracy": {f"{e:g}": float((r > e).mean()) if n else math.nan for e in eps_grid},
    }
    if result.lower is not None:
        lo = np.where(correct, result.lower, 0.0)
        out["robust_accuracy_certified"] = {f"{e:g}": float((lo > e).mean()) if n else math.nan for e in eps_grid}
    per = {}
    for k, name in enumerate(result.attacks):
        ra = result.radius[name]
        ran = ~np.isnan(ra)
        ok = ran & np.isfinite(ra)
        per[name] = {
            "ran": int(ran.sum()),
            "success_rate": float(ok.sum() / ran.sum()) if ran.any() else math.nan,
            "failed": int((ran & ~ok).sum()),
            "median": _quantiles(ra[ran])["q50"] if ran.any() else math.nan,
            "wins": int((result.best_attack == k).sum()),
            "forward": _nanmean(result.forward[name]),
            "backward": _nanmean(result.backward[name]),
            "time_per_sample_s": _nanmean(result.time[name]),
        }
    out["per_attack"] = per
    flags: dict[str, int] = {}
    for f in result.flags:
        flags[f["name"]] = flags.get(f["name"], 0) + int(f["count"])
    out["flags"] = flags
    return out


__all__ = ["CascadeResult", "DEFAULT_CASCADES", "DEFAULT_EPS", "FLAG_NAMES", "make_attack", "run_cascade",
           "summarize", "verify"]
