"""Fits of robustness measures against p, n, d, beside the law of robustness' predictions.

The law (Bubeck & Sellke, "A Universal Law of Robustness via Isoperimetry", NeurIPS 2021,
Theorem 3): for n points of unit scale in R^d from a distribution with c-isoperimetry and
labels with noise level sigma^2, any f in a class of p parameters bounded by W and J-Lipschitz in
them that fits the data below the noise level, ``(1/n) sum (f(x_i) - y_i)^2 <= sigma^2 - eps``,
has, with probability ``1 - delta``,

    Lip(f) >= eps / (2^9 sqrt(c)) * sqrt(n d / (p log(60 W J / eps) + log(4 / delta))),

provided ``n eps^2 >= 8^4 log(8 / delta)``. Hence the scaling ``Lip ~ sqrt(n d / p)``: exponent
-1/2 in p, +1/2 in n and in d. For radii we use the heuristic ``radius ~ margin / Lip``, so
exponent +1/2 in p and -1/2 in n and d: a consequence of reading the bound as tight, not part of
the theorem.

Input scale: the theorem's data have ``||x|| ~ 1`` (coordinates ~ 1/sqrt(d)). Pixel data with a
typical centred norm ``s`` are rescaled by ``1/s``: a Lipschitz constant ``L`` in pixel units is
``L * s`` in unit scale, a radius ``r`` is ``r / s``. See ``docs/analysis.md``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import UserError

# predicted exponents: response -> variable -> exponent
PREDICTED = {
    "lipschitz": {"params": -0.5, "n": 0.5, "d": 0.5},
    "radius": {"params": 0.5, "n": -0.5, "d": -0.5},
}
_AGAINST = ("params", "n", "d", "d_intrinsic", "p/n", "p/(n*d)")
_REGIMES = ("beyond", "interpolating", "all", "below")
#: the law's variable each fitted variable stands for (the intrinsic dimension is the law's d)
_LAW_VARIABLE = {"p/n": "params", "p/(n*d)": "params", "d_intrinsic": "d"}


def fit_power_law(x: Sequence[float], y: Sequence[float], *, bootstrap: int = 2000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """Least-squares fit of ``log y = intercept + exponent * log x`` with a bootstrap CI.

    Parameters
    ----------
    x, y : positive finite values (pairs with a non-positive or non-finite value are a ValueError)
    bootstrap : number of resamples of the (x, y) pairs, with replacement, for the percentile CI
        of the exponent (resamples in which all x coincide are skipped)
    seed : seeds the resampling (numpy Generator; deterministic)
    level : confidence level of the interval (default 0.95)

    Returns
    -------
    dict ``exponent, intercept, ci_low, ci_high, r2, n`` (``intercept`` in natural log, so
    ``y ~ exp(intercept) * x ** exponent``); the CI is None with fewer than 3 points.
    """
    # scipy.stats takes about a second to import; only fits need it (compare without --fit does not)
    from scipy.stats import linregress

    xa = np.asarray(list(x), dtype=np.float64)
    ya = np.asarray(list(y), dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-d of equal length, got {xa.shape} and {ya.shape}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all() and (xa > 0).all() and (ya > 0).all()):
        raise ValueError("a power-law fit needs positive finite x and y")
    if xa.size < 2 or np.unique(xa).size < 2:
        raise ValueError("a power-law fit needs at least two distinct x values")
    lx, ly = np.log(xa), np.log(ya)
    line = linregress(lx, ly)
    slope, icpt = line.slope, line.intercept
    # all y equal: the flat line fits exactly (linregress reports r = 0 there, having no correlation)
    r2 = line.rvalue ** 2 if np.ptp(ly) > 0 else 1.0
    lo, hi = None, None
    if xa.size >= 3 and bootstrap > 0:
        lo, hi = _bootstrap_slope_ci(lx, ly, bootstrap=bootstrap, seed=seed, level=level)
    return {"exponent": float(slope), "intercept": float(icpt), "ci_low": lo, "ci_high": hi,
            "r2": float(r2), "n": int(xa.size)}


def _bootstrap_slope_ci(lx: np.ndarray, ly: np.ndarray, *, bootstrap: int, seed: int,
                        level: float) -> tuple[float | None, float | None]:
    """Percentile interval of the least-squares slope over ``bootstrap`` resamples of the points (runs).

    Not ``scipy.stats.bootstrap``: it draws the very same resamples (``Generator.integers(0, n, (B,
    n))``; its percentile interval matched ours to the last bit or two on the 45 fits of law_digits
    and law_sphere_final where it had one), but a resample whose runs all share one x has no slope,
    and scipy's interval is then NaN (6 of those 45 fits: small groups, seeds at two sizes). Here
    such resamples are skipped. None, None when every resample is degenerate.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, lx.size, size=(bootstrap, lx.size))
    bx, by = lx[idx], ly[idx]
    bxm = bx.mean(1, keepdims=True)
    var = ((bx - bxm) ** 2).sum(1)
    ok = var > 1e-12 * max(1.0, float((lx ** 2).max()))
    slopes = ((bx - bxm) * (by - by.mean(1, keepdims=True))).sum(1)[ok] / var[ok]
    if not slopes.size:
        return None, None
    a = (1.0 - level) / 2
    return float(np.quantile(slopes, a)), float(np.quantile(slopes, 1 - a))


