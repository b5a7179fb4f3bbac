"""Power-law fits and the law-of-robustness comparison."""
import math

import numpy as np
import pytest

from advrobust.errors import UserError
from advrobust.law import (comparable_groups, fit_law, fit_power_law, group_key, interpolation_thresholds,
                           theorem3_bound)


@pytest.mark.parametrize("a", [-0.5, 0.5, 1.3])
def test_fit_recovers_exponent_within_ci(a):
    rng = np.random.default_rng(0)
    x = np.geomspace(10, 1e5, 12)
    y = 3.0 * x ** a * np.exp(rng.normal(0, 0.1, x.size))
    f = fit_power_law(x, y, bootstrap=500, seed=1)
    assert f["ci_low"] <= a <= f["ci_high"]
    assert abs(f["exponent"] - a) < 0.05 and f["r2"] > 0.95 and f["n"] == 12
    assert math.exp(f["intercept"]) == pytest.approx(3.0, rel=0.3)
    assert fit_power_law(x, y, bootstrap=500, seed=1) == f  # deterministic under the seed


def test_fit_exact_and_errors():
    f = fit_power_law([1, 2, 4], [5, 10, 20], bootstrap=100)
    assert f["exponent"] == pytest.approx(1.0) and f["r2"] == pytest.approx(1.0)
    assert f["ci_low"] == pytest.approx(1.0) and f["ci_high"] == pytest.approx(1.0)
    assert fit_power_law([1, 2], [1, 4])["ci_low"] is None  # two points: no interval
    with pytest.raises(ValueError):
        fit_power_law([1, 2, 3], [1, 0, 2])
    with pytest.raises(ValueError):
        fit_power_law([2, 2, 2], [1, 2, 3])


def _rows(noise=0.05, seed=0):
    """Synthetic compare rows obeying the law: lip = 0.7 sqrt(n d / p), radius = 0.2 sqrt(p / (n d))."""
    rng = np.random.default_rng(seed)
    rows = []
    n, d = 1000, 64
    for i, p in enumerate([100, 300, 1000, 3000, 1e4, 3e4, 1e5]):
        mem = p >= 1000
        jitter = math.exp(rng.normal(0, noise))
        rows.append({"run": f"w{i}", "dataset": "gaussian", "labels": "random", "n": n, "d": d, "params": int(p),
                     "train_accuracy": 1.0 if mem else 0.8, "input_scale": 1.0,
                     "l2_lip_lower": 0.7 * math.sqrt(n * d / p) * jitter,
                     "l2_train_radius_median": 0.2 * math.sqrt(p / (n * d)) / jitter if mem else 1e-3})
    return rows


def test_fit_law_beyond_threshold_recovers_law():
    rows = _rows()
    thr = interpolation_thresholds(rows)
    assert thr == {group_key(rows[0], "params"): 1000}
    assert group_key(rows[0], "params")[:3] == ("gaussian", 1000, 64)
    lip = fit_law(rows, response="lip_lower", against="params", bootstrap=300)
    assert lip["rows_used"] == ["w2", "w3", "w4", "w5", "w6"]
    assert lip["predicted_exponent"] == -0.5 and lip["within_ci"] is True
    assert lip["constant"]["constant"] == pytest.approx(0.7, rel=0.1)
    rad = fit_law(rows, response="train_radius_median", against="params", bootstrap=300)
    assert rad["predicted_exponent"] == 0.5 and rad["within_ci"] is True
    assert "heuristic" in rad["note"]
    below = fit_law(rows, response="lip_lower", against="params", regime="below", bootstrap=300)
    assert below["rows_used"] == ["w0", "w1"]


