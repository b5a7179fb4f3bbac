"""FAB, DeepFool, PGD, APGD and the epsilon-search wrappers against exact answers.

For logits z = W x + b the smallest Lp perturbation reaching class j is
(z_y - z_j) / ||w_y - w_j||_q (q dual to p) while the minimiser stays inside the box; the
minimal radius is the smallest over j. Minimal attacks must break every sample close to it (and
never below it); budget attacks must break every sample at 1.05 x the radius and none at 0.95 x.
The projections at the heart of FAB and L1-PGD/APGD are checked against linear programs and an
independent bisection.
"""
from __future__ import annotations

import functools
import math
import numpy as np

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks.norms import lp_norm, row_norm
from attacks.apgd import apgd
from attacks.deepfool import deepfool
from attacks.eps_search import apgd_min, minimal_by_eps_search, pgd_min
from attacks._budget import project_l1_box
from attacks._geometry import candidate_classes, nearest_plane, project_hyperplane_box
from attacks.fab import fab
from attacks.pgd import pgd

from _nets import small_mlp
from _linear_reference import exact_radius

INF = math.inf


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_problem(seed: int = 0, batch: int = 16, d: int = 64, k: int = 10):
    """Random linear classifier centred on 0.5, inputs in [0.3, 0.7]."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(k, d, generator=gen)
    x = 0.5 + 0.2 * (2 * torch.rand(batch, d, generator=gen) - 1)
    model = nn.Linear(d, k)
    with torch.no_grad():
        model.weight.copy_(w)
        model.bias.copy_(-0.5 * w.sum(1) + 0.1 * torch.randn(k, generator=gen))
    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def ratios(model, x, y, adv, radius, p):
    with torch.no_grad():
        broken = model(adv).argmax(1) != y
    n = lp_norm(adv - x, p)
    return torch.where(broken, n / radius, torch.full_like(n, INF))


MINIMAL = [
    ("fab", fab, 1.0, dict(steps=40), 0.02),
    ("fab", fab, 2.0, dict(steps=40), 0.01),
    ("fab", fab, INF, dict(steps=40), 0.02),
    ("deepfool", deepfool, 2.0, dict(), 0.01),
    ("deepfool", deepfool, INF, dict(), 0.02),
    ("pgd_min", pgd_min, 1.0, dict(steps=20, search_steps=8), 0.02),
    ("pgd_min", pgd_min, 2.0, dict(steps=20, search_steps=8), 0.01),
    ("pgd_min", pgd_min, INF, dict(steps=20, search_steps=8), 0.02),
    ("apgd_min", apgd_min, 1.0, dict(steps=20, search_steps=8), 0.02),
    ("apgd_min", apgd_min, 2.0, dict(steps=20, search_steps=8), 0.01),
    ("apgd_min", apgd_min, INF, dict(steps=20, search_steps=8), 0.02),
]


@pytest.mark.parametrize("name,fn,p,kw,tol", MINIMAL, ids=[f"{c[0]}-{c[2]}" for c in MINIMAL])
def test_minimal_attacks_reach_exact_radius_of_linear_model(name, fn, p, kw, tol):
    model, x, y = linear_problem(seed=1)
    radius = exact_radius(model, x, y, p)
    x_copy = x.clone()
    adv = fn(model, x, y, norm=p, **kw)
    assert torch.equal(x, x_copy), "inputs modified"
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    r = ratios(model, x, y, adv, radius, p)
    assert torch.isfinite(r).all(), f"{name} failed on {int((~torch.isfinite(r)).sum())} samples"
    assert float(r.min()) >= 1 - 1e-3, "radius below the exact minimum: the norm or check is wrong"
    assert float(r.median()) <= 1 + tol, f"{name} median ratio {float(r.median()):.4f}"
    assert float(r.max()) <= 1.05


BUDGET = [(pgd, dict(steps=30)), (apgd, dict(steps=30, loss="ce")), (apgd, dict(steps=30, loss="dlr"))]


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
@pytest.mark.parametrize("fn,kw", BUDGET, ids=["pgd", "apgd-ce", "apgd-dlr"])
def test_budget_attacks_break_at_105_and_respect_the_ball(fn, kw, p):
    model, x, y = linear_problem(seed=2)
    radius = exact_radius(model, x, y, p)
    eps_hi = 1.05 * radius
    adv = fn(model, x, y, norm=p, eps=eps_hi, restarts=2, **kw)
    n = lp_norm(adv - x, p)
    assert (n <= eps_hi + 1e-6).all(), "left the eps ball"
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert (model(adv).argmax(1) != y).all(), "did not break every sample at 1.05 x radius"
    adv_lo = fn(model, x, y, norm=p, eps=0.95 * radius, restarts=2, **kw)
    assert (lp_norm(adv_lo - x, p) <= 0.95 * radius + 1e-6).all()
    with torch.no_grad():
        broken = model(adv_lo).argmax(1) != y
    assert not broken.any(), "broke a sample below its exact radius: the ball is not respected"
    assert torch.equal(adv_lo, x), "unbroken samples must be returned unchanged"


def test_budget_attacks_scalar_eps_and_early_stop():
    model, x, y = linear_problem(seed=3)
    radius = exact_radius(model, x, y, 2.0)
    eps = float(radius.max()) * 1.5
    for fn in (pgd, apgd):
        adv = fn(model, x, y, norm=2.0, eps=eps, steps=30, restarts=2)
        assert (lp_norm(adv - x, 2.0) <= eps + 1e-6).all()
        with torch.no_grad():
            assert (model(adv).argmax(1) != y).all()


def test_projection_onto_hyperplane_and_box_is_exact():
    scipy_opt = pytest.importorskip("scipy.optimize")

    gen = torch.Generator().manual_seed(0)
    n, d = 16, 10
    w = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w[:, 0] = 0  # a coordinate the plane does not depend on
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    lo, hi = -x, 1 - x
    c = 2.0 * torch.randn(n, generator=gen, dtype=torch.float64)  # some planes out of reach
    for p in (1.0, 2.0, INF):
        delta, ok = project_hyperplane_box(w, c, lo, hi, p)
        reach = torch.where(c >= 0, (w.clamp_min(0) * hi + w.clamp_max(0) * lo).sum(1),
                            -(w.clamp_max(0) * hi + w.clamp_min(0) * lo).sum(1))
        assert torch.equal(ok, reach >= c.abs())
        assert 0 < int(ok.sum()) < n
        for i in range(n):
            if not ok[i]:
                continue
            wi, li, hi_, ci = w[i].numpy(), lo[i].numpy(), hi[i].numpy(), float(c[i])
            assert abs(float(w[i] @ delta[i]) - ci) < 1e-9
            assert (delta[i] >= lo[i] - 1e-12).all() and (delta[i] <= hi[i] + 1e-12).all()
            if p == 1:  # delta = u - v, u, v >= 0
                res = scipy_opt.linprog(np.ones(2 * d), A_eq=np.concatenate([wi, -wi])[None], b_eq=[ci],
                                        bounds=[(0, h) for h in hi_] + [(0, -l) for l in li])
                ref = res.fun
            elif p == INF:  # variables (delta, t), minimise t
                cost = np.zeros(d + 1)
                cost[-1] = 1
                eye = np.eye(d)
                a_ub = np.block([[eye, -np.ones((d, 1))], [-eye, -np.ones((d, 1))]])
                res = scipy_opt.linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * d),
                                        A_eq=np.concatenate([wi, [0.0]])[None], b_eq=[ci],
                                        bounds=list(zip(li, hi_)) + [(0, None)])
                ref = res.fun
            else:  # KKT: delta = clip(lam w) for lam >= 0 solving w.delta = c; bisection on lam
                s = 1.0 if ci >= 0 else -1.0
                a_, b_ = 0.0, 1e6
                for _ in range(200):
                    lam = 0.5 * (a_ + b_)
                    v = np.clip(s * lam * wi, li, hi_)
                    a_, b_ = (lam, b_) if s * (wi @ v) < s * ci else (a_, lam)
                ref = float(np.linalg.norm(np.clip(s * b_ * wi, li, hi_)))
            got = float(lp_norm(delta[i : i + 1], p))
            assert abs(got - ref) <= 1e-7 * max(1.0, ref), (p, i, got, ref)


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
@pytest.mark.parametrize("targeted", [False, True])
def test_nearest_plane_matches_projecting_every_plane(p, targeted):
    """The pruned search (one backward pass per pair, exact projections only where the
    unconstrained distance can still win) picks the plane that projecting onto every pair's
    plane and taking the nearest would; the planes come from autograd on the model."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 6)).double().eval()
    x = torch.rand(40, 12, dtype=torch.float64)
    x[:, :4] = 0.0  # pixels on the box face: the box changes which plane is nearest
    with torch.no_grad():
        logits = model(x)
    y = logits.argmin(1) if targeted else logits.argmax(1)
    cands = None if targeted else candidate_classes(logits, y, None)
    z, g, c, delta, dist, ok = nearest_plane(model, x, y, cands, targeted, p)
    assert torch.allclose(z, logits)
    # reference: every pair's plane from its own autograd gradient, each projected exactly
    xr = x.clone().requires_grad_(True)
    zr = model(xr)
    lead = zr.detach().scatter(1, y[:, None], -INF).argmax(1, keepdim=True) if targeted else y[:, None]
    take = y[:, None] if targeted else cands
    best_key, best = torch.full((40,), INF, dtype=x.dtype), None
    for j in range(take.shape[1]):
        hj = zr.gather(1, lead).squeeze(1) - zr.gather(1, take[:, j:j + 1]).squeeze(1)
        (gj,) = torch.autograd.grad(-hj.sum(), xr, retain_graph=True)
        dj, okj = project_hyperplane_box(gj, hj.detach(), -x, 1 - x, p)
        nj = row_norm(dj, p)
        key = torch.where(okj, nj, nj + 1e12)
        if best is None:
            best_key, best = key, (gj, hj.detach(), dj, nj)
        else:
            better = key < best_key
            best_key = torch.where(better, key, best_key)
            best = tuple(torch.where(better.view(-1, *[1] * (t.ndim - 1)), tn, t) for t, tn in zip(best, (gj, hj.detach(), dj, nj)))
    assert torch.allclose(dist, best[3], rtol=1e-10, atol=1e-12)
    assert torch.allclose(c, best[1], rtol=1e-10, atol=1e-12)
    assert torch.allclose(g, best[0], rtol=1e-10, atol=1e-12)
    # the step lands on the chosen plane where the box reaches it
    assert torch.allclose((g * delta).sum(1)[ok], c[ok], atol=1e-9)


