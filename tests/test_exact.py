"""Exact radii by MILP/MIQP: closed forms on affine models, certified <= exact <= any attack."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import example, HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advrobust.errors import UserError
from advrobust.certify import certified_radii, check_bracket
from advrobust.exact import _ROUNDING, _roundoff, exact_radii, margin_needed
from attacks._common import clamp_box, make_generator, project_ball, random_in_ball
from attacks.losses import label_margin
from attacks.norms import dual, lp_norm

from _linear_reference import linear_radii
from _nets import random_mlp

INF = math.inf


pytestmark = pytest.mark.usefixtures("one_thread")


def closest_found(model, x, y, radius, p, *, restarts=8, steps=60, samples=2000, seed=0):
    """Dense random sampling and multi-restart PGD inside the Lp ball of ``radius`` ∩ box.

    Returns a bool (B,): whether any misclassified point was found.
    """
    b = x.shape[0]
    gen = make_generator(seed, x.device)
    eps = torch.as_tensor(radius, dtype=x.dtype)
    found = torch.zeros(b, dtype=torch.bool)
    xs = x.repeat(samples, 1)
    es = eps.repeat(samples)
    xa = xs + clamp_box(xs, random_in_ball(xs, es, p, gen))
    with torch.no_grad():
        hit = (model(xa).argmax(1) != y.repeat(samples)).reshape(samples, b).any(0)
    found |= hit
    xr = x.repeat(restarts, 1)
    yr = y.repeat(restarts)
    er = eps.repeat(restarts)
    delta = clamp_box(xr, random_in_ball(xr, er, p, gen))
    step = (er / 10).unsqueeze(1)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = label_margin(model(xr + delta), yr).sum()
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if p == INF:
                d = g.sign()
            elif p == 2:
                d = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            else:  # steepest L1 descent: the largest gradient coordinate that the box lets move
                xc = xr + delta
                free = torch.where(g > 0, xc > 0, xc < 1)
                d = torch.zeros_like(g).scatter_(1, (g.abs() * free).argmax(1, keepdim=True), 1.0) * g.sign()
            delta = clamp_box(xr, project_ball(delta - step * d, er, p))
            found |= (model(xr + delta).argmax(1) != yr).reshape(restarts, b).any(0)
    return found.numpy()


@pytest.mark.parametrize("norm", [1.0, 2.0, INF])
def test_linear_model_matches_closed_form(norm):
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    x = torch.rand(6, 6)
    y = lin(x).argmax(1)
    ref = linear_radii(lin[1].weight, lin[1].bias, x, y, norm=norm)
    res = exact_radii(lin, x, y, norm=norm)
    fin = np.isfinite(ref)
    assert fin.all()
    assert (res["status"] == 0).all()
    assert np.allclose(res["radius"], ref, rtol=1e-4, atol=1e-7)
    assert (res["lower"] <= ref * (1 + 1e-5) + 1e-9).all()
    assert (res["lower"] >= ref * (1 - 1e-4)).all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), d=st.integers(4, 8), widths=st.lists(st.integers(4, 8), min_size=1, max_size=2),
       norm=st.sampled_from([1.0, INF]))
@example(seed=282, d=4, widths=[4], norm=1.0)  # logits nearly cancel: needed a roundoff-aware margin
@example(seed=7, d=4, widths=[4, 4], norm=1.0)  # a tie broken by a margin above roundoff: walk back along the ray
@example(seed=27, d=7, widths=[4, 4], norm=1.0)  # float32 flips a near-tie just inside the exact-arithmetic bound
def test_mlp_exact_radius_brackets(seed, d, widths, norm):
    _check_brackets(seed, d, widths, norm, batch=3)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), widths=st.lists(st.integers(4, 6), min_size=1, max_size=2))
def test_mlp_exact_radius_brackets_l2(seed, widths):
    _check_brackets(seed, 5, widths, 2.0, batch=2)


def _roundoff_slack(model, x, y, adv, norm):
    """Per sample: the radius a margin of twice exact.py's demanded margin costs at ``adv``."""
    xa = adv.clone().requires_grad_(True)
    logits = model(xa)
    (g,) = torch.autograd.grad(label_margin(logits, y).sum(), xa)
    logits = logits.detach()
    slope = lp_norm(g.double(), dual(norm)).clamp_min(1e-12)
    need = [margin_needed(logits[i], _ROUNDING * _roundoff(model, x[i])) for i in range(len(x))]
    return (2 * torch.tensor(need, dtype=torch.float64) / slope).numpy()