def fixed_slope_constant(x: Sequence[float], y: Sequence[float], *, exponent: float) -> dict:
    """Least squares on logs with the slope fixed: ``y ~ C * x ** exponent``.

    Returns ``{"constant": C, "log_residual_sd": sd, "n": n}``.
    """
    lx = np.log(np.asarray(list(x), dtype=np.float64))
    ly = np.log(np.asarray(list(y), dtype=np.float64))
    c = float(np.mean(ly - exponent * lx))
    sd = float(np.std(ly - exponent * lx - c, ddof=1)) if lx.size > 1 else None
    return {"constant": math.exp(c), "log_residual_sd": sd, "n": int(lx.size)}


# --------------------------------------------------------------------------- Theorem 3
def isoperimetry_constant(dataset: str | None) -> tuple[float | None, str]:
    """The c of c-isoperimetry for a data set after rescaling to unit scale, when known.

    Gaussian N(0, I/d) satisfies it with c = 1 (Gaussian concentration of Lipschitz functions);
    the uniform distribution on the unit sphere with c = d/(d-2) ~ 1 (Levy's concentration);
    for image data the constant is unknown.
    """
    if dataset in ("gaussian", "sphere"):
        return 1.0, f"{dataset}: c ~ 1 (concentration of Lipschitz functions)"
    return None, f"{dataset or 'this data set'}: isoperimetry constant unknown (c = 1 assumed for the reference value)"


def noise_level(row: Mapping[str, Any]) -> tuple[float | None, str]:
    """sigma^2 = E[Var(y | x)] for labels coded +-1: ``4 eta (1 - eta)`` for a label-noise rate eta,
    1 for random labels, 0 for clean labels (the theorem is then vacuous)."""
    labels = row.get("labels")
    eta = row.get("label_noise")
    if not eta and row.get("flip"):
        eta = row.get("flip")
    if labels == "random" and row.get("dataset") in ("sphere", "gaussian"):
        return 1.0, "random labels: sigma^2 = 1 (labels coded +-1)"
    if eta is None:
        return None, "label-noise rate unknown"
    eta = float(eta)
    return 4 * eta * (1 - eta), f"label noise {eta:g}: sigma^2 = 4 eta (1 - eta) (labels coded +-1)"


def theorem3_bound(*, n: int, d: int, p: int, eps: float, c: float = 1.0, wj: float = 1.0,
                   delta: float = 0.01) -> dict:
    """The literal lower bound of Bubeck & Sellke (2021), Theorem 3, with its sample-size condition.

    Parameters
    ----------
    n, d, p : sample count, input dimension, parameter count
    eps : how far below the noise level the fit is (sigma^2 - training MSE)
    c : isoperimetry constant; wj : the product W * J (parameter bound times parameter-Lipschitz
        constant; unknown for trained networks, enters only through a logarithm); delta : failure
        probability

    Returns
    -------
    dict ``value`` (None if eps <= 0), ``sample_condition`` (bool: ``n eps^2 >= 8^4 log(8/delta)``),
    ``needed_n`` (smallest n meeting it at this eps).
    """
    if eps <= 0:
        return {"value": None, "sample_condition": False, "needed_n": None,
                "why": "eps <= 0: the fit is not below the noise level"}
    logterm = p * math.log(max(60 * wj / eps, 1.0 + 1e-12)) + math.log(4 / delta)
    value = eps / (2 ** 9 * math.sqrt(c)) * math.sqrt(n * d / logterm)
    need = 8 ** 4 * math.log(8 / delta)
    return {"value": value, "sample_condition": n * eps ** 2 >= need, "needed_n": math.ceil(need / eps ** 2),
            "eps": eps, "c": c, "wj": wj, "delta": delta}


