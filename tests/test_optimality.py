"""Minimal attacks against the exact radii of linear classifiers (with active box constraints).

Ground truth: :func:`_linear_reference.linear_radii`, itself checked here against scipy's
LP (L1, Linf) and SLSQP (L2) solvers. Tolerances: every minimal attack must succeed on every
sample; median radius / exact <= 1.01 in L2 and <= 1.02 in L1 and Linf (their steps move whole
coordinates, so the last step overshoots more), every sample within 1.10, and no verified radius
may lie below the exact one.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from advrobust.evaluate import verify
from attacks import ATTACKS
from tests._linear_reference import linear_radii, model_affine
from tests._nets import linear_problem

INF = math.inf


# --------------------------------------------------------------------------- exact radii vs scipy
def _scipy_radius(W, b, x, y, p):
    from scipy.optimize import linprog, minimize

    z = W @ x + b
    if z.argmax() != y:
        return 0.0
    D = len(x)
    best = INF
    for j in range(len(b)):
        if j == y:
            continue
        a, c = W[y] - W[j], z[y] - z[j]
        lo, hi = -x, 1 - x
        if p == 1:  # delta = u - v, u, v >= 0
            r = linprog(np.ones(2 * D), A_ub=np.concatenate([a, -a])[None], b_ub=[-c],
                        bounds=[(0, h) for h in hi] + [(0, -l) for l in lo], method="highs")
            if r.status == 0:
                best = min(best, r.fun)
        elif p == INF:  # variables (delta, s): minimise s, |delta_i| <= s
            eye = np.eye(D)
            A = np.vstack([np.concatenate([a, [0.0]]), np.hstack([eye, -np.ones((D, 1))]),
                           np.hstack([-eye, -np.ones((D, 1))])])
            r = linprog(np.r_[np.zeros(D), 1.0], A_ub=A, b_ub=np.r_[-c, np.zeros(2 * D)],
                        bounds=list(zip(lo, hi)) + [(0, None)], method="highs")
            if r.status == 0:
                best = min(best, r.fun)
        else:
            r = minimize(lambda d: d @ d, np.zeros(D), jac=lambda d: 2 * d, bounds=list(zip(lo, hi)),
                         constraints=[{"type": "ineq", "fun": lambda d, a=a, c=c: -c - a @ d, "jac": lambda d, a=a: -a}],
                         method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
            if r.success and -c - a @ r.x > -1e-9:
                best = min(best, math.sqrt(r.fun))
    return best


def _box_case(rng, D, K):
    """Random affine classifier and a point with ~40% of its pixels at 0 or 1 (box often active)."""
    W = rng.normal(size=(K, D))
    b = rng.normal(size=K)
    x = rng.uniform(size=D)
    at_edge = rng.uniform(size=D) < 0.4
    x[at_edge] = rng.integers(0, 2, size=at_edge.sum())
    return W, b, x


@pytest.mark.parametrize("norm", [1.0, 2.0, INF])
def test_linear_radius_matches_scipy(norm):
    rng = np.random.default_rng(int(norm) if norm != INF else 7)
    active = 0
    for t in range(25):
        D, K = int(rng.integers(2, 10)), int(rng.integers(2, 5))
        W, b, x = _box_case(rng, D, K)
        y = int((W @ x + b).argmax()) if t % 4 else int(rng.integers(0, K))
        r, delta = linear_radii(W, b, x[None], np.array([y]), norm=norm, return_delta=True)
        ref = _scipy_radius(W, b, x, y, norm)
        if math.isinf(ref):
            assert math.isinf(r[0])
            continue
        assert r[0] == pytest.approx(ref, rel=1e-5, abs=1e-8)
        if r[0] > 0:
            xd = x + delta[0]
            assert xd.min() >= -1e-12 and xd.max() <= 1 + 1e-12
            n = {1.0: np.abs(delta).sum(), 2.0: np.linalg.norm(delta), INF: np.abs(delta).max()}[norm]
            assert n == pytest.approx(r[0], rel=1e-9)
            # the minimiser reaches the boundary: class y no longer strictly ahead of all others
            z = W @ (x + delta[0] * (1 + 1e-6)) + b
            assert z.argmax() != y
            moved = np.abs(delta[0]) > 1e-12
            active += bool(np.any(moved & ((np.abs(xd) < 1e-12) | (np.abs(xd - 1) < 1e-12))))
    assert active >= 3  # the box constraint mattered in several cases


def test_linear_radius_unreachable_and_misclassified():
    W = np.array([[1.0, 0.0], [0.0, 0.0]])
    b = np.array([5.0, 0.0])  # class 0 wins everywhere in the box
    x = np.array([[0.5, 0.5], [0.2, 0.9]])
    assert np.isinf(linear_radii(W, b, x, np.array([0, 0]), norm=2.0)).all()
    assert (linear_radii(W, b, x, np.array([1, 1]), norm=2.0) == 0).all()  # already misclassified
    with pytest.raises(ValueError):
        linear_radii(W, b, x, np.array([0, 0]), norm=3.0)


# --------------------------------------------------------------------------- attacks vs exact radii
MINIMAL = [(name, p) for name, info in ATTACKS.items() if info.kind == "minimal" for p in info.norms]
# eps-search attacks run a budget attack per search round: fewer steps keep them cheap
STEPS = {"pgd-min": 10, "apgd-min": 10, "fab": 30}


@pytest.mark.parametrize("name,norm", MINIMAL, ids=[f"{n}-{p}" for n, p in MINIMAL])
def test_minimal_attack_near_exact_radius(name, norm):
    model, x, y = linear_problem()
    W, b = model_affine(model)
    exact = linear_radii(W, b, x.numpy(), y.numpy(), norm=norm)
    # with ~40% of pixels at the box edge, the box constraint is active for some samples
    _, delta = linear_radii(W, b, x.numpy(), y.numpy(), norm=norm, return_delta=True)
    xd = x.numpy() + delta
    assert (((np.abs(xd) < 1e-9) | (np.abs(xd - 1) < 1e-9)) & (np.abs(delta) > 1e-9)).any(1).sum() >= 2
    adv = ATTACKS[name].fn(model, x, y, norm=norm, steps=STEPS.get(name, 100))
    r, oob, nan = verify(model, x, y, adv, norm=norm)
    r = r.numpy()
    assert not oob.any() and not nan.any()
    assert np.isfinite(r).all(), f"{name} failed on {int((~np.isfinite(r)).sum())} of {len(r)} samples"
    ratio = r / exact
    tol = 1.01 if norm == 2.0 else 1.02
    assert np.median(ratio) <= tol, f"{name} median radius ratio {np.median(ratio):.4f} > {tol}"
    assert ratio.max() <= 1.10, f"{name} worst radius ratio {ratio.max():.4f}"
    assert ratio.min() >= 1 - 1e-4  # a verified point closer than the exact optimum is impossible