def test_l1_box_projection_matches_bisection():
    gen = torch.Generator().manual_seed(1)
    v = 0.3 * torch.randn(50, 40, generator=gen, dtype=torch.float64)
    x = torch.rand(50, 40, generator=gen, dtype=torch.float64)
    eps = 3 * torch.rand(50, generator=gen, dtype=torch.float64)
    eps[0] = 100.0  # inside: only the box clips
    out = project_l1_box(v, -x, 1 - x, eps)
    a = v.abs()
    cap = torch.where(v >= 0, 1 - x, x)
    lo_t, hi_t = torch.zeros(50, dtype=v.dtype), a.amax(1)
    for _ in range(200):
        mid = 0.5 * (lo_t + hi_t)
        big = (a - mid[:, None]).clamp_min(0).minimum(cap).sum(1) > eps
        lo_t, hi_t = torch.where(big, mid, lo_t), torch.where(big, hi_t, mid)
    theta = torch.where(a.minimum(cap).sum(1) <= eps, torch.zeros_like(hi_t), hi_t)
    ref = v.sign() * (a - theta[:, None]).clamp_min(0).minimum(cap)
    assert torch.allclose(out, ref, atol=1e-10)
    assert (out.abs().sum(1) <= eps + 1e-12).all()
    assert ((x + out) >= 0).all() and ((x + out) <= 1).all()


