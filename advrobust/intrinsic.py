"""Intrinsic dimension of a point cloud: the d of the law of robustness for real data.

The law's bound ``Lip >~ sqrt(n d / p)`` (Bubeck & Sellke 2021) takes d from the isoperimetry of
the data's distribution: for the uniform distribution on a k-dimensional sphere (or a Gaussian on a
k-dimensional subspace) embedded in R^D the relevant d is k, not D. Resizing images changes the
pixel count D while the images' distribution may keep nearly the same dimension; these estimators
say how many dimensions the points actually spread in.

Two nearest-neighbour estimators, both invariant to scaling the data (they use only ratios of
distances), so the coordinate convention (pixels in [0, 1] or unit norm) does not matter:

``mle``
    Levina & Bickel, "Maximum likelihood estimation of intrinsic dimension", NIPS 2004, with the
    unbiased normalisation ``1 / (k - 2)`` of their equation (9) and the pooling of MacKay &
    Ghahramani (2005): the inverse of the mean of the per-point inverse estimates, which is the
    maximum-likelihood estimate over all points together (averaging the per-point estimates
    themselves, as in the paper, is biased upwards).
``two_nn``
    Facco, d'Errico, Rodriguez & Laio, "Estimating the intrinsic dimension of datasets by a minimal
    neighborhood information", Scientific Reports 7, 12140 (2017): the ratios ``mu = r2 / r1`` of
    each point's second to first neighbour distance follow a Pareto law ``F(mu) = 1 - mu^-d``; d is
    the slope through the origin of ``-log(1 - F)`` against ``log mu``, with the largest 10% of the
    ratios discarded as in the paper.

Both see the points as given; exact duplicates (zero distances, e.g. identical low-resolution
images) are removed first, since a zero distance makes the logarithms infinite.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import runs
from .data import load_dataset
from .errors import UserError

#: neighbours of the Levina-Bickel estimate (they recommend k between 10 and 20)
DEFAULT_K = 20
#: share of the largest ratios r2/r1 left out of the two-NN fit (Facco et al. 2017 use 10%)
DEFAULT_DISCARD = 0.1
#: at most this many points enter an estimate (a deterministic subsample beyond it): the
#: neighbour search is quadratic in the number of points
DEFAULT_MAX_POINTS = 5000


def known_dimension(dataset: Any, d: Any) -> int | None:
    """The exact dimension of a synthetic data set's distribution: ``d - 1`` for points on the sphere
    S^(d-1), ``d`` for the Gaussian; None for real data (estimate it) or an unknown ``d``."""
    if not d:
        return None
    return {"sphere": d - 1, "gaussian": d}.get(dataset)


def _points(x: Any, *, max_points: int | None, seed: int) -> np.ndarray:
    """(N, D) float64 array of distinct points, subsampled to ``max_points`` by ``seed``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"need an (N, ...) array of N points, got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    if not np.isfinite(a).all():
        raise ValueError("the points contain NaN or infinite values")
    a = np.unique(a, axis=0)
    if max_points is not None and a.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(a.shape[0], size=max_points, replace=False))
        a = a[keep]
    return a


def _neighbour_distances(a: np.ndarray, k: int) -> np.ndarray:
    """(N, k) distances of each point to its k nearest other points, ascending."""
    from sklearn.neighbors import NearestNeighbors  # slow to import (2 s here); only these estimates use it

    nn = NearestNeighbors(n_neighbors=k + 1).fit(a)
    dist, _ = nn.kneighbors(a)
    return dist[:, 1:]  # column 0 is the point itself


def levina_bickel(x: Any, *, k: int = DEFAULT_K, max_points: int | None = DEFAULT_MAX_POINTS, seed: int = 0) -> float:
    """Maximum-likelihood intrinsic dimension with ``k`` neighbours (Levina & Bickel 2004).

    Parameters
    ----------
    x : array or tensor of shape (N, ...), one point per row (flattened)
    k : neighbours per point (at least 3; at most N - 1)
    max_points : largest number of points used (a seeded subsample beyond it); None: all
    seed : seeds that subsample

    Returns
    -------
    float : ``[mean_i 1/m_i]^-1`` with ``m_i = (k - 2) / sum_{j<k} log(T_k(x_i) / T_j(x_i))``,
    T_j the distance to the j-th neighbour.

    Raises
    ------
    ValueError
        k < 3, fewer than k + 1 distinct points, or non-finite values.
    """
    if int(k) != k or k < 3:
        raise ValueError(f"k must be an integer >= 3, got {k!r}")
    k = int(k)
    a = _points(x, max_points=max_points, seed=seed)
    if a.shape[0] < k + 1:
        raise ValueError(f"need at least k + 1 = {k + 1} distinct points, got {a.shape[0]}")
    t = _neighbour_distances(a, k)  # (N, k), > 0 since duplicates are gone
    logs = np.log(t[:, -1:] / t[:, :-1]).sum(axis=1)  # (N,) sum_{j<k} log(T_k / T_j)
    inverse = logs / (k - 2)  # 1 / m_i
    return float(1.0 / inverse.mean())


