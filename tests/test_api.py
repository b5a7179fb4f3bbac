"""advrobust.radii: the tensor-level entry point on a plain nn.Module (no run directory)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import advrobust
from advrobust._cli import UserError
from tests._linear_reference import exact_radius

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_problem(seed=0, n=12, d=10, k=3):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k)
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=g))
        model.bias.copy_(torch.randn(k, generator=g) * 0.1)
    x = 0.5 + 0.02 * torch.randn(n, d, generator=g)  # deep inside the box: the box never binds
    y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("norm,p", [("l2", 2.0), ("linf", math.inf), ("l1", 1.0)])
def test_default_cascade_reaches_the_exact_radius_of_a_linear_model(norm, p):
    model, x, y = _linear_problem()
    got = advrobust.radii(model, x, y, norm, steps=50)
    want = exact_radius(model, x, y, p).numpy()
    assert got.norm == norm and got.correct.all()
    np.testing.assert_allclose(got.radius, want, rtol=2e-3)
    # the returned points are adversarial at the returned radius, and say who found them
    adv = torch.as_tensor(got.adv)
    assert (model(adv).argmax(1) != y).all()
    dist = (adv - x).flatten(1).norm(p=p, dim=1).numpy()
    np.testing.assert_allclose(dist, got.radius, rtol=1e-4)
    assert all(a in got.cascade.attacks for a in got.attack)


def test_lower_bounds_and_exact_radii_bracket_the_attack_radius():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.rand(8, 6)
    y = model(x).argmax(1)
    got = advrobust.radii(model, x, y, "linf", lower="crown", exact=True, attacks=["fmn", "deepfool"], steps=50)
    assert got.lower is not None and (got.lower <= got.radius * (1 + 1e-6)).all()
    solved = got.exact_status == 0
    assert solved.any()
    # exact radii lie between the certified bound and the attack's radius
    assert (got.exact[solved] <= got.radius[solved] * (1 + 1e-4)).all()
    assert (got.exact[solved] >= got.lower[solved] * (1 - 1e-4)).all()


@pytest.mark.parametrize("kwargs,match", [({"norm": "l3"}, "norm"), ({"attacks": ["nope"]}, "nope"),
                                          ({"lower": "magic"}, "magic"), ({"attacks": []}, "empty")])
def test_bad_arguments_are_user_errors(kwargs, match):
    model, x, y = _linear_problem()
    with pytest.raises(UserError, match=match):
        advrobust.radii(model, x, y, **kwargs)


def test_inputs_outside_the_box_are_refused():
    model, x, y = _linear_problem()
    with pytest.raises(UserError):
        advrobust.radii(model, x + 2.0, y, "l2")


def test_readme_radii_example_runs_as_written():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    example = [b for b in blocks if "advrobust.radii(" in b]
    assert len(example) == 1, "README lost its advrobust.radii example"
    exec(compile(example[0], "README.md", "exec"), {})