def test_fit_law_unit_scale_and_theorem_checks():
    rows = _rows()
    for r in rows:
        r["input_scale"] = 2.0
    lip = fit_law(rows, response="lip_lower", bootstrap=100)
    assert lip["unit_scale"] and lip["constant"]["constant"] == pytest.approx(1.4, rel=0.1)
    # gaussian, random labels: sigma^2 = 1, eps = 1, but n = 1000 < 8^4 log(800)
    t = lip["theorem3"][0]
    assert t["value"] is not None and any(h.startswith("sample size") for h in t["hypotheses_failing"])
    clean = [dict(r, dataset="digits", labels="random", label_noise=0.0) for r in rows]
    t = fit_law(clean, response="lip_lower", bootstrap=100)["theorem3"][0]
    assert t["value"] is None and any("noise level" in h for h in t["hypotheses_failing"])
    assert any("isoperimetry" in h for h in t["hypotheses_failing"])


def test_theorem3_formula():
    b = theorem3_bound(n=10 ** 6, d=100, p=1000, eps=0.5, c=1.0, wj=1.0, delta=0.01)
    expect = 0.5 / 512 * math.sqrt(1e8 / (1000 * math.log(120) + math.log(400)))
    assert b["value"] == pytest.approx(expect) and b["sample_condition"]
    assert b["needed_n"] == math.ceil(8 ** 4 * math.log(800) / 0.25)
    assert not theorem3_bound(n=1000, d=100, p=1000, eps=0.5)["sample_condition"]


def test_fit_law_user_errors():
    rows = _rows()
    with pytest.raises(UserError):
        fit_law(rows, response="nope")
    with pytest.raises(UserError):
        fit_law(rows, regime="sideways")
    with pytest.raises(UserError):
        fit_law(rows, against="width")
    with pytest.raises(UserError):
        fit_law(rows[:1], response="lip_lower", regime="all")


def _two_sets():
    """Digits-like rows with radius ~ p^+0.5 and sphere-like rows with radius ~ p^-0.5 (all memorise).
    Pooled, the slope is meaningless; per data set each exponent must come back."""
    rows = []
    for ds, n, d, a, c in (("digits", 1348, 64, 0.5, 1e-3), ("sphere", 256, 32, -0.5, 50.0)):
        for i, p in enumerate([1e3, 3e3, 1e4, 3e4, 1e5]):
            rows.append({"run": f"{ds}{i}", "dataset": ds, "n": n, "d": d, "params": int(p), "family": "mlp",
                         "width": 2 ** (i + 4), "depth": 1, "labels": "random", "label_noise": 0.0, "flip": 0.0,
                         "train_accuracy": 1.0, "input_scale": 1.0, "l2_train_radius_median": c * p ** a})
    return rows


def test_comparable_groups_split_data_sets_and_recover_each_exponent():
    rows = _two_sets()
    groups = comparable_groups(rows, "params")
    assert [g for g, _ in groups] == ["digits n=1348 d=64", "sphere n=256 d=32"]
    assert [[r["run"] for r in m] for _, m in groups] == [[f"digits{i}" for i in range(5)],
                                                          [f"sphere{i}" for i in range(5)]]
    fits = [fit_law(m, response="train_radius_median", against="params", bootstrap=100) for _, m in groups]
    assert fits[0]["fit"]["exponent"] == pytest.approx(0.5) and fits[1]["fit"]["exponent"] == pytest.approx(-0.5)
    assert [f["group"] for f in fits] == ["digits n=1348 d=64", "sphere n=256 d=32"]
    assert fits[0]["rows_used"] == [f"digits{i}" for i in range(5)]
    # pooled rows are refused unless asked for, and then the label says so
    with pytest.raises(UserError, match="groups"):
        fit_law(rows, response="train_radius_median", against="params", bootstrap=0)
    pooled = fit_law(rows, response="train_radius_median", against="params", bootstrap=0, pool=True)
    assert pooled["group"].startswith("pooled") and pooled["fit"]["n"] == 10
    # n and d take one value per data set here: nothing to fit against them
    assert comparable_groups(rows, "n") == [] and comparable_groups(rows, "d") == []
    assert len(comparable_groups(rows, "n", min_distinct=1)) == 10  # each width is its own n-group


