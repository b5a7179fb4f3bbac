"""Lipschitz estimates: exact on linear models, lower <= upper on ReLU networks, conv operator norms."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from advrobust.errors import UserError
from advrobust.norms import norm_name
from advrobust.lipschitz import (_conv_matrix, attack_secants, conv_spectral_norm, estimate_lipschitz,
                                 input_scale, upper_bounds)

INF = math.inf
DUAL = {1.0: INF, 2.0: 2.0, INF: 1.0}


def _linear(k, d=12, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k)).eval()


@pytest.mark.parametrize("norm", [1.0, 2.0, INF])
def test_linear_two_classes_every_estimate_is_exact(norm):
    model = _linear(2)
    x = torch.rand(20, 1, 3, 4)
    y = torch.randint(0, 2, (20,))
    est = estimate_lipschitz(model, x, y, norm=norm, ascent_steps=3, segments=8)
    w = model[1].weight.detach().double()
    exact_margin = float((w[0] - w[1]).norm(p=DUAL[norm]))
    exact_logit = float(torch.linalg.svdvals(w)[0])
    m, lg = est["margin"], est["logit"]
    for v in (m["lower_gradient"], m["lower_segments"], m["lower_ascent"], m["lower"], m["upper"]):
        assert v == pytest.approx(exact_margin, rel=1e-5)
    for v in (lg["lower_gradient"], lg["lower"], lg["upper"]):
        assert v == pytest.approx(exact_logit, rel=1e-5)
    assert m["upper_exact"] and est["norm"] == norm_name(norm)


def test_linear_many_classes_gradient_is_active_pair_and_upper_is_max_pair():
    model = _linear(4, d=6)
    x = torch.rand(30, 6)
    y = torch.randint(0, 4, (30,))
    est = estimate_lipschitz(model, x, y, norm=2.0, ascent_steps=0, segments=0)
    w = model[1].weight.detach().double()
    logits = model(x).detach()
    # the largest margin gradient over points and classes y is ||w_y - w_j*(x, y)|| for the active j*
    best = 0.0
    for i in range(30):
        for c in range(4):
            other = logits[i].clone()
            other[c] = -INF
            best = max(best, float((w[c] - w[int(other.argmax())]).norm()))
    assert est["margin"]["lower_gradient"] == pytest.approx(best, rel=1e-5)
    pairs = max(float((w[a] - w[b]).norm()) for a in range(4) for b in range(4) if a != b)
    assert est["margin"]["upper"] == pytest.approx(pairs, rel=1e-9)
    assert est["margin"]["lower"] <= est["margin"]["upper"] * (1 + 1e-6)


@pytest.mark.parametrize("norm", [1.0, 2.0, INF])
def test_relu_net_lower_below_upper(norm):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3)).eval()
    x = torch.rand(40, 10)
    y = torch.randint(0, 3, (40,))
    est = estimate_lipschitz(model, x, y, norm=norm, ascent_steps=10, segments=16)
    for sec in ("margin", "logit"):
        s = est[sec]
        assert 0 < s["lower"] <= s["upper"] * (1 + 1e-6)
        assert s["lower"] >= s["lower_gradient"]  # the reported lower is the best of the candidates
    # ascent and segments never lower the bound below the training-point gradient
    assert est["margin"]["lower_ascent"] >= est["margin"]["lower_gradient"] - 1e-7 or \
        est["margin"]["lower_ascent"] >= est["margin"]["lower_segments"] - 1e-7


def test_conv_operator_norm_matches_explicit_matrix():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 5, stride=2, padding=2)
    shape = (2, 9, 7)
    a = _conv_matrix(conv, shape).double()
    # the explicit matrix really is the convolution
    v = torch.randn(1, *shape)
    out = nn.functional.conv2d(v, conv.weight, None, 2, 2).reshape(-1)
    assert torch.allclose(a.float() @ v.reshape(-1), out, atol=1e-5)
    exact = float(torch.linalg.svdvals(a)[0])
    assert conv_spectral_norm(conv, shape, iters=500) == pytest.approx(exact, rel=1e-4)
    # differs from the reshaped kernel's norm (which ignores stride/overlap)
    kernel_norm = float(torch.linalg.svdvals(conv.weight.detach().reshape(3, -1).double())[0])
    assert abs(kernel_norm - exact) > 1e-3 * exact


def test_cnn_upper_bound_large_path_agrees_and_bounds_lower(monkeypatch):
    import advrobust.lipschitz as L

    torch.manual_seed(3)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 5, 2, 2), nn.ReLU(), nn.Conv2d(2, 4, 5, 2, 2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    exact = upper_bounds(cnn, (1, 8, 8), norm=INF)
    monkeypatch.setattr(L, "_EXPLICIT_CONV_MAX_ENTRIES", 0)  # force the conv-with-ones / power-iteration path
    big = upper_bounds(cnn, (1, 8, 8), norm=INF)
    assert exact["exact"] and not big["exact"]
    for a, b in zip(exact["layers"], big["layers"]):
        if a["norms"]:
            for k in a["norms"]:
                assert b["norms"][k] == pytest.approx(a["norms"][k], rel=1e-3), k
    monkeypatch.undo()
    est = estimate_lipschitz(cnn, x, y, norm=2.0, ascent_steps=5, segments=8)
    assert est["margin"]["lower"] <= est["margin"]["upper"] and est["logit"]["lower"] <= est["logit"]["upper"]


def test_attack_secants_from_results():
    model = _linear(2, d=4)
    x = torch.rand(5, 4)
    w = model[1].weight.detach()
    g = (w[0] - w[1])
    logits = model(x).detach()
    labels = logits.argmax(1)
    margin = (logits[:, 0] - logits[:, 1]) * torch.where(labels == 0, 1.0, -1.0)
    # exact L2 boundary projection, then 10% further: margin(adv) < 0
    sign = torch.where(labels == 0, 1.0, -1.0)
    adv = x - 1.1 * (margin / g.norm() ** 2).unsqueeze(1) * g * sign.unsqueeze(1)
    res = {"index": np.arange(5), "label": labels.numpy(), "margin": margin.double().numpy(),
           "best_radius": (adv - x).norm(dim=1).double().numpy(), "adv": adv.numpy()}
    out = attack_secants(model, res, x, norm=2.0)
    # for a linear model margin / radius = ||g|| / 1.1, and the secant is exactly ||g||
    assert out["ratio_max"] == pytest.approx(float(g.norm()) / 1.1, rel=1e-4)
    assert out["secant_max"] == pytest.approx(float(g.norm()), rel=1e-4)
    res["best_radius"][:] = np.inf  # unbroken samples give no ratio
    assert attack_secants(None, res, None, norm=2.0)["ratio_count"] == 0


def test_input_scale_sources():
    x = torch.zeros(4, 3)
    x[:, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    s, src = input_scale(x, None)
    assert s == pytest.approx(0.5) and "centred" in src
    assert input_scale(x, {"name": "sphere", "scale": 0.5, "mean_l2_centered": 0.49})[0] == 0.5
    assert input_scale(x, {"name": "digits", "scale": 3.8, "mean_l2_centered": 3.3})[0] == 3.3


def test_bad_inputs_are_user_errors():
    model = _linear(2, d=4)
    with pytest.raises(UserError):
        estimate_lipschitz(model, torch.rand(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(UserError):
        estimate_lipschitz(model, torch.full((3, 4), float("nan")), torch.zeros(3, dtype=torch.long))
    with pytest.raises(UserError):
        upper_bounds(nn.Linear(3, 2), (3,))


def test_cli_writes_lipschitz_json(tmp_path, capsys):
    from advrobust import runs
    from advrobust.cli.lipschitz import main
    from advrobust.models import build_model, make_spec

    spec = make_spec("mlp", 6, input_shape=[64], classes=3)
    model = build_model(spec)
    data = {"name": "sphere", "n": 24, "n_test": 8, "dim": 64, "classes": 3, "labels": "random", "seed": 0}
    run = tmp_path / "r"
    runs.save_model(run / "model.pt", model, spec)
    runs.atomic_write_json(run / "run.json", {"spec": {"data": data, "model": spec}, "params": 411, "n": 24, "d": 64})
    assert main([str(run), "--ascent-steps", "2", "--segments", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "lipschitz.json").read_text())
    assert saved["norm"] == "l2" and saved["margin"]["lower"] == printed["margin"]["lower"]
    assert saved["input_scale"] == pytest.approx(0.5)  # sphere: the embedding radius
    assert main([str(run), "--norm", "linf", "--ascent-steps", "0", "--segments", "0"]) == 0
    saved = json.loads((run / "lipschitz.json").read_text())
    assert set(saved["by_norm"]) == {"l2", "linf"} and saved["norm"] == "linf"
    with pytest.raises(UserError):
        main([str(run), "--norm", "l3"])


def test_lipschitz_config_checks_round_trips_and_its_command_line_parses_back():
    import shlex

    from advrobust.cli.lipschitz import build_parser
    from advrobust.lipschitz import LipschitzConfig, command_line

    for kwargs, match in (({"norm": "l7"}, "norm"), ({"segments": -1}, "--segments"), ({"max_points": 0}, "--max-points")):
        with pytest.raises(UserError, match=match):
            LipschitzConfig(**kwargs)
    cfg = LipschitzConfig(norm="Linf", ascent_steps=3, segments=0, max_points=40, seed=2)
    assert cfg.norm == "linf" and LipschitzConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    a = build_parser().parse_args(shlex.split(command_line("runs/x", cfg))[3:])
    assert LipschitzConfig(norm=a.norm, ascent_steps=a.ascent_steps, ascent_points=a.ascent_points, segments=a.segments,
                           max_points=a.max_points, seed=a.seed, device=a.device) == cfg and a.run_dir == "runs/x"
