"""FMN, DDN, ALMA and Carlini-Wagner against exact radii of linear models, and basic contract checks.

For logits z = W x + b the smallest Lp perturbation that reaches class j is
(z_y - z_j) / ||w_y - w_j||_q (q the dual exponent) as long as the minimiser stays in the box;
the minimal radius is the smallest over j. The tests build problems where the minimiser is
inside the box (and check it), then require every sample broken and the median ratio of the
attack's radius to the exact one within a tolerance.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attacks.norms import dual, lp_norm
from attacks.alma import alma
from attacks.cw import cw
from attacks.ddn import ddn
from attacks.fmn import fmn

from _nets import small_mlp
from _linear_reference import exact_radius, linear_radii

INF = math.inf
torch.set_num_threads(1)  # the suite runs on two shared cores; tiny models gain nothing from threads


def linear_problem(seed: int, half: float, batch: int = 32, d: int = 64, k: int = 10):
    """Random linear classifier centred on 0.5 and inputs in [0.5 - half, 0.5 + half]."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(k, d, generator=gen)
    x = 0.5 + half * (2 * torch.rand(batch, d, generator=gen) - 1)
    model = nn.Linear(d, k)
    with torch.no_grad():
        model.weight.copy_(w)
        model.bias.copy_(-0.5 * w.sum(1))
    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


# (attack, norm, keyword arguments, tolerance on the median ratio to the exact radius)
CASES = [
    ("fmn", fmn, 1.0, dict(steps=60), 0.03),
    ("fmn", fmn, 2.0, dict(steps=60), 0.01),
    ("fmn", fmn, INF, dict(steps=60), 0.02),
    ("ddn", ddn, 2.0, dict(steps=60), 0.01),
    ("alma", alma, 1.0, dict(steps=400), 0.03),
    ("alma", alma, 2.0, dict(steps=300), 0.01),
    ("cw", cw, 2.0, dict(steps=500, search_steps=5), 0.01),
]
IDS = [f"{c[0]}-l{c[2]:g}" for c in CASES]


@pytest.mark.parametrize("name,fn,p,kw,tol", CASES, ids=IDS)
def test_linear_model_radius_near_exact(name, fn, p, kw, tol):
    model, x, y = linear_problem(seed=3, half=0.1 if p == 1 else 0.2)
    x_before = x.clone()
    exact = exact_radius(model, x, y, p)
    adv = fn(model, x, y, norm=p, **kw)
    assert torch.equal(x, x_before), "inputs modified"
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert bool((model(adv).argmax(1) != y).all()), f"{name} left samples unbroken"
    ratio = lp_norm(adv - x, p) / exact
    assert float(ratio.min()) > 1 - 1e-3, "radius below the exact minimum: verification bug"
    assert float(ratio.median()) <= 1 + tol, f"{name} l{p:g}: median ratio {float(ratio.median()):.4f}"


@pytest.mark.parametrize("name,fn,p,kw,tol", CASES, ids=IDS)
def test_small_relu_net(name, fn, p, kw, tol):
    model, x, y = small_mlp(1, batch=32, d=64, k=10, hidden=64)
    adv = fn(model, x, y, norm=p, **kw)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        broken = model(adv).argmax(1) != y
    assert float(broken.float().mean()) >= 0.95
    # where nothing was found the input is returned unchanged
    assert torch.equal(adv[~broken], x[~broken])
    assert all(prm.grad is None for prm in model.parameters())
    assert not model.training


@pytest.mark.parametrize("name,fn,p,kw,tol", CASES[:1] + CASES[3:5] + CASES[6:], ids=[IDS[0]] + IDS[3:5] + IDS[6:])
def test_deterministic_and_targeted(name, fn, p, kw, tol):
    model, x, y = linear_problem(seed=5, half=0.1 if p == 1 else 0.2, batch=16)
    kw = dict(kw, steps=min(kw["steps"], 150))  # success only, not precision
    first = fn(model, x, y, norm=p, **kw)
    assert torch.equal(first, fn(model, x, y, norm=p, **kw))
    target = (y + 1 + torch.arange(len(y)) % 9) % 10  # never the label
    adv = fn(model, x, target, norm=p, targeted=True, **kw)
    with torch.no_grad():
        assert bool((model(adv).argmax(1) == target).all()), f"{name} missed targets"


