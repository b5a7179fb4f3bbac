"""Model specs, exact parameter counts, deterministic construction."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from advrobust.errors import UserError
from advrobust.models import build_model, check_spec, describe, make_spec, param_count, width_for_params

SHAPES = [[64], [1, 8, 8], [3, 7, 5], [1, 28, 28], [3, 32, 32], [2, 1, 1]]


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


CASES = {
    "mlp": [(w, dep, s, k) for w, dep, s, k in itertools.product([1, 3, 64], [1, 2, 4], [[64], [3, 7, 5]], [2, 10])],
    "cnn": [(w, dep, s, k) for w, dep, s, k in itertools.product([1, 2, 3], [1, 2], [[1, 8, 8], [3, 7, 5], [2, 1, 1]],
                                                                  [2, 10])],
    "linear": [(None, None, s, k) for s, k in itertools.product(SHAPES, [2, 7])],
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("family", sorted(CASES))
def test_param_count_matches_numel(family):
    for width, depth, shape, classes in CASES[family]:
        spec = make_spec(family, width, input_shape=shape, classes=classes, depth=depth)
        model = build_model(spec)
        assert param_count(spec) == _numel(model), spec
        # the network accepts a batch of inputs of that shape and returns (B, classes) logits
        assert model(torch.rand(3, *shape)).shape == (3, classes), spec


def test_digits_mlp64_has_4810_params():
    spec = make_spec("mlp", 64, input_shape=[1, 8, 8], classes=10)
    assert param_count(spec) == 4810 == _numel(build_model(spec))
    # (64 + 1) * 64 + (64 + 1) * 10, by hand
    assert param_count(make_spec("mlp", 64, input_shape=[64], classes=10)) == 65 * 64 + 65 * 10


def test_cnn_is_madry_capacity_scale():
    spec = make_spec("cnn", 3, input_shape=[1, 28, 28], classes=10)
    layers = list(build_model(spec))
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    dense = [m for m in layers if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [6, 12]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) and c.padding == (2, 2) for c in convs)
    assert dense[0].in_features == 12 * 7 * 7 and dense[0].out_features == 64 * 3
    assert dense[-1].out_features == 10


@pytest.mark.parametrize("family,width,depth", [("linear", None, None), ("mlp", 5, 3), ("cnn", 2, 2)])
def test_only_certifiable_layers(family, width, depth):
    shape = [1, 8, 8]
    model = build_model(make_spec(family, width, input_shape=shape, classes=4, depth=depth))
    assert isinstance(model, nn.Sequential)
    assert all(type(m) in (nn.Flatten, nn.Linear, nn.Conv2d, nn.ReLU) for m in model)
    hidden = sum(isinstance(m, nn.Linear) for m in model) - 1
    assert hidden == (0 if family == "linear" else depth)


def test_linear_spec_has_no_width_and_depth_zero():
    spec = make_spec("linear", None, input_shape=[5], classes=3)
    assert spec["width"] is None and spec["depth"] == 0
    assert param_count(spec) == 18
    assert describe(spec) == "linear"


def test_build_is_deterministic_and_leaves_global_rng_alone():
    spec = make_spec("mlp", 16, input_shape=[10], classes=3, depth=2)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(spec, seed=7)
    after = torch.rand(3)
    b = build_model(spec, seed=7)
    c = build_model(spec, seed=8)
    assert torch.equal(before, after)  # building did not consume the caller's random numbers
    for (ka, va), (kb, vb), (_, vc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_spec_survives_json():
    spec = make_spec("cnn", 2, input_shape=(1, 8, 8), classes=10, depth=2)
    back = json.loads(json.dumps(spec))
    assert check_spec(back) == spec
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(build_model(back, seed=3)(x), build_model(spec, seed=3)(x))


@pytest.mark.parametrize("args,kwargs,match", [
    (("resnet", 4), {}, "unknown model family"),
    (("mlp", 0), {}, "positive integer"),
    (("mlp", -3), {}, "positive integer"),
    (("mlp", 2.5), {}, "positive integer"),
    (("mlp", None), {}, "positive integer"),
    (("mlp", True), {}, "positive integer"),
    (("mlp", 4), {"depth": 0}, "depth"),
    (("cnn", 4), {"input_shape": [64]}, r"\[C, H, W\]"),
    (("linear", 8), {}, "no width"),
    (("linear", None), {"depth": 2}, "no hidden layers"),
    (("mlp", 4), {"classes": 1}, "classes"),
    (("mlp", 4), {"input_shape": []}, "input_shape"),
    (("mlp", 4), {"input_shape": [8, 0]}, "input_shape"),
    (("mlp", 4), {"input_shape": [8.5]}, "input_shape"),
])
def test_make_spec_rejects_bad_input(args, kwargs, match):
    kw = {"input_shape": [1, 8, 8], "classes": 10, **kwargs}
    with pytest.raises(UserError, match=match):
        make_spec(*args, **kw)


def test_check_spec_rejects_incomplete_dict():
    with pytest.raises(UserError, match="missing"):
        check_spec({"family": "mlp", "width": 3})
    with pytest.raises(UserError, match="dict"):
        build_model(["mlp", 3])


@pytest.mark.parametrize("family,shape,depth", [("mlp", [32], 1), ("mlp", [8, 8], 2), ("cnn", [1, 8, 8], 1)])
def test_width_for_params_is_the_nearest_width(family, shape, depth):

    def count(w):
        return param_count(make_spec(family, w, input_shape=shape, classes=3, depth=depth))

    for target in [count(1), count(7), count(7) + 1, (count(20) + count(21)) // 2, 10 * count(30)]:
        w = width_for_params(family, target, input_shape=shape, classes=3, depth=depth)
        best = min(range(1, 400), key=lambda v: (abs(count(v) - target), v))
        assert w == best, (target, w, best)
    with pytest.raises(UserError, match="below"):
        width_for_params(family, count(1) - 1, input_shape=shape, classes=3, depth=depth)
    with pytest.raises(UserError, match="linear"):
        width_for_params("linear", 100, input_shape=shape, classes=3)
