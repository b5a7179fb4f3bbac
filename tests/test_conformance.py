"""The attack contract, checked for every registered attack and every norm it supports.

Each attack gets a tiny ReLU network and a few steps: this suite checks behaviour, not strength
(``test_optimality.py`` checks strength).
"""
from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from attacks import ATTACKS, get_attack
from attacks.norms import lp_norm

INF = math.inf
CASES = [(name, p) for name, info in ATTACKS.items() for p in info.norms]
IDS = [f"{n}-{p}" for n, p in CASES]
BUDGET_EPS = {1.0: 1.0, 2.0: 0.3, INF: 0.05}


def _model(seed=0, d=12, k=3):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, k)).eval()
    with torch.no_grad():  # unit-variance weights: every class is reachable inside the box
        for layer in (model[1], model[3]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
            layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=g))
    return model


def _data(seed=1, b=5, d=12):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 3, d // 3, generator=g)  # image-shaped inputs: attacks must keep the shape
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # pixels on the box edges
    return x


def _run(name, model, x, y, p, *, steps=5, targeted=False, seed=0):
    info = ATTACKS[name]
    kwargs = {"norm": p, "steps": steps, "targeted": targeted}
    params = inspect.signature(info.fn).parameters
    if info.kind == "budget":
        kwargs["eps"] = BUDGET_EPS[p]
    if "seed" in params:
        kwargs["seed"] = seed
    if "search_steps" in params:  # epsilon-search attacks: each round is a whole budget attack
        kwargs["search_steps"] = 4
        kwargs["steps"] = min(steps, 10)
    return info.fn(model, x, y, **kwargs)


def test_registry_entries_complete():
    for name, info in ATTACKS.items():
        assert info.kind in ("minimal", "budget"), name
        assert info.norms and set(info.norms) <= {1.0, 2.0, INF}, name
        assert info.paper, name
        params = inspect.signature(info.fn).parameters
        for key in ("norm", "steps", "targeted"):
            assert key in params and params[key].kind is inspect.Parameter.KEYWORD_ONLY, (name, key)
        assert not any(q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values()), name
        assert info.fn.__doc__, name
    with pytest.raises(KeyError):
        get_attack("no-such-attack")


@pytest.mark.parametrize("name,norm", CASES, ids=IDS)
def test_contract(name, norm):
    model = _model()
    x = _data()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[-1] = (y[-1] + 1) % 3  # one sample misclassified already
    x_copy, y_copy = x.clone(), y.clone()
    adv = _run(name, model, x, y, norm)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy), "inputs modified"
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.isfinite(adv).all()
    assert not model.training
    assert all(q.grad is None for q in model.parameters()), "parameter gradients left behind"
    # deterministic under the seed
    assert torch.equal(adv, _run(name, model, x, y, norm))
    # where the attack changed the point, it must be adversarial (else it returns the input)
    with torch.no_grad():
        pred = model(adv).argmax(1)
    changed = (adv != x).flatten(1).any(1)
    assert (pred[changed] != y[changed]).all(), "a changed point that is not adversarial"
    if ATTACKS[name].kind == "budget":
        d = (adv - x).flatten(1)
        n = lp_norm(d, norm)
        assert (n <= BUDGET_EPS[norm] * (1 + 1e-5) + 1e-7).all(), f"budget exceeded: {n.max():.6g}"
    # batch of one
    one = _run(name, model, x[:1], y[:1], norm)
    assert one.shape == x[:1].shape and one.min() >= 0 and one.max() <= 1


@pytest.mark.parametrize("name,norm", CASES, ids=IDS)
def test_targeted_hits_target(name, norm):
    model = _model()
    x = _data()
    with torch.no_grad():
        target = model(x).topk(2, dim=1).indices[:, 1]  # the runner-up class
    try:
        steps = 30 if ATTACKS[name].kind == "minimal" else 10
        adv = _run(name, model, x, target, norm, steps=steps, targeted=True)
    except ValueError as exc:
        if "target" in str(exc).lower():
            pytest.skip(f"{name} does not support targeted attacks: {exc}")
        raise
    with torch.no_grad():
        pred = model(adv).argmax(1)
    changed = (adv != x).flatten(1).any(1)
    assert (pred[changed] == target[changed]).all(), "a targeted point that does not reach its target"
    if ATTACKS[name].kind == "minimal":
        assert changed.sum() >= 3, f"{name} reached the target on only {int(changed.sum())} of 5 samples"