def test_determinism_under_seed():
    model, x, y = linear_problem(seed=4)
    radius = exact_radius(model, x, y, INF)
    a1 = pgd(model, x, y, norm=INF, eps=1.05 * radius, steps=10, seed=3)
    a2 = pgd(model, x, y, norm=INF, eps=1.05 * radius, steps=10, seed=3)
    a3 = pgd(model, x, y, norm=INF, eps=1.05 * radius, steps=10, seed=4)
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, a3), "the seed has no effect on the random start"
    b1 = apgd(model, x, y, norm=1.0, eps=1.0, steps=10, seed=5)
    assert torch.equal(b1, apgd(model, x, y, norm=1.0, eps=1.0, steps=10, seed=5))
    f1 = fab(model, x, y, norm=2.0, steps=5, restarts=2, seed=7)
    assert torch.equal(f1, fab(model, x, y, norm=2.0, steps=5, restarts=2, seed=7))


def test_targeted_modes_hit_their_targets():
    model, x, y = linear_problem(seed=5, batch=8)
    targets = (y + 1 + torch.arange(len(y)) % 9) % 10
    assert (targets != y).all()
    for name, adv in [
        ("fab", fab(model, x, targets, norm=2.0, steps=40, targeted=True)),
        ("deepfool", deepfool(model, x, targets, norm=2.0, targeted=True)),
        ("pgd", pgd(model, x, targets, norm=INF, eps=0.5, steps=40, targeted=True)),
        ("apgd", apgd(model, x, targets, norm=2.0, eps=4.0, steps=40, targeted=True, loss="dlr")),
        ("pgd_min", pgd_min(model, x, targets, norm=2.0, steps=20, search_steps=4, targeted=True)),
    ]:
        with torch.no_grad():
            pred = model(adv).argmax(1)
        assert (pred == targets).all(), f"{name} missed targets"
    # a targeted minimal attack needs at least the untargeted radius
    adv = fab(model, x, targets, norm=2.0, steps=40, targeted=True)
    assert (lp_norm(adv - x, 2.0) >= exact_radius(model, x, y, 2.0) * (1 - 1e-3)).all()


