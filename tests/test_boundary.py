"""The boundary attack: its exact step solver, its starting points, and exact radii on a memorising net.

(The attack contract and the linear-model optimality bound are checked for it, as for every
registered attack, in ``test_conformance.py`` and ``test_optimality.py``.)
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from advrobust import runs
from advrobust.evaluate import DEFAULT_CASCADES, make_attack, run_cascade, verify
from attacks._geometry import project_plane_in_box
from attacks.boundary import boundary
from attacks.starts import ball_starts, coordinate_starts, far_starts, ray_starts

pytestmark = pytest.mark.usefixtures("one_thread")
INF = math.inf
DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- the step's solver
def _scipy_plane_box(w, c, lo, hi, p):
    """min ||d||_p s.t. w.d = c, lo <= d <= hi by scipy (LP for L1/Linf, SLSQP for L2); None if infeasible."""
    from scipy.optimize import linprog, minimize

    D = len(w)
    if p == 2:
        r = minimize(lambda x: x @ x, np.clip(0, lo, hi), jac=lambda x: 2 * x, bounds=list(zip(lo, hi)),
                     constraints=[{"type": "eq", "fun": lambda x: w @ x - c, "jac": lambda x: w}], method="SLSQP",
                     options={"ftol": 1e-15, "maxiter": 1000})
        return math.sqrt(r.fun) if r.success and abs(w @ r.x - c) < 1e-8 else None
    if p == 1:  # variables (d, s), |d_i| <= s_i
        A = np.block([[np.eye(D), -np.eye(D)], [-np.eye(D), -np.eye(D)]])
        r = linprog(np.r_[np.zeros(D), np.ones(D)], A_ub=A, b_ub=np.zeros(2 * D), A_eq=np.r_[w, np.zeros(D)][None],
                    b_eq=[c], bounds=list(zip(lo, hi)) + [(0, None)] * D, method="highs")
    else:  # variables (d, t), |d_i| <= t
        A = np.block([[np.eye(D), -np.ones((D, 1))], [-np.eye(D), -np.ones((D, 1))]])
        r = linprog(np.r_[np.zeros(D), 1.0], A_ub=A, b_ub=np.zeros(2 * D), A_eq=np.r_[w, 0.0][None], b_eq=[c],
                    bounds=list(zip(lo, hi)) + [(0, None)], method="highs")
    return r.fun if r.status == 0 else None


@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_plane_in_box_is_exact_for_boxes_without_the_origin(p, zeros):
    """The trust-region step: the minimal-norm point of a plane inside a box that need not contain 0
    (with zero weights, which take the slower path that handles infinite knots)."""
    rng = np.random.default_rng(3)
    compared = outside = 0
    for _ in range(40):
        D = int(rng.integers(2, 12))
        w, c = rng.normal(size=D), float(rng.normal())
        if zeros:
            w[rng.permutation(D)[:max(1, D // 3)]] = 0.0
        lo = rng.uniform(-1, 0.5, size=D)
        hi = lo + rng.uniform(0.05, 1.5, size=D)
        outside += bool((lo > 0).any() or (hi < 0).any())
        d, feas = project_plane_in_box(torch.tensor(w)[None], torch.tensor([c]), torch.tensor(lo)[None],
                                       torch.tensor(hi)[None], p)
        d = d[0].numpy()
        assert (d >= lo - 1e-12).all() and (d <= hi + 1e-12).all()
        ref = _scipy_plane_box(w, c, lo, hi, p)
        if ref is None:
            if p != 2:  # (SLSQP also fails on feasible problems; the LPs do not)
                assert not bool(feas[0])
            continue
        assert bool(feas[0])
        assert w @ d == pytest.approx(c, abs=1e-7)
        val = {1.0: np.abs(d).sum(), 2.0: np.linalg.norm(d), INF: np.abs(d).max()}[p]
        assert val == pytest.approx(ref, rel=1e-6, abs=1e-9)
        compared += 1
    assert compared >= 20 and outside >= 20


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_plane_in_box_rows_are_independent(p):
    """A batch gives each row what it gets alone, whether or not another row of the batch has a zero
    weight (which switches the whole batch to the path with infinite knots)."""
    rng = np.random.default_rng(5)
    n, D = 16, 7
    w = torch.tensor(rng.normal(size=(n, D)))
    c = torch.tensor(rng.normal(size=n))
    lo = torch.tensor(rng.uniform(-1, 0.5, size=(n, D)))
    hi = lo + torch.tensor(rng.uniform(0.05, 1.5, size=(n, D)))
    for wz in (w, torch.cat([w[:1] * torch.tensor([0.0] + [1.0] * (D - 1), dtype=w.dtype), w[1:]])):
        d, feas = project_plane_in_box(wz, c, lo, hi, p)
        for i in range(n):
            di, fi = project_plane_in_box(wz[i:i + 1], c[i:i + 1], lo[i:i + 1], hi[i:i + 1], p)
            assert bool(fi[0]) == bool(feas[i])
            torch.testing.assert_close(di[0], d[i], rtol=1e-12, atol=1e-12)


def test_plane_in_box_reports_unreachable_planes():
    w = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    lo, hi = torch.tensor([[0.5, 0.5]], dtype=torch.float64), torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    for p in (1.0, 2.0, INF):
        d, feas = project_plane_in_box(w, torch.tensor([5.0], dtype=torch.float64), lo, hi, p)
        assert not bool(feas[0])
        assert torch.allclose(d, hi)  # the box point nearest the plane


@pytest.mark.parametrize("p", [1.0, INF])
def test_batched_polish_lp_matches_one_lp_per_row(p):
    """The polish solves many rows' cut problems as one block-diagonal LP with an elastic slack per
    row: each row's optimum and feasibility must be those of its own LP (boxes with and without the
    origin; rows whose cuts the box cannot meet)."""
    from attacks.boundary import _lp_batch, _lp_step

    rng = np.random.default_rng(3)
    r_n, m, dim = 12, 3, 9
    G = rng.normal(size=(r_n, m, dim))
    e = rng.normal(size=(r_n, m)) - 0.5
    lo, hi = -rng.uniform(0, 0.6, size=(r_n, dim)), rng.uniform(0, 0.6, size=(r_n, dim))
    lo[:3] += 0.4
    hi[:3] += 0.4  # boxes that do not contain 0
    e[3:5] = -30.0  # cuts out of the box's reach
    scale = np.abs(G).sum(-1) if p == INF else np.abs(G).max(-1)  # unit dual norm, as the polish scales them
    d, feasible = _lp_batch(G / scale[..., None], e / scale, lo, hi, p)
    for i in range(r_n):
        ref = _lp_step(G[i], e[i], lo[i], hi[i], p)
        assert bool(feasible[i]) == (ref is not None), i
        if ref is None:
            continue
        norm = (lambda v: np.abs(v).max()) if p == INF else (lambda v: np.abs(v).sum())
        assert norm(d[i]) == pytest.approx(norm(ref), rel=1e-7, abs=1e-10)
        assert (G[i] @ d[i] - e[i]).max() <= 1e-8
        assert np.all(d[i] >= lo[i]) and np.all(d[i] <= hi[i])
    assert feasible.sum() >= 4 and not feasible[3:5].any()  # both kinds of row are tested


# --------------------------------------------------------------------------- starts
def _net(seed=0, d=10, k=3, width=24):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, k)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
            layer.bias.copy_(0.3 * torch.randn(layer.bias.shape, generator=g))
    x = torch.rand(30, d, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_far_and_ray_starts_are_adversarial_and_on_the_boundary(p):
    model, x, y = _net()
    starts, found = far_starts(model, x[:8], y[:8], norm=p, pool=x, keep=5, random=6)
    assert starts.shape == (8, 5, 10) and found.shape == (8, 5) and found.any(1).all()
    rs, rfound = ray_starts(model, x[:8], y[:8], starts[:, 0], norm=p, rays=6)
    for pts, ok in ((starts, found), (rs, rfound)):
        s = pts[ok]
        owner = ok.nonzero()[:, 0]
        with torch.no_grad():
            assert (model(s).argmax(1) != y[:8][owner]).all()  # adversarial
            # bisected onto the boundary: a step of 1e-3 of the way back towards the input is not
            back = x[:8][owner] + (1 - 1e-3) * (s - x[:8][owner])
            assert (model(back).argmax(1) == y[:8][owner]).float().mean() >= 0.9
        assert ((pts[~ok] == x[:8].unsqueeze(1).expand_as(pts)[~ok]).all())  # "none" rows are the input


def test_coordinate_starts_move_one_coordinate_onto_the_boundary():
    model, x, y = _net()
    starts, found = coordinate_starts(model, x, y, keep=3, coords=10, grid=16)
    assert starts.shape == (30, 3, 10) and found.shape == (30, 3)
    # (one coordinate alone cannot break every point of this net, but it breaks several)
    assert found.any(1).sum() >= 5 and found[:, 1].sum() >= 2
    s, owner = starts[found], found.nonzero()[:, 0]
    x0 = x[owner]
    assert ((s != x0).sum(1) == 1).all()  # exactly one coordinate moved
    with torch.no_grad():
        assert (model(s).argmax(1) != y[owner]).all()
        back = x0 + (1 - 1e-3) * (s - x0)
        assert (model(back).argmax(1) == y[owner]).float().mean() >= 0.9
    assert (starts[~found] == x.unsqueeze(1).expand_as(starts)[~found]).all()
    dist = (starts - x.unsqueeze(1)).abs().sum(-1)
    assert (dist[:, 0][found[:, 1]] <= dist[:, 1][found[:, 1]]).all()  # nearest first


def test_coordinate_starts_find_the_exact_l1_radius_of_a_linear_model():
    """Linear binary classifier: where the coordinate of largest |w| alone can cross the boundary
    inside the box, the exact L1 minimal perturbation moves only it, by margin / |w_i|."""
    g = torch.Generator().manual_seed(5)
    d = 12
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=g))
        model.bias.zero_()
    x = torch.rand(40, d, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
        v = (model.weight[y] - model.weight[1 - y])  # margin gradient per row
        h = (v * x).sum(1)
    room = torch.where(v > 0, x, 1 - x)  # moving against v
    top = v.abs().argmax(1)
    exact_rows = (room.gather(1, top[:, None]).squeeze(1) * v.abs().max(1).values > h * 1.01)
    starts, found = coordinate_starts(model, x, y, keep=2, grid=16)
    r = (starts[:, 0] - x).abs().sum(1)
    want = h / v.abs().max(1).values
    assert exact_rows.sum() >= 10 and found[exact_rows, 0].all()
    assert torch.allclose(r[exact_rows], want[exact_rows], rtol=1e-3)


@pytest.mark.parametrize("rows", [None, 7])
@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_ball_starts_lie_inside_the_ball_on_the_boundary_and_never_beat_the_exact_radius(p, rows, monkeypatch):
    """Linear classifier, best radius twice the exact one: every start found is adversarial, on the
    boundary (bisected), within (1 - shrink) of the best radius, and not nearer than the exact
    radius; a sample without a finite best radius gets none."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _linear_reference import linear_radii

    g = torch.Generator().manual_seed(2)
    d = 10
    model = nn.Linear(d, 3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, d, generator=g))
        model.bias.copy_(0.1 * torch.randn(3, generator=g))
    x = torch.rand(24, d, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    exact = torch.tensor(linear_radii(model.weight.detach().numpy(), model.bias.detach().numpy(), x.numpy(), y.numpy(),
                                      norm=p), dtype=torch.float32)  # exact, in the box
    assert torch.isfinite(exact).all()
    if rows is not None:  # the PGD runs in chunks of 7 replicated inputs
        import attacks.starts as starts_module
        monkeypatch.setattr(starts_module, "_BALL_ROWS", rows)
    radius = 2 * exact
    radius[0] = INF
    starts, found = ball_starts(model, x, y, radius, norm=p, restarts=32, steps=20, keep=3, shrink=0.01)
    assert starts.shape == (24, 3, d) and found.shape == (24, 3)
    assert not found[0].any() and torch.equal(starts[0], x[0].expand(3, d))
    assert found[1:, 0].float().mean() >= 0.8
    owner = found.nonzero()[:, 0]
    s = starts[found]
    r = (s - x[owner]).norm(p=p, dim=1) if p != INF else (s - x[owner]).abs().amax(1)
    with torch.no_grad():
        z = model(s)
        # adversarial (alone, rounding at the boundary may tie: then by a few units of roundoff)
        margin = z.gather(1, y[owner][:, None]).squeeze(1) - z.scatter(1, y[owner][:, None], -INF).amax(1)
        assert (margin <= 1e-5 * z.abs().amax(1)).all() and (margin < 0).float().mean() >= 0.9
        back = x[owner] + (1 - 1e-3) * (s - x[owner])
        assert (model(back).argmax(1) == y[owner]).float().mean() >= 0.9
    assert (r <= 0.99 * radius[owner] * (1 + 1e-5)).all()
    assert (r >= exact[owner] * (1 - 1e-4)).all()
    # nearest first
    rows = found.all(1)
    dist = (starts[rows] - x[rows].unsqueeze(1)).abs().amax(2) if p == INF else (starts[rows] - x[rows].unsqueeze(1)).norm(p=p, dim=2)
    assert (dist[:, 1:] >= dist[:, :-1] - 1e-7).all()
    none, nfound = ball_starts(model, x[:3], y[:3], radius[:3], norm=p, restarts=0)
    assert not nfound.any()


def test_starts_are_validated():
    model, x, y = _net()
    with pytest.raises(ValueError, match="shape"):
        boundary(model, x[:4], y[:4], norm=2.0, starts=torch.rand(4, 7))
    with pytest.raises(ValueError, match="not adversarial"):
        boundary(model, x[:4], y[:4], norm=2.0, starts=(x[:4] + 1e-3).clamp(0, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        boundary(model, x[:4], y[:4], norm=2.0, starts=x[:4] + 5)
    # the input itself means "no start"; with no far starts asked for, nothing is found
    adv = boundary(model, x[:4], y[:4], norm=2.0, starts=x[:4], far=0, rays=0, escalate=None)
    assert torch.equal(adv, x[:4])
    # dropped instead of raised where the caller asks (the cascade)
    boundary(model, x[:4], y[:4], norm=2.0, starts=(x[:4] + 1e-3).clamp(0, 1), bad_starts="drop", far=0, rays=2)


def test_given_starts_never_make_it_worse():
    """From the best point of another attack, the walk ends at most as far as it started."""
    model, x, y = _net(seed=1)
    for p in (1.0, 2.0, INF):
        first = make_attack("fmn", norm=p, steps=20)(model, x, y)
        r0, _, _ = verify(model, x, y, first, norm=p)
        adv = boundary(model, x, y, norm=p, starts=first, far=0)
        r, oob, nan = verify(model, x, y, adv, norm=p)
        ok = torch.isfinite(r0)
        assert not oob.any() and not nan.any() and torch.isfinite(r[ok]).all()
        assert (r[ok] <= r0[ok] * (1 + 1e-6)).all()


# --------------------------------------------------------------------------- exact radii of a memorising net
#: Training points of tests/data/sphere_w16_random.pt (a width-16 MLP fitted to 500 random-label
#: points on the unit sphere in d = 32, 2 classes: experiments/bench_exact_radii.py's sphere-w16)
#: where the cascade before the boundary attack (fmn, fab, apgd-min, deepfool) was 1.08 to 1.84
#: times the exact Linf radius.
PINNED = [1, 7, 14, 15, 18, 21]
OLD_LINF = ("fmn", "fab", "apgd-min", "deepfool")


def test_cascade_reaches_exact_radius_on_memorising_net():
    pytest.importorskip("scipy")
    from advrobust.data import load_dataset
    from advrobust.exact import exact_radii

    model, _ = runs.load_model(DATA / "sphere_w16_random.pt")
    model.eval()
    ds = load_dataset(name="sphere", n=500, dim=32, classes=2, labels="random", seed=0)
    x, y = ds.x_train[PINNED], ds.y_train[PINNED]
    ex = exact_radii(model, x, y, norm=INF, time_limit=30.0)
    assert (ex["status"] == 0).all()
    old = run_cascade(model, x, y, norm=INF, attacks=[(a, make_attack(a, norm=INF)) for a in OLD_LINF],
                      random_checks=0)
    assert (old.best_radius / ex["radius"]).max() > 1.05  # the case the boundary attack is for
    new = run_cascade(model, x, y, norm=INF, attacks=[(a, make_attack(a, norm=INF)) for a in DEFAULT_CASCADES[INF]],
                      random_checks=0, pool=ds.x_train)
    ratio = new.best_radius / ex["radius"]
    assert np.isfinite(ratio).all() and ratio.max() <= 1.01, ratio
    # and never below the proven lower bound (beyond the solver's verification margin)
    assert (new.best_radius >= ex["lower"] * (1 - 1e-3)).all()


#: A width-64 MLP fitted with the default epoch cap to the same 500 random-label points (what
#: ``python -m advrobust.train --dataset sphere --dim 32 --n 500 --classes 2 --labels random
#: --model mlp --width 64`` gives a new user: 91% of the first 100 fitted). On training points 10 to
#: 39 the staged search without restarts inside the best ball ends one point 12% above the exact
#: Linf radius: its optimum lies in a basin that no walk from the best point or from far away
#: reaches.
HELD = list(range(10, 40))


def test_ball_restarts_reach_a_basin_the_walks_miss(monkeypatch):
    pytest.importorskip("scipy")
    import attacks.boundary as boundary_module
    from advrobust.data import load_dataset
    from advrobust.exact import exact_radii

    model, _ = runs.load_model(DATA / "sphere_w64_default_epochs.pt")
    model.eval()
    ds = load_dataset(name="sphere", n=500, dim=32, classes=2, labels="random", seed=0)
    x, y = ds.x_train[HELD], ds.y_train[HELD]
    with torch.no_grad():
        fit = model(x).argmax(1) == y
    x, y = x[fit], y[fit]

    def cascade():
        return run_cascade(model, x, y, norm=INF, attacks=[(a, make_attack(a, norm=INF)) for a in DEFAULT_CASCADES[INF]],
                           random_checks=0, pool=ds.x_train).best_radius

    with monkeypatch.context() as m:
        m.setattr(boundary_module, "_BALL", (0,) + boundary_module._BALL[1:])
        without = cascade()
    with_ball = cascade()
    # exact radii within the attacks' radii (the MILP is fast with an upper bound, slow without)
    ex = exact_radii(model, x, y, norm=INF, upper=np.minimum(without, with_ball), time_limit=30.0)
    solved = ex["status"] == 0
    assert solved.sum() >= len(y) - 3
    assert (without[solved] / ex["radius"][solved]).max() > 1.05  # the case the restarts are for
    ratio = with_ball[solved] / ex["radius"][solved]
    assert np.isfinite(ratio).all() and ratio.max() <= 1.01, ratio