def _check_brackets(seed, d, widths, norm, batch):
    model = random_mlp(seed, d, widths)
    x = torch.rand(batch, d, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    res = exact_radii(model, x, y, norm=norm, time_limit=20.0)
    assert (res["status"] == 0).all(), res
    r = res["radius"]
    fin = np.isfinite(r)
    # the exact point is adversarial (fresh batched forward pass), in the box, at distance r
    adv = torch.as_tensor(res["adv"])
    assert adv.dtype == x.dtype and adv.shape == x.shape
    assert ((adv >= 0) & (adv <= 1)).all()
    with torch.no_grad():
        flipped = (model(adv).argmax(1) != y).numpy()
    assert flipped[fin].all()
    assert np.allclose(lp_norm(adv.double() - x.double(), norm).numpy()[fin], r[fin], rtol=1e-6, atol=1e-7)
    # certified <= lower <= radius, and the radius is at most a hair above the lower bound
    cert = certified_radii(model, x, y, norm=norm, method="crown")
    assert check_bracket(cert, res["lower"], r, rtol=1e-6) == []
    # (the verified point must beat the label by a margin above float32 roundoff, which costs
    # up to that margin over the dual norm of the margin's gradient in radius)
    slack = _roundoff_slack(model, x, y, adv, norm)
    assert (r[fin] <= res["lower"][fin] * (1 + 2e-3) + 1e-6 + slack[fin]).all()
    # no attack finds anything strictly inside the proven lower bound (argmax ties count as
    # adversarial here, so the bound itself is where the search must come up empty)
    if fin.any():
        # (the bound is for the network in exact arithmetic; its float32 evaluation can flip a
        # near-tie within the roundoff slack of the boundary, seed 27 L1: 1.3% of the radius)
        shrunk = np.clip(res["lower"][fin] * (1 - 1e-4) - slack[fin], 0, None)
        inside = closest_found(model, x[fin], y[fin], shrunk, norm, seed=seed)
        assert not inside.any()
        # (that this search finds adversarial points where they exist is test_search_has_teeth:
        # on random nets it need not, where the adversarial region near the optimum is a thin
        # sliver in a corner of the box, e.g. seed 4757, d=7, widths [4, 7], L1)


@pytest.mark.parametrize("norm", [1.0, 2.0, INF])
def test_search_has_teeth(norm):
    """The search of the bracket tests finds adversarial points just outside the exact radius."""
    found = []
    for seed in range(4):
        model = random_mlp(seed, 5, [6])
        x = torch.rand(4, 5, generator=torch.Generator().manual_seed(seed))
        y = model(x).argmax(1)
        r = exact_radii(model, x, y, norm=norm, time_limit=20.0)["radius"]
        assert np.isfinite(r).all()
        found.append(closest_found(model, x, y, r * 1.05, norm, seed=seed))
    assert np.concatenate(found).mean() >= 0.75


def test_upper_bound_gives_same_radius_and_prunes():
    model = random_mlp(7, 6, [8, 6])
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(7))
    y = model(x).argmax(1)
    free = exact_radii(model, x, y, norm=INF)
    given_upper = exact_radii(model, x, y, norm=INF, upper=free["radius"] * 1.2)
    assert (given_upper["status"] == 0).all()
    assert np.allclose(given_upper["radius"], free["radius"], rtol=1e-4)
    # a wrong "upper" (below the true radius) must not produce a smaller radius: it is reported
    wrong = exact_radii(model, x, y, norm=INF, upper=free["radius"] * 0.5)
    assert (wrong["status"] == 2).all() and np.isnan(wrong["radius"]).all()
    assert (wrong["lower"] >= free["radius"] * 0.5 * (1 - 1e-6)).all()


def test_misclassified_and_robust_in_box():
    lin = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        lin[0].bias.copy_(torch.tensor([0.0, 0.5]))
    x = torch.tensor([[0.9, 0.1], [0.2, 0.3]])
    res = exact_radii(lin, x, torch.tensor([0, 0]), norm=INF)
    assert res["radius"][1] == 0.0 and res["status"][1] == 0
    assert abs(res["radius"][0] - 0.4) < 1e-4
    const = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        const[0].weight.zero_()
        const[0].bias.copy_(torch.tensor([1.0, 0.0]))
    res = exact_radii(const, x, torch.tensor([0, 0]), norm=1)
    assert np.isinf(res["radius"]).all() and (res["status"] == 0).all()


def test_rejects_conv_and_other_layers():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(UserError, match="Conv2d"):
        exact_radii(conv, x, torch.zeros(1, dtype=torch.int64), norm=INF)
    tanh = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))
    with pytest.raises(UserError, match="Tanh"):
        exact_radii(tanh, torch.rand(1, 4), torch.zeros(1, dtype=torch.int64), norm=1)


def test_l2_without_pyscipopt_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyscipopt", None)  # import now raises ImportError
    model = random_mlp(0, 4, [4])
    x = torch.rand(1, 4)
    with pytest.raises(UserError, match=r"pip install advrobust\[exact\]"):
        exact_radii(model, x, model(x).argmax(1), norm=2)