# --------------------------------------------------------------------------- fits over compare rows
def _value(row: Mapping[str, Any], key: str, norm: str) -> Any:
    for k in (key, f"{norm}_{key}"):
        if k in row:
            return row[k]
    raise KeyError(key)


def _kind(response: str) -> str:
    return "lipschitz" if "lip" in response else "radius"


#: per fitted variable, the row fields that must agree for rows to be compared (only the variable,
#: and what it forces, e.g. params when d changes, may differ inside a group)
#: ``width`` stands for the run's size: its width, or ``p=N`` for runs of an arm at fixed p (trained
#: with ``--width p=N``, whose widths differ by d); such runs form their own groups in the p fits
GROUP_KEYS = {
    "params": ("dataset", "n", "d", "labels", "label_noise", "flip", "family", "depth", "training",
               "params_target"),
    "n": ("dataset", "d", "family", "width", "depth", "labels", "label_noise", "flip", "training"),
    "d": ("dataset", "n", "family", "width", "depth", "labels", "label_noise", "flip", "training"),
    "d_intrinsic": ("dataset", "n", "family", "width", "depth", "labels", "label_noise", "flip", "training"),
    "p/n": ("dataset", "d", "labels", "label_noise", "flip", "family", "depth", "training"),
    "p/(n*d)": ("dataset", "labels", "label_noise", "flip", "family", "depth", "training"),
}
# fields always named in a group's label (the rest only where groups differ in them)
_LABEL_ALWAYS = ("dataset", "n", "d", "width")


def _group_value(v: Any) -> Any:
    # 1348 and 1348.0 (report rows carry floats) are the same group; NaN counts as unknown
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    return v


def group_key(row: Mapping[str, Any], against: str) -> tuple:
    """The values of :data:`GROUP_KEYS` ``[against]`` for one row (NaN and missing read as None)."""
    if against not in GROUP_KEYS:
        raise UserError(f"cannot group for {against!r}; use one of {', '.join(GROUP_KEYS)}")
    return tuple(_size(row) if k == "width" else _group_value(row.get(k)) for k in GROUP_KEYS[against])


def _size(row: Mapping[str, Any]) -> Any:
    """The width, or ``p=N`` for a run of an arm at fixed p (its width follows d or n)."""
    target = _group_value(row.get("params_target"))
    return f"p={target}" if target is not None else _group_value(row.get("width"))


def _variable(row: Mapping[str, Any], against: str) -> Any:
    p, n, d = row.get("params"), row.get("n"), row.get("d")
    if against == "p/n":
        return p / n if p and n else None
    if against == "p/(n*d)":
        return p / (n * d) if p and n and d else None
    v = _group_value(row.get(against))
    return v