def test_relu_mlp_sanity_and_contract():
    model, x, y = small_mlp(0, batch=16, d=20, k=5, hidden=32)
    x_copy = x.clone()
    radii = {}
    for name, fn, kw in [
        ("fab", fab, dict(steps=30)),
        ("deepfool", deepfool, dict()),
        ("pgd_min", pgd_min, dict(steps=15, search_steps=6)),
        ("apgd_min", apgd_min, dict(steps=15, search_steps=6)),
    ]:
        adv = fn(model, x, y, norm=2.0, **kw)
        assert torch.equal(x, x_copy)
        assert not model.training
        assert all(p.grad is None for p in model.parameters()), f"{name} left parameter grads"
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        with torch.no_grad():
            assert (model(adv).argmax(1) != y).all(), f"{name} left samples unbroken"
        radii[name] = lp_norm(adv - x, 2.0)
    best = torch.stack(list(radii.values())).amin(0)
    for name, r in radii.items():
        assert float((r / best).median()) <= 1.10, f"{name} is >10% worse than the best attack"
    # a model in train mode stays in train mode
    model.train()
    fab(model, x, y, norm=INF, steps=3)
    assert model.training


def test_already_adversarial_inputs_are_returned_unchanged():
    model, x, y = linear_problem(seed=6, batch=6)
    wrong = (y + 1) % 10
    for adv in [
        fab(model, x, wrong, norm=1.0, steps=5),
        deepfool(model, x, wrong, norm=INF),
        pgd(model, x, wrong, norm=2.0, eps=1.0, steps=5),
        apgd(model, x, wrong, norm=INF, eps=0.1, steps=5),
        pgd_min(model, x, wrong, norm=2.0, steps=5, search_steps=2),
    ]:
        assert torch.equal(adv, x)


