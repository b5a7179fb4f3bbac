"""Certified bounds: soundness against sampling, CROWN >= IBP, exactness on affine models."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advrobust.errors import UserError
from advrobust.certify import _bounds, _prepare  # the internals compared with the chunked path
from advrobust.certify import (certified_radii, check_bracket, layer_bounds, margin_lower_bounds, margin_matrix,
                               parse_network)
from attacks._common import clamp_box, make_generator, random_in_ball

import _nets
from _linear_reference import linear_radii

INF = math.inf
NORMS = [1.0, 2.0, INF]
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_mlp(seed: int, d: int, widths: list[int], classes: int = 3) -> nn.Sequential:
    return _nets.random_mlp(seed, d, widths, classes, dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


def sampled_margins(model, x, y, eps, p, n=400, seed=0):
    """Min over random points of ball ∩ box (and box corners of the ball) of each margin: (B, K-1)."""
    b = x.shape[0]
    gen = make_generator(seed, x.device)
    xs = x.repeat(n, *([1] * (x.ndim - 1)))
    e = torch.full((xs.shape[0],), float(eps), dtype=x.dtype)
    delta = random_in_ball(xs, e, p, gen)
    if p == INF:  # vertices of the box are where linear pieces attain extremes
        delta[: xs.shape[0] // 2] = delta[: xs.shape[0] // 2].sign() * eps
    xa = xs + clamp_box(xs, delta)
    with torch.no_grad():
        logits = model(xa)
    c = margin_matrix(y.repeat(n), logits.shape[1])
    marg = (c @ logits.unsqueeze(-1).to(torch.float64)).squeeze(-1)  # (n*B, K-1)
    return marg.reshape(n, b, -1).amin(0)


@FAST
@given(seed=st.integers(0, 10_000), d=st.integers(4, 8), widths=st.lists(st.integers(4, 8), min_size=1, max_size=2),
       eps=st.floats(0.005, 0.4), norm=st.sampled_from(NORMS))
def test_crown_never_looser_than_ibp_and_sound(seed, d, widths, eps, norm):
    model = random_mlp(seed, d, widths)
    x = torch.rand(4, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y = model(x).argmax(1)
    ibp = margin_lower_bounds(model, x, y, eps, norm=norm, method="ibp")
    crown = margin_lower_bounds(model, x, y, eps, norm=norm, method="crown")
    cibp = margin_lower_bounds(model, x, y, eps, norm=norm, method="crown-ibp")
    assert ibp.shape == (4, 2)
    assert (crown >= ibp - 1e-12).all()
    assert (cibp >= ibp - 1e-12).all()
    emp = sampled_margins(model, x, y, eps, norm, seed=seed)
    for lb in (ibp, crown, cibp):
        assert (lb <= emp + 1e-9).all(), (lb - emp).max()


def test_crown_tighter_than_ibp_somewhere():
    # the comparison above would pass if crown just returned ibp: check it is really tighter
    model = random_mlp(3, 8, [8, 8])
    x = torch.rand(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    for norm in NORMS:
        gap = margin_lower_bounds(model, x, y, 0.05, norm=norm, method="crown") - margin_lower_bounds(
            model, x, y, 0.05, norm=norm, method="ibp")
        assert gap.mean() > 1e-3


@pytest.mark.parametrize("norm", NORMS)
def test_linear_model_crown_is_exact(norm):
    # no ReLU: the CROWN bound is the exact minimum of each margin over ball ∩ box, so the
    # certified radius must match the closed-form minimal radius up to the bisection tolerance
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(10, 4)).double()
    x = torch.rand(12, 10, dtype=torch.float64)
    y = lin(x).argmax(1)
    exact = linear_radii(lin[1].weight, lin[1].bias, x, y, norm=norm)
    cert = certified_radii(lin, x, y, norm=norm, method="crown", tol=1e-4)
    finite = np.isfinite(exact)
    assert finite.sum() >= 6
    assert (cert[finite] <= exact[finite] * (1 + 1e-9)).all()
    assert (cert[finite] >= exact[finite] * (1 - 3e-4)).all()
    assert np.isinf(cert[~finite]).all()


@FAST
@given(seed=st.integers(0, 10_000), norm=st.sampled_from(NORMS), method=st.sampled_from(["ibp", "crown", "crown-ibp"]))
def test_certified_radius_is_certified_and_tight_to_tol(seed, norm, method):
    model = random_mlp(seed, 6, [6])
    x = torch.rand(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    y = model(x).argmax(1)
    tol = 1e-3
    fast = certified_radii(model, x, y, norm=norm, method=method, tol=tol)
    # the reference search decides with the method's own bound alone, so its radius is tight to tol for
    # exactly that bound; the default search (cheaper bounds first, bounds reused across steps) certifies
    # at least as much
    r = certified_radii(model, x, y, norm=norm, method=method, tol=tol, chunk=None)
    assert np.all(fast >= r)
    for i in np.nonzero(np.isfinite(fast) & (fast > 0))[0]:
        emp = sampled_margins(model, x[i:i + 1], y[i:i + 1], fast[i], norm, n=300, seed=seed)
        assert (emp > 0).all()
    assert r.dtype == np.float64 and r.shape == (5,)
    fin = np.isfinite(r) & (r > 0)
    if fin.any():
        idx = torch.as_tensor(np.nonzero(fin)[0])
        at = margin_lower_bounds(model, x[idx], y[idx], torch.as_tensor(r[fin]), norm=norm, method=method)
        above = margin_lower_bounds(model, x[idx], y[idx], torch.as_tensor(r[fin] * (1 + 2.5 * tol)), norm=norm,
                                    method=method)
        assert (at > 0).all(1).all()
        assert not (above > 0).all(1).any()
        for i in np.nonzero(fin)[0]:  # no sampled point inside the certified ball is misclassified
            emp = sampled_margins(model, x[i:i + 1], y[i:i + 1], r[i], norm, n=300, seed=seed)
            assert (emp > 0).all()


def test_misclassified_get_zero_and_box_certified_get_inf():
    lin = nn.Sequential(nn.Linear(2, 2)).double()
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        lin[0].bias.copy_(torch.tensor([0.0, 0.5]))
    x = torch.tensor([[0.9, 0.1], [0.2, 0.3]], dtype=torch.float64)  # logits (0.9, 0.5) and (0.2, 0.5)
    y = torch.tensor([0, 0])
    r = certified_radii(lin, x, y, norm=2)
    assert r[1] == 0.0 and 0.39 < r[0] <= 0.4
    y1 = torch.tensor([1, 1])  # class 1 wins wherever x_0 < 0.5: not everywhere
    r1 = certified_radii(lin, x, y1, norm=INF)
    assert r1[0] == 0.0 and 0.29 < r1[1] <= 0.3
    big = nn.Sequential(nn.Linear(2, 2)).double()
    with torch.no_grad():
        big[0].weight.zero_()
        big[0].bias.copy_(torch.tensor([1.0, 0.0]))
    assert np.isinf(certified_radii(big, x, y, norm=1)).all()
    assert (certified_radii(big, x, y, norm=1, eps_hi=0.5) == 0.5).all()


def small_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()


def test_conv_operator_adjoint_matches_autograd():
    # the backward pass must be the exact transpose of the conv (odd size: 7x7 with stride 2)
    model = small_cnn(0)
    ops = parse_network(model, (1, 7, 7))
    conv = ops[0]
    h = torch.randn(2, conv.in_dim, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, conv.out_dim, dtype=torch.float64)
    (g,) = torch.autograd.grad((conv.fwd(h) * a).sum(), h)
    assert torch.allclose(conv.bwd(a), g, atol=1e-12)
    ref = model[0](h.detach().reshape(2, 1, 7, 7)).reshape(2, -1)
    assert torch.allclose(conv.fwd(h.detach()) + conv.bias, ref, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_conv_bounds_sound(norm):
    model = small_cnn(1)
    x = torch.rand(3, 1, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    eps = {1.0: 0.5, 2.0: 0.2, INF: 0.03}[norm]
    emp = sampled_margins(model, x, y, eps, norm, n=300)
    ibp = margin_lower_bounds(model, x, y, eps, norm=norm, method="ibp")
    for method in ("crown", "crown-ibp"):
        lb = margin_lower_bounds(model, x, y, eps, norm=norm, method=method)
        assert (lb <= emp + 1e-9).all()
        assert (lb >= ibp - 1e-12).all()
    assert (ibp <= emp + 1e-9).all()
    bounds = layer_bounds(model, x, eps, norm=norm)
    with torch.no_grad():
        pre = model[0](x).reshape(3, -1)
    assert ((bounds[0][0] <= pre + 1e-12) & (pre <= bounds[0][1] + 1e-12)).all()


@pytest.mark.parametrize("layer,name", [(nn.Tanh(), "Tanh"), (nn.MaxPool2d(2), "MaxPool2d"),
                                        (nn.BatchNorm1d(4), "BatchNorm1d")])
def test_unsupported_layer_is_named(layer, name):
    if name == "MaxPool2d":
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), layer, nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
        x = torch.rand(2, 1, 4, 4)
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), layer, nn.Linear(4, 3))
        x = torch.rand(2, 4)
    model.eval()
    with pytest.raises(UserError, match=name):
        certified_radii(model, x, torch.zeros(2, dtype=torch.int64), norm=2)


def test_user_errors():
    model = random_mlp(0, 4, [4])
    x = torch.rand(2, 4, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        margin_lower_bounds(model, x + 2, y, 0.1, norm=2)
    with pytest.raises(UserError, match="method"):
        margin_lower_bounds(model, x, y, 0.1, norm=2, method="deeppoly")
    with pytest.raises(UserError, match="norm"):
        certified_radii(model, x, y, norm="l3")
    with pytest.raises(UserError, match="labels"):
        certified_radii(model, x, torch.tensor([0, 7]), norm=2)
    with pytest.raises(UserError, match="features"):
        certified_radii(model, torch.rand(2, 5, dtype=torch.float64), y, norm=2)


def test_check_bracket_reports_violations():
    lower = np.array([0.1, 0.2, 0.3, np.nan])
    exact = np.array([0.15, 0.2, 0.25, 0.4])
    upper = np.array([0.2, 0.2 * (1 + 1e-6), 0.35, 0.39])
    v = check_bracket(lower, exact, upper)
    kinds = sorted((d["index"], d["kind"]) for d in v)
    assert kinds == [(2, "certified>exact"), (3, "exact>attack")]
    assert all("exceeds" in d["message"] for d in v)
    assert check_bracket(lower[:2], exact[:2], upper[:2]) == []
    assert check_bracket(None, exact, np.full(4, np.inf)) == []
    assert [d["kind"] for d in check_bracket(np.array([0.5]), None, np.array([0.4]))] == ["certified>attack"]


# --------------------------------------------------------------------------- chunked CROWN vs the reference
def _cnn_points(seed: int, n: int = 6):
    model = small_cnn(seed)
    x = torch.rand(n, 1, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    return model, x, model(x).argmax(1)


@pytest.mark.parametrize("norm", NORMS)
def test_chunked_crown_matches_or_beats_the_reference(norm):
    """Chunked, unstable-only CROWN with cheaper bounds first and bounds reused across bisection steps
    gives the reference's certified radii or larger (never smaller), and the chunk size changes nothing."""
    for seed in (0, 1, 2):
        model, x, y = _cnn_points(seed)
        ref = certified_radii(model, x, y, norm=norm, method="crown", chunk=None)
        new = certified_radii(model, x, y, norm=norm, method="crown")
        assert np.all(new >= ref) and np.any(ref > 0)
        if seed == 0:  # several chunks per layer: the same radii
            np.testing.assert_array_equal(certified_radii(model, x, y, norm=norm, method="crown", chunk=7), new)