def test_comparable_groups_keys_per_variable():
    base = {"dataset": "gaussian", "n": 100, "d": 8, "family": "mlp", "width": 16, "depth": 1, "labels": "random",
            "label_noise": None, "flip": None, "params": 1000}
    rows = [dict(base, run="a"), dict(base, run="b", n=200), dict(base, run="c", n=400, width=32, params=2000),
            dict(base, run="e", n=800.0, label_noise=0.1), dict(base, run="f", n=1600, label_noise=0.1)]
    # against n: width and label noise must agree; 800.0 and 800 read alike
    got = {g: [r["run"] for r in m] for g, m in comparable_groups(rows, "n")}
    assert got == {"gaussian d=8 width=16": ["a", "b"], "gaussian d=8 width=16 label_noise=0.1": ["e", "f"]}
    # against params: n must agree, width may vary; different families never pool
    rows = [dict(base, run="a"), dict(base, run="b", width=64, params=4000),
            dict(base, run="c", family="cnn", params=500), dict(base, run="d", family="cnn", width=64, params=900)]
    groups = comparable_groups(rows, "params")
    assert [[r["run"] for r in m] for _, m in groups] == [["a", "b"], ["c", "d"]]
    assert [g for g, _ in groups] == ["gaussian n=100 d=8 family=mlp", "gaussian n=100 d=8 family=cnn"]
    with pytest.raises(UserError):
        comparable_groups(rows, "width")


def test_interpolation_thresholds_per_group():
    base = {"dataset": "digits", "n": 100, "d": 64, "labels": "random", "depth": 1}
    rows = [dict(base, family="mlp", params=100, train_accuracy=0.9),
            dict(base, family="mlp", params=400, train_accuracy=1.0),
            dict(base, family="cnn", params=50, train_accuracy=1.0),
            dict(base, family="cnn", params=800, train_accuracy=1.0),
            dict(base, family="mlp", label_noise=0.2, params=100, train_accuracy=0.5)]
    thr = interpolation_thresholds(rows)
    assert thr[group_key(rows[0], "params")] == 400  # the cnn's smaller threshold does not leak into the mlp's
    assert thr[group_key(rows[2], "params")] == 50
    assert thr[group_key(rows[4], "params")] is None and len(thr) == 3


def test_beyond_leaves_out_a_seed_that_did_not_interpolate():
    # seeds 0 and 1 at every width; seed 1 fails to interpolate at p = 3000 (above the threshold set
    # by seed 0 at 1000): its tiny radius would pull the slope down, so the beyond fit drops it
    rows = []
    for seed in (0, 1):
        for r in _rows(seed=seed):
            rows.append(dict(r, run=f"{r['run']}-s{seed}"))
    bad = next(r for r in rows if r["run"] == "w3-s1")
    bad.update(train_accuracy=0.97, l2_train_radius_median=1e-3)
    assert interpolation_thresholds(rows) == {group_key(rows[0], "params"): 1000}
    rad = fit_law(rows, response="train_radius_median", against="params", bootstrap=300)
    assert "w3-s1" not in rad["rows_used"] and len(rad["rows_used"]) == 9
    assert {"run": "w3-s1", "why": "did not interpolate (train accuracy 0.97)"} in rad["excluded"]
    assert rad["fit"]["exponent"] == pytest.approx(0.5, abs=0.05) and rad["within_ci"] is True
    # the regime over every interpolating run, whatever its p, also leaves it out; "all" keeps it
    assert "w3-s1" not in fit_law(rows, response="lip_lower", against="params", regime="interpolating")["rows_used"]
    everything = fit_law(rows, response="train_radius_median", against="params", regime="all", bootstrap=0)
    assert "w3-s1" in everything["rows_used"] and len(everything["rows_used"]) == 14


def _dim_rows():
    """Resized digits-like runs at one width, 3 seeds each: Lipschitz grows like d_intrinsic^0.5 while
    the pixel count d grows much faster; each seed's estimate of d_intrinsic differs a little."""
    rng = np.random.default_rng(4)
    rows = []
    for d, dint in ((16, 5.0), (36, 7.0), (64, 9.0)):
        for seed in range(3):
            rows.append({"run": f"r{d}-s{seed}", "dataset": "digits", "n": 1000, "d": d, "family": "mlp",
                         "width": 64, "params": 100 * d, "train_accuracy": 1.0, "input_scale": 1.0,
                         "d_intrinsic": dint * math.exp(rng.normal(0, 0.03)),
                         "l2_lip_lower": 2.0 * math.sqrt(dint) * math.exp(rng.normal(0, 0.02))})
    return rows