def comparable_groups(rows: Iterable[Mapping[str, Any]], against: str, *,
                      min_distinct: int = 2) -> list[tuple[str, list]]:
    """Split rows into groups in which only the fitted variable (and what it forces) varies.

    A fit of a response against p mixing data sets, label noise or architectures is meaningless:
    its slope is driven by the differences between the groups. Rows are grouped on
    :data:`GROUP_KEYS` ``[against]``: for ``params`` the same (dataset, n, d, labels, label_noise,
    flip, family, depth); for ``n`` the same (dataset, d, family, width, depth, labels, label_noise,
    flip); for ``d`` the same (dataset, n, family, width, depth, labels, label_noise, flip).

    Parameters
    ----------
    rows : rows as from :func:`advrobust.compare.collect_rows` (missing fields read as None)
    against : ``params``, ``n``, ``d``, ``p/n`` or ``p/(n*d)``
    min_distinct : groups with fewer distinct (known) values of the variable are left out
        (default 2: the groups a fit can be made on)

    Returns
    -------
    list of ``(label, rows)`` in first-seen order; ``label`` names the group, e.g.
    ``"digits n=1348 d=64"`` (the data set, the fixed n, d and width, and any other field in which
    groups differ).
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(group_key(r, against), []).append(r)
    # the intrinsic dimension is estimated per run, so runs of one data set differ in it by estimation
    # noise (and by training subset): a group varies in it only where the data (pixel count d) differ
    counted = "d" if against == "d_intrinsic" else against
    keys = GROUP_KEYS[against]
    varying = {k for i, k in enumerate(keys) if len({g[i] for g in groups}) > 1}
    out = []
    for gk, members in groups.items():
        if len({v for v in (_variable(r, counted) for r in members) if v is not None}) < min_distinct:
            continue
        parts = []
        for k, v in zip(keys, gk):
            if v is None or (k not in _LABEL_ALWAYS and k not in varying):
                continue
            if k == "params_target":
                continue  # named by the size (width=p=N) where it matters
            if k == "width" and isinstance(v, str) and v.startswith("p="):
                parts.append(f"p≈{v[2:]}")
                continue
            parts.append(str(v) if k == "dataset" else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
        out.append((" ".join(parts) or "all runs", members))
    return out


def interpolation_thresholds(rows: Iterable[Mapping[str, Any]]) -> dict:
    """Smallest p that memorises (train accuracy 1.0) per group of runs comparable in p.

    Keys are :func:`group_key` ``(row, "params")``: (dataset, n, d, labels, label_noise, flip,
    family, depth), so a threshold never mixes data sets, label noise or architectures. Values are
    None where no run of the group memorises.
    """
    out: dict = {}
    for r in rows:
        key = group_key(r, "params")
        out.setdefault(key, None)
        acc = r.get("train_accuracy")
        if acc is not None and acc >= 1.0 - 1e-12 and r.get("params") is not None:
            out[key] = r["params"] if out[key] is None else min(out[key], r["params"])
    return out


def fit_law(rows: Sequence[Mapping[str, Any]], *, response: str = "train_radius_median",
            against: str = "params", regime: str = "beyond", norm: str = "l2", unit_scale: bool = True,
            bootstrap: int = 2000, seed: int = 0, delta: float = 0.01, pool: bool = False) -> dict:
    """Fit ``response ~ C * against ** exponent`` over comparison rows and set the law beside it.

    Parameters
    ----------
    rows : rows from :func:`advrobust.compare.collect_rows`
    response : a row field, looked up as given or as ``<norm>_<response>`` (e.g.
        ``train_radius_median``, ``test_radius_median``, ``lip_lower``, ``lip_upper``)
    against : ``params``, ``n``, ``d``, ``d_intrinsic``, ``p/n`` or ``p/(n*d)``. Against
        ``d_intrinsic`` (the dimension of the data's distribution, the law's d: see
        :mod:`advrobust.intrinsic`) each run's x is the mean of ``d_intrinsic`` over the fitted runs
        with its pixel count d, so seeds of one data set share one estimate
    regime : ``beyond`` (runs that interpolate, train accuracy 1.0, at a p at or above their group's
        interpolation threshold, the smallest p with a run that interpolates: a run of another seed
        that did not interpolate at such a p is left out and listed in ``excluded``),
        ``interpolating`` (every run with train accuracy 1.0, whatever its p), ``below`` (p under
        the threshold) or ``all``
    norm : attack norm of the response (``l1``, ``l2``, ``linf``)
    unit_scale : convert to the law's unit-scale data (Lipschitz * s, radii / s) where every
        row has ``input_scale``
    pool : fit rows from several :func:`comparable_groups` together (default False: such rows are
        a UserError, since the slope would mix data sets or architectures; fit each group instead)

    Returns
    -------
    dict: ``group`` (the label of the rows' comparable group), ``fit`` (see :func:`fit_power_law`), ``predicted_exponent`` (None when the law predicts
    none for this variable), ``within_ci``, ``constant`` (fit of ``C`` in ``C * sqrt(n d / p)``,
    or ``C * sqrt(p / (n d))`` for radii, with the slope fixed), ``theorem3`` (the literal bound per
    row and which hypotheses fail), ``rows_used``, ``excluded``, ``thresholds``.

    Raises
    ------
    UserError
        Unknown regime or variable, a response absent from the rows, fewer than two usable rows, or
        rows from several comparable groups without ``pool``.
    """
    # Half of this function is its docstring; the rows are chosen by _fit_points, the law's
    # pooled intrinsic dimension and Theorem 3 per row by the helpers below.
    if regime not in _REGIMES:
        raise UserError(f"unknown regime {regime!r}; use one of {', '.join(_REGIMES)}")
    if against not in _AGAINST:
        raise UserError(f"cannot fit against {against!r}; use one of {', '.join(_AGAINST)}")
    rows = list(rows)
    if not rows:
        raise UserError("no rows to fit")
    if not any(response in r or f"{norm}_{response}" in r for r in rows):
        raise UserError(f"unknown response {response!r} (looked for {response!r} and {norm}_{response!r}); "
                        "use e.g. train_radius_median, test_radius_median, lip_lower, lip_upper")
    groups = comparable_groups(rows, against, min_distinct=0)
    if len(groups) > 1 and not pool:
        raise UserError(f"the rows mix {len(groups)} groups that differ in more than {against} "
                        f"({'; '.join(g for g, _ in groups)}); fit each group separately "
                        "(advrobust.law.comparable_groups, or --filter in advrobust.compare)")
    kind = _kind(response)
    thresholds = interpolation_thresholds(rows)
    use_scale = unit_scale and all(isinstance(r.get("input_scale"), (int, float)) and r["input_scale"] > 0
                                   for r in rows)
    xs, ys, used, excluded, law_x = _fit_points(rows, response=response, against=against, regime=regime, norm=norm,
                                                thresholds=thresholds, use_scale=use_scale)
    if len(set(xs)) < 2:
        why: dict = {}
        for e in excluded:
            key = e["why"].split(" (")[0]
            why[key] = why.get(key, 0) + 1
        left = "; left out: " + ", ".join(f"{k} {v}" for k, v in why.items()) if why else ""
        raise UserError(f"need at least two runs with distinct {against} and a usable {response} in regime "
                        f"{regime!r} (have {len(xs)}{left}); train more sizes, or longer so that they interpolate, "
                        "or fit with regime='all'")
    fit = fit_power_law(xs, ys, bootstrap=bootstrap, seed=seed)
    var = _LAW_VARIABLE.get(against, against)
    predicted = PREDICTED[kind].get(var)
    within = None
    if predicted is not None and fit["ci_low"] is not None:
        within = fit["ci_low"] <= predicted <= fit["ci_high"]
    constant = None
    if all(v is not None for v in law_x):
        constant = fixed_slope_constant(law_x, ys, exponent=0.5 if kind == "lipschitz" else -0.5)
        constant["form"] = "lip = C * sqrt(n d / p)" if kind == "lipschitz" else \
            "radius = C * sqrt(p / (n d))  (heuristic)"
    theorem = [_theorem3_row(r, use_scale=use_scale, delta=delta) for r in rows if r.get("run") in used]
    return {"group": groups[0][0] if len(groups) == 1 else "pooled: " + "; ".join(g for g, _ in groups),
            "response": response, "against": against, "regime": regime, "norm": norm,
            "kind": kind, "unit_scale": use_scale, "fit": fit, "predicted_exponent": predicted,
            "within_ci": within, "constant": constant, "theorem3": theorem, "rows_used": used,
            "excluded": excluded, "x": xs, "y": ys,
            "thresholds": [dict(zip(GROUP_KEYS["params"], k), params=v) for k, v in thresholds.items()],
            "groups": len(groups),
            "note": ("the law predicts the exponent for Lipschitz lower bounds (Theorem 3)" if kind == "lipschitz"
                     else "radius exponents follow from radius ~ margin / Lip: a heuristic reading of the "
                          "law, not the theorem")}


def _pooled_intrinsic(rows: Sequence[Mapping[str, Any]]) -> dict:
    """Mean ``d_intrinsic`` over the rows of each pixel count d (seeds of one data set share one x)."""
    pooled_dint: dict = {}
    for r in rows:
        v = r.get("d_intrinsic")
        if isinstance(v, (int, float)) and math.isfinite(v) and v > 0:
            pooled_dint.setdefault(_group_value(r.get("d")), []).append(float(v))
    return {k: sum(v) / len(v) for k, v in pooled_dint.items()}


def _fit_points(rows: Sequence[Mapping[str, Any]], *, response: str, against: str, regime: str, norm: str,
                thresholds: dict, use_scale: bool) -> tuple[list, list, list, list, list]:
    """The rows :func:`fit_law` fits: ``(xs, ys, used run names, excluded {run, why}, n d / p per used
    row)``, y in unit-scale coordinates where ``use_scale``."""
    kind = _kind(response)
    pooled_dint = _pooled_intrinsic(rows) if against == "d_intrinsic" else {}
    xs, ys, used, excluded, law_x = [], [], [], [], []
    for r in rows:
        name = r.get("run", "?")
        thr = thresholds.get(group_key(r, "params"))
        p = r.get("params")
        acc = r.get("train_accuracy")
        fits_data = acc is not None and acc >= 1.0 - 1e-12
        beyond = thr is not None and p is not None and p >= thr
        if regime == "beyond" and not beyond:
            excluded.append({"run": name, "why": "below the interpolation threshold"})
            continue
        if regime in ("beyond", "interpolating") and not fits_data:
            excluded.append({"run": name, "why": f"did not interpolate (train accuracy {acc!r})"})
            continue
        if regime == "below" and beyond:
            excluded.append({"run": name, "why": "at or beyond the interpolation threshold"})
            continue
        try:
            yv = _value(r, response, norm)
        except KeyError:
            yv = None
        if against == "p/n":
            xv = p / r["n"] if p and r.get("n") else None
        elif against == "p/(n*d)":
            xv = p / (r["n"] * r["d"]) if p and r.get("n") and r.get("d") else None
        elif against == "d_intrinsic":
            xv = pooled_dint.get(_group_value(r.get("d")))
        else:
            xv = r.get(against)
        if yv is None or xv is None or not (isinstance(yv, (int, float)) and math.isfinite(yv) and yv > 0):
            excluded.append({"run": name, "why": f"{response} missing, zero or infinite ({yv!r})"})
            continue
        if use_scale:
            yv = yv * r["input_scale"] if kind == "lipschitz" else yv / r["input_scale"]
        xs.append(float(xv))
        ys.append(float(yv))
        used.append(name)
        law_x.append(r["n"] * r["d"] / p if p and r.get("n") and r.get("d") else None)
    return xs, ys, used, excluded, law_x


def _theorem3_row(r: Mapping[str, Any], *, use_scale: bool, delta: float) -> dict:
    """The literal Theorem 3 value for one fitted row (interpolating fits: training MSE 0, eps =
    sigma^2) and the hypotheses it fails or that are unknown."""
    sigma2, sig_why = noise_level(r)
    c, c_why = isoperimetry_constant(r.get("dataset"))
    fails = []
    if c is None:
        fails.append("isoperimetry: " + c_why)
    if not use_scale:
        fails.append("unit scale: input scale unknown, values are in pixel units")
    fails.append("W*J: unknown for a trained network (W*J = 1 assumed; it enters through a log)")
    acc = r.get("train_accuracy")
    if sigma2 is None or sigma2 <= 0:
        fails.append("noise level: " + (sig_why if sigma2 is None else "clean labels, sigma^2 = 0: "
                                        "the theorem says nothing (no fit can be below the noise level)"))
        return {"run": r.get("run"), "value": None, "hypotheses_failing": fails}
    if acc is None or acc < 1.0 - 1e-12:
        fails.append("fit: the model does not interpolate, its training MSE (hence eps) is unknown")
        return {"run": r.get("run"), "value": None, "hypotheses_failing": fails}
    bound = theorem3_bound(n=r["n"], d=r["d"], p=r["params"], eps=sigma2, c=c or 1.0, delta=delta)
    if not bound["sample_condition"]:
        fails.append(f"sample size: n eps^2 = {r['n'] * sigma2 ** 2:.4g} < 8^4 log(8/delta) = "
                     f"{8 ** 4 * math.log(8 / delta):.4g} (needs n >= {bound['needed_n']})")
    return {"run": r.get("run"), "value": bound["value"], "eps": sigma2, "noise": sig_why,
            "hypotheses_failing": fails,
            "note": "eps = sigma^2 taking the interpolating fit's training MSE as 0 "
                    "(f = the margin rescaled and clipped to +-1)"}
