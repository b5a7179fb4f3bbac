"""foolbox 3 attacks under our contract, and a documented quirk of foolbox's L2 FMN."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attacks import get_attack
from attacks.counting import count_passes
from attacks.foolbox_adapter import foolbox_info

pytest.importorskip("foolbox")
INF = math.inf


def _setup(seed=0, b=6, d=10, k=3):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, k)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
            layer.bias.zero_()
    x = torch.rand(b, d, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("cls,norm", [("DDNAttack", 2.0), ("L2FMNAttack", 2.0), ("L1FMNAttack", 1.0),
                                      ("LinfDeepFoolAttack", INF), ("EADAttack", 1.0)])
def test_foolbox_attack_under_contract(cls, norm):
    model, x, y = _setup()
    info = get_attack(f"foolbox:{cls}")
    assert info.norms == (norm,) and info.kind == "minimal"
    x0 = x.clone()
    steps = 20
    adv = info.fn(model, x, y, norm=norm, steps=steps)
    assert torch.equal(x, x0)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        pred = model(adv).argmax(1)
    changed = (adv != x).any(1)
    assert (pred[changed] != y[changed]).all()
    # foolbox 3.3.4's L1FMNAttack breaks only 1 of these 6 points at any step count we tried (20 to
    # 500; ours breaks all 6): documented in docs/attacks.md, so only "the adapter ran it" is required
    assert changed.sum() >= (1 if cls == "L1FMNAttack" else 4)
    assert torch.equal(adv, info.fn(model, x, y, norm=norm, steps=steps))


def test_steps_reach_foolbox():
    model, x, y = _setup()
    fn = foolbox_info("DDNAttack").fn
    with count_passes(model) as c5:
        fn(model, x, y, norm=2.0, steps=5)
    with count_passes(model) as c15:
        fn(model, x, y, norm=2.0, steps=15)
    assert c15.backward - c5.backward == 10 * len(x)  # one gradient per step and sample


def test_flexible_distance_takes_requested_norm():
    info = foolbox_info("LinearSearchBlendedUniformNoiseAttack")
    assert set(info.norms) == {1.0, 2.0, INF}
    model, x, y = _setup()
    adv = info.fn(model, x, y, norm=INF, steps=50, seed=3)
    assert torch.equal(adv, info.fn(model, x, y, norm=INF, steps=50, seed=3))  # seeded


def test_bad_names_and_norms():
    with pytest.raises(ValueError, match="NoSuchAttack"):
        foolbox_info("NoSuchAttack")
    with pytest.raises(ValueError, match="not a concrete minimization attack"):
        foolbox_info("LinfPGD")
    model, x, y = _setup()
    with pytest.raises(ValueError, match="does not support norm"):
        foolbox_info("DDNAttack").fn(model, x, y, norm=INF, steps=5)


def test_foolbox_l2_fmn_does_not_project_onto_its_epsilon_ball():
    """foolbox 3.3.4 L2FMNAttack.project computes ``norms / norms`` (= 1): no projection at all.

    The Linf version clips to the ball as it should. Consequence (docs/attacks.md): foolbox's L2
    FMN is a normalised-gradient descent on the margin with best-point tracking, not FMN's
    adaptive-ball search, and its radii are typically larger than the FMN paper's.
    """
    import eagerpy as ep
    import foolbox as fb

    x0 = torch.full((2, 4), 0.5)
    far = x0 + torch.tensor([[0.4, 0.0, 0.0, 0.0], [0.0, 0.3, 0.3, 0.0]])
    eps = torch.tensor([0.1, 0.1])
    out = fb.attacks.L2FMNAttack().project(ep.astensor(far), ep.astensor(x0), ep.astensor(eps)).raw
    n = (out - x0).norm(dim=1)
    assert torch.allclose(out, far)  # unchanged ...
    assert (n > eps * 2).all()  # ... and far outside the epsilon ball
    out_inf = fb.attacks.LInfFMNAttack().project(ep.astensor(far), ep.astensor(x0), ep.astensor(eps)).raw
    assert ((out_inf - x0).abs().amax(1) <= eps + 1e-7).all()  # the Linf projection does clip