def test_input_validation():
    model, x, y = linear_problem(seed=7, batch=4)
    with pytest.raises(ValueError):
        deepfool(model, x, y, norm=1.0)
    with pytest.raises(ValueError):
        fab(model, x, y, norm=3.0)
    with pytest.raises(ValueError):
        pgd(model, x, y, norm=2.0, eps=torch.ones(3), steps=2)
    with pytest.raises(ValueError):
        apgd(model, x, y, norm=2.0, eps=0.1, steps=2, loss="hinge")
    with pytest.raises(ValueError):
        pgd(model, x * 2, y, norm=2.0, eps=0.1, steps=2)


def test_eps_search_with_given_initial_eps():
    model, x, y = linear_problem(seed=8, batch=8)
    radius = exact_radius(model, x, y, INF)
    # starting far too small forces the doubling phase, then bisection
    attack = functools.partial(pgd, restarts=2)
    adv = minimal_by_eps_search(attack, model, x, y, norm=INF, steps=20, eps_init=1e-4, search_steps=10)
    r = ratios(model, x, y, adv, radius, INF)
    assert torch.isfinite(r).all() and float(r.median()) <= 1.02


def unit_variance_mlp(seed: int = 0, batch: int = 16, d: int = 20, k: int = 5):
    """ReLU MLP with 1/sqrt(fan-in) weights: boundaries at Linf radii ~0.01-0.25 inside the box."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / layer.weight.shape[1] ** 0.5)
            layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=gen))
    x = torch.rand(batch, d, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("p,eps", [(INF, 0.08), (2.0, 0.3), (1.0, 0.7)], ids=["linf", "l2", "l1"])
def test_pgd_without_early_stop_maximises_the_loss(p, eps):
    """early_stop=False (adversarial training): every sample runs all steps and the returned point
    has at least the cross-entropy of the early-stopped one, inside the ball and the box."""

    model, x, y = unit_variance_mlp()
    y[0] = (y[0] + 1) % 5  # already misclassified: early stopping returns the input untouched
    first = pgd(model, x, y, norm=p, eps=eps, steps=20, seed=1)
    full = pgd(model, x, y, norm=p, eps=eps, steps=20, seed=1, early_stop=False)
    assert torch.equal(full, pgd(model, x, y, norm=p, eps=eps, steps=20, seed=1, early_stop=False))
    assert not torch.equal(full, pgd(model, x, y, norm=p, eps=eps, steps=20, seed=2, early_stop=False))
    assert float(full.min()) >= 0 and float(full.max()) <= 1
    assert (lp_norm(full - x, p) <= eps * (1 + 1e-5) + 1e-7).all(), "ball left"
    assert all(q.grad is None for q in model.parameters()) and not model.training
    with torch.no_grad():
        loss_first = F.cross_entropy(model(first), y, reduction="none")
        loss_full = F.cross_entropy(model(full), y, reduction="none")
        broken_first = model(first).argmax(1) != y
    assert int(broken_first[1:].sum()) >= 4, "test needs samples that early stopping cut short"
    assert (loss_full >= loss_first - 1e-5).all(), (loss_full - loss_first).min()
    # the samples stopped early (and the misclassified one) kept climbing
    assert (loss_full[broken_first] > loss_first[broken_first] + 1e-3).all()
    assert not torch.equal(full[0], x[0])