@pytest.mark.parametrize("norm", NORMS)
def test_chunked_radii_are_empirically_sound_on_a_cnn(norm):
    model, x, y = _cnn_points(0)
    r = certified_radii(model, x, y, norm=norm, method="crown", chunk=3)
    ok = np.flatnonzero((r > 0) & np.isfinite(r))
    assert ok.size
    for i in ok:  # no sampled point of the certified ball flips the label
        assert (sampled_margins(model, x[i:i + 1], y[i:i + 1], float(r[i]), norm, n=200) > 0).all()


def test_layer_bounds_chunked_equal_reference():
    """layer_bounds refines every neuron (chunked): the same bounds as the reference to rounding."""
    model, x, _ = _cnn_points(4)
    for norm in NORMS:
        new = layer_bounds(model, x, 0.05, norm=norm)
        ops, xf, _, p = _prepare(model, x, None, norm)
        pre, logits = _bounds(ops, xf, torch.full((x.shape[0],), 0.05, dtype=torch.float64), p, "crown", None,
                              chunk=None)
        for (a_lo, a_hi), (b_lo, b_hi) in zip(new, [pre[k] for k in sorted(pre)] + [logits]):
            assert torch.allclose(a_lo, b_lo, rtol=0, atol=1e-10) and torch.allclose(a_hi, b_hi, rtol=0, atol=1e-10)