class _CountingModel(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("name,fn,p,extra", [
    ("fmn", fmn, 1.0, {}), ("fmn", fmn, INF, {}), ("ddn", ddn, 2.0, {}), ("alma", alma, 2.0, {}),
    ("cw", cw, 2.0, dict(search_steps=4)),
])
def test_forward_calls_follow_steps(name, fn, p, extra):
    model, x, y = linear_problem(seed=0, half=0.2, batch=4)
    counting = _CountingModel(model).eval()
    fn(counting, x, y, norm=p, steps=40, **extra)
    if name == "cw":  # early abort may stop a run before its share of the steps
        assert 4 <= counting.calls <= 40
    else:
        assert counting.calls == 40


@pytest.mark.parametrize("fn,bad", [(ddn, 1.0), (cw, INF), (alma, INF), (fmn, 3.0), (fmn, "l2")])
def test_unsupported_norm_raises(fn, bad):
    model, x, y = linear_problem(seed=0, half=0.2, batch=2)
    with pytest.raises(ValueError):
        fn(model, x, y, norm=bad, steps=2)


def test_out_of_range_inputs_raise():
    model, x, y = linear_problem(seed=0, half=0.2, batch=2)
    with pytest.raises(ValueError):
        fmn(model, x + 1, y, norm=2.0, steps=2)


def test_already_misclassified_returns_input():
    model, x, y = linear_problem(seed=0, half=0.2, batch=4)
    wrong = (y + 1) % 10
    for fn in (fmn, ddn, alma, cw):
        adv = fn(model, x, wrong, norm=2.0, steps=10)
        assert torch.equal(adv, x)


@pytest.mark.parametrize("name,fn,p,kw,tol", [
    ("fmn", fmn, 1.0, dict(steps=60), 0.03), ("fmn", fmn, 2.0, dict(steps=60), 0.01),
    ("fmn", fmn, INF, dict(steps=60), 0.02), ("alma", alma, 1.0, dict(steps=300), 0.03),
], ids=["fmn-l1", "fmn-l2", "fmn-linf", "alma-l1"])
def test_linear_model_with_binding_box(name, fn, p, kw, tol):
    """Inputs spread over [0, 1]: the box cuts off part of the unconstrained minimisers."""
    gen = torch.Generator().manual_seed(11)
    model = nn.Linear(64, 10).eval()
    with torch.no_grad():
        model.weight.copy_(torch.randn(10, 64, generator=gen))
        model.bias.copy_(-0.5 * model.weight.sum(1))
    x = torch.rand(32, 64, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    exact = torch.as_tensor(linear_radii(w, b, x.numpy(), y.numpy(), norm=p)).float()
    if p == 1:  # the box must matter for this test to mean anything
        q = dual(p)
        a = model.weight[y][:, None, :] - model.weight[None]
        z = model(x)
        free = ((z.gather(1, y[:, None]) - z) / a.abs().amax(2).clamp_min(1e-30))
        free[torch.arange(32), y] = INF
        assert q == INF and bool((exact > free.min(1).values.detach() * 1.01).any())
    adv = fn(model, x, y, norm=p, **kw)
    with torch.no_grad():
        assert bool((model(adv).argmax(1) != y).all())
    ratio = lp_norm(adv - x, p) / exact
    assert float(ratio.min()) > 1 - 1e-3
    assert float(ratio.median()) <= 1 + tol, f"{name} l{p:g}: median ratio {float(ratio.median()):.4f}"


def test_cw_targeted_small_budget_reaches_targets():
    """Regression: 10 steps with search_steps=4 used to give 4 runs of 2 Adam steps, each
    evaluating the same single point (Adam's first step ignores ``c``): no target was reached."""
    model, x, y = linear_problem(seed=5, half=0.2, batch=8)
    target = (y + 1 + torch.arange(len(y)) % 9) % 10  # never the label
    adv = cw(model, x, target, norm=2.0, steps=10, search_steps=4, targeted=True)
    with torch.no_grad():
        hit = model(adv).argmax(1) == target
    changed = (adv != x).flatten(1).any(1)
    assert torch.equal(hit, changed), "a changed point that misses its target"
    assert int(hit.sum()) >= 6, f"cw reached only {int(hit.sum())} of 8 targets in 10 steps"


def test_cw_pixels_on_box_edge_move():
    """Regression: with the tanh change of variables, pixels at 0 or 1 barely moved, and on
    inputs with half the pixels on the box edge the radii were ~1.25x the exact ones."""
    gen = torch.Generator().manual_seed(2)
    model = nn.Linear(32, 4).eval()
    with torch.no_grad():
        model.weight.copy_(torch.randn(4, 32, generator=gen))
        model.bias.copy_(0.5 * torch.randn(4, generator=gen))
    x = torch.rand(12, 32, generator=gen)
    edge = torch.rand(12, 32, generator=gen) < 0.5
    x = torch.where(edge, (torch.rand(12, 32, generator=gen) < 0.5).float(), x)
    with torch.no_grad():
        y = model(x).argmax(1)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    exact = torch.as_tensor(linear_radii(w, b, x.numpy(), y.numpy(), norm=2.0)).float()
    adv = cw(model, x, y, norm=2.0, steps=150, search_steps=3)
    with torch.no_grad():
        assert bool((model(adv).argmax(1) != y).all())
    ratio = lp_norm(adv - x, 2.0) / exact
    assert float(ratio.min()) > 1 - 1e-3
    assert float(ratio.median()) <= 1.02, f"median ratio {float(ratio.median()):.4f}"