def two_nn(x: Any, *, discard: float = DEFAULT_DISCARD, max_points: int | None = DEFAULT_MAX_POINTS,
           seed: int = 0) -> float:
    """Two-nearest-neighbour intrinsic dimension (Facco et al. 2017).

    Parameters
    ----------
    x : array or tensor of shape (N, ...), one point per row (flattened)
    discard : share of the largest ratios r2/r1 left out of the fit (in [0, 1))
    max_points, seed : as in :func:`levina_bickel`

    Returns
    -------
    float : slope through the origin of ``-log(1 - F_emp(mu))`` against ``log mu``, mu = r2 / r1.

    Raises
    ------
    ValueError
        fewer than 3 distinct points, ``discard`` outside [0, 1), or non-finite values.
    """
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard must be in [0, 1), got {discard!r}")
    a = _points(x, max_points=max_points, seed=seed)
    if a.shape[0] < 3:
        raise ValueError(f"need at least 3 distinct points, got {a.shape[0]}")
    t = _neighbour_distances(a, 2)
    mu = np.sort(t[:, 1] / t[:, 0])  # (N,) >= 1
    n = mu.size
    f = np.arange(1, n + 1) / n  # empirical CDF at the sorted ratios
    keep = max(2, int(np.floor(n * (1.0 - discard))))
    keep = min(keep, n - 1)  # F = 1 at the last point: -log(0) is infinite
    xs = np.log(mu[:keep])
    ys = -np.log1p(-f[:keep])
    return float((xs * ys).sum() / (xs * xs).sum())


def estimate(x: Any, *, k: int = DEFAULT_K, max_points: int | None = DEFAULT_MAX_POINTS, seed: int = 0) -> dict:
    """Both estimates and how they were made, as recorded in ``run.json`` (``intrinsic_dim``).

    Returns
    -------
    dict ``mle`` (:func:`levina_bickel`), ``two_nn`` (:func:`two_nn`), ``k``, ``points`` (distinct
    points used), ``ambient`` (the pixel or coordinate count D) and ``method`` (references).
    """
    a = _points(x, max_points=max_points, seed=seed)
    return {"mle": levina_bickel(a, k=k, max_points=None), "two_nn": two_nn(a, max_points=None), "k": int(k),
            "points": int(a.shape[0]), "ambient": int(a.shape[1]),
            "method": "mle: Levina & Bickel (2004), unbiased 1/(k-2), MacKay-Ghahramani pooling; "
                      "two_nn: Facco et al. (2017), 10% largest ratios discarded"}


# --------------------------------------------------------------------------- runs
def run_record(x_train: Any, meta: dict, *, k: int | None = None) -> dict:
    """The training inputs' intrinsic dimension as recorded in ``run.json`` (``intrinsic_dim``).

    Both estimates of :func:`estimate` (Levina-Bickel MLE and two-NN), plus ``known``: the exact
    dimension of the distribution for synthetic data (``dim - 1`` on the sphere S^(dim-1), ``dim``
    for the Gaussian), None otherwise. Where the points are too few for an estimate, ``error`` says
    why and the estimates are None.
    """
    known = known_dimension(meta.get("name"), meta.get("d"))
    try:
        est = estimate(x_train, k=k or DEFAULT_K)
    except ValueError as exc:
        est = {"mle": None, "two_nn": None, "error": str(exc)}
    return {**est, "known": known}


def record_runs(paths: Sequence[str | os.PathLike], *, k: int = DEFAULT_K) -> list[dict]:
    """Estimate and record the intrinsic dimension of each run's training inputs in its
    ``intrinsic.json`` (for runs trained before ``run.json`` held it; ``paths``: run directories or
    folders holding them). Returns ``{"run", **record}`` per run."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 3:
        raise UserError(f"--k must be an integer >= 3, got {k}")
    out = []
    for path in runs.find_runs(paths):
        meta = runs.read_run_record(path, require_spec=True)  # spec.data rebuilds the training inputs
        ds = load_dataset(**meta["spec"]["data"])
        rec = run_record(ds.x_train, ds.meta, k=k)
        with runs.run_lock(path):
            runs.atomic_write_json(Path(path) / "intrinsic.json", rec)
        out.append({"run": str(path), **rec})
    return out


if __name__ == "__main__":
    from advrobust.cli._common import run_main
    from advrobust.cli.intrinsic import main

    raise SystemExit(run_main(main))