def test_fit_against_the_intrinsic_dimension_beside_the_pixel_count():
    rows = _dim_rows()
    (label, members), = comparable_groups(rows, "d_intrinsic")
    assert len(members) == 9 and label == comparable_groups(rows, "d")[0][0]
    intr = fit_law(rows, response="lip_lower", against="d_intrinsic", regime="interpolating", bootstrap=300)
    pix = fit_law(rows, response="lip_lower", against="d", regime="interpolating", bootstrap=300)
    assert intr["predicted_exponent"] == pix["predicted_exponent"] == 0.5
    assert intr["fit"]["exponent"] == pytest.approx(0.5, abs=0.1)
    assert pix["fit"]["exponent"] < 0.25 and pix["within_ci"] is False  # the pixel count understates it
    # seeds of one data set share the pooled estimate: three x values, not nine
    assert len(set(intr["x"])) == 3
    assert intr["x"][0] == pytest.approx(np.mean([r["d_intrinsic"] for r in rows[:3]]))


def test_runs_of_one_data_set_never_form_an_intrinsic_dimension_group():
    # a width sweep at one pixel count: its runs' estimates differ only by noise
    rows = [dict(r, d=64, width=64) for r in _dim_rows()]
    assert comparable_groups(rows, "d_intrinsic") == []


def test_natural_and_adversarial_training_are_never_fitted_together():
    rows = [dict(r, training="natural") for r in _rows()] + \
        [dict(r, run=r["run"] + "-adv", training="adv linf 0.1") for r in _rows(seed=1)]
    groups = comparable_groups(rows, "params")
    assert [g for g, _ in groups] == ["gaussian n=1000 d=64 training=natural",
                                      "gaussian n=1000 d=64 training=adv linf 0.1"]
    assert all(len(m) == 7 for _, m in groups)
    with pytest.raises(UserError, match="2 groups"):
        fit_law(rows, response="lip_lower", against="params")


def test_an_arm_at_fixed_p_is_fitted_against_d_and_kept_out_of_the_p_fits():
    # train --width p=N: the widths follow d so that p stays at N. Grouped by width, every run would
    # be alone (no d fit); grouped by the target, the arm is one d group, recovering the exponent
    base = {"dataset": "sphere", "n": 256, "family": "mlp", "depth": 1, "labels": "random", "label_noise": None,
            "flip": None, "train_accuracy": 1.0, "params_target": 18000}
    dims = [8, 16, 32, 64, 128]
    rows = [dict(base, run=f"p{d}", d=d, width=18000 // (d + 3), params=18000 + d % 7,
                 lipschitz_lower_l2=3.0 * d ** 0.5) for d in dims]
    # a fixed-width d arm beside it stays its own group
    rows += [dict(base, run=f"w{d}", d=d, width=512, params=512 * (d + 3) + 2, params_target=None,
                  lipschitz_lower_l2=2.0 * d ** 0.25) for d in dims]
    groups = {g: [r["run"] for r in m] for g, m in comparable_groups(rows, "d")}
    assert groups == {"sphere n=256 p≈18000": [f"p{d}" for d in dims], "sphere n=256 width=512": [f"w{d}" for d in dims]}
    fits = {g: fit_law(m, response="lipschitz_lower_l2", against="d", bootstrap=0, unit_scale=False)
            for g, m in comparable_groups(rows, "d")}
    assert fits["sphere n=256 p≈18000"]["fit"]["exponent"] == pytest.approx(0.5)
    assert fits["sphere n=256 width=512"]["fit"]["exponent"] == pytest.approx(0.25)
    # against p the fixed-p runs never join the width sweep at their d
    by_p = comparable_groups(rows, "params", min_distinct=1)
    assert all(len({r["params_target"] for r in m}) == 1 for _, m in by_p)
