"""advrobust.radii: the tensor-level entry point on a plain nn.Module (no run directory)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import advrobust
from advrobust.errors import UserError
from tests._linear_reference import linear_radii, model_affine
from tests._nets import linear_problem

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("norm,p", [("l2", 2.0), ("linf", math.inf), ("l1", 1.0)])
def test_default_cascade_reaches_the_exact_radius_of_a_linear_model(norm, p):
    # about 40% of pixels at 0 or 1: the box constraint binds for some samples' exact radii
    model, x, y = linear_problem()
    got = advrobust.radii(model, x, y, norm, steps=50)
    want = linear_radii(*model_affine(model), x.numpy(), y.numpy(), norm=p)
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
    model, x, y = linear_problem()
    with pytest.raises(UserError, match=match):
        advrobust.radii(model, x, y, **kwargs)


def test_inputs_outside_the_box_are_refused():
    model, x, y = linear_problem()
    with pytest.raises(UserError):
        advrobust.radii(model, x + 2.0, y, "l2")


def test_readme_radii_example_runs_as_written():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    example = [b for b in blocks if "advrobust.radii(" in b]
    assert len(example) == 1, "README lost its advrobust.radii example"
    exec(compile(example[0], "README.md", "exec"), {})
