"""Intrinsic-dimension estimators on point clouds of known dimension."""
from __future__ import annotations

import numpy as np
import pytest

from advrobust.intrinsic import estimate, levina_bickel, two_nn


def _subspace(k: int, ambient: int, n: int, seed: int) -> np.ndarray:
    """n Gaussian points on a random k-dimensional linear subspace of R^ambient, shifted off 0."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, k)))  # (ambient, k), orthonormal columns
    return rng.standard_normal((n, k)) @ basis.T + 0.5


def _sphere(k: int, ambient: int, n: int, seed: int) -> np.ndarray:
    """n points uniform on the k-dimensional unit sphere S^k (in R^(k+1)), rotated into R^ambient."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k + 1))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, k + 1)))
    return z @ basis.T


@pytest.mark.parametrize("estimator", [levina_bickel, two_nn])
@pytest.mark.parametrize("k, ambient, shape", [(2, 20, "subspace"), (5, 64, "subspace"), (5, 64, "sphere"),
                                                (6, 784, "sphere")])
def test_estimate_within_15_percent_of_the_known_dimension(estimator, k, ambient, shape):
    x = (_subspace if shape == "subspace" else _sphere)(k, ambient, 2000, seed=k + ambient)
    got = estimator(x)
    assert got == pytest.approx(k, rel=0.15), f"{estimator.__name__} on a {k}-dim {shape} in R^{ambient}: {got:.2f}"


def test_two_nn_tracks_a_ten_dimensional_sphere_that_mle_underestimates():
    # Levina-Bickel is known to fall short as the dimension grows (k neighbours reach the curvature);
    # two-NN uses only the two nearest neighbours and stays within 15% here
    x = _sphere(10, 100, 2000, seed=3)
    assert two_nn(x) == pytest.approx(10, rel=0.15)
    assert levina_bickel(x) < two_nn(x)


def test_estimates_ignore_the_ambient_dimension_scale_and_duplicates():
    x = _subspace(4, 16, 1500, seed=1)
    rng = np.random.default_rng(2)
    rot, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    moved = 0.01 * x @ rot + 3.0  # a rigid motion and a change of scale: distance ratios unchanged
    assert levina_bickel(moved) == pytest.approx(levina_bickel(x), rel=1e-6)
    assert two_nn(moved) == pytest.approx(two_nn(x), rel=1e-6)
    padded = np.hstack([x, np.zeros((x.shape[0], 100))])  # the same points in R^116
    assert two_nn(padded) == pytest.approx(two_nn(x), rel=1e-9)
    doubled = np.vstack([x, x[:300]])  # exact duplicates would make log(r2 / r1) infinite
    assert np.isfinite(two_nn(doubled)) and two_nn(doubled) == pytest.approx(two_nn(x), rel=1e-9)


def test_lower_dimensional_data_gets_a_lower_estimate():
    low = estimate(_subspace(3, 50, 1500, seed=5))
    high = estimate(_subspace(12, 50, 1500, seed=5))
    assert low["mle"] < high["mle"] and low["two_nn"] < high["two_nn"]
    assert low["ambient"] == 50 and low["points"] == 1500 and low["k"] == 20


def test_images_are_flattened_and_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    x = _subspace(3, 36, 800, seed=7)
    img = torch.as_tensor(x.reshape(800, 1, 6, 6), dtype=torch.float64)
    assert two_nn(img) == pytest.approx(two_nn(x), rel=1e-9)


def test_subsample_is_deterministic_and_bounded():
    x = _subspace(3, 10, 3000, seed=9)
    a = estimate(x, max_points=1000, seed=4)
    assert a == estimate(x, max_points=1000, seed=4) and a["points"] == 1000
    assert a["mle"] == pytest.approx(3, rel=0.15)


@pytest.mark.parametrize("call, match", [
    (lambda: levina_bickel(np.random.rand(50, 4), k=2), "k must be"),
    (lambda: levina_bickel(np.random.rand(10, 4), k=20), "at least k"),
    (lambda: two_nn(np.ones((40, 3))), "at least 3 distinct"),
    (lambda: two_nn(np.random.rand(40, 3), discard=1.0), "discard"),
    (lambda: two_nn(np.array([[0.0, np.nan]] * 5)), "NaN"),
    (lambda: two_nn(np.arange(5.0)), r"\(N, \.\.\.\)"),
])
def test_bad_input_is_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cli_fills_the_column_compare_misses_for_an_older_run(tmp_path, capsys):
    import json

    from advrobust.cli._common import run_main
    from advrobust.compare import collect_rows
    from advrobust.cli.intrinsic import main
    from advrobust.train import TrainConfig, train_run

    run = train_run(tmp_path / "r", data_kwargs={"name": "digits", "n": 120, "n_test": 20},
                    model_spec={"family": "mlp", "width": 4},
                    config=TrainConfig(device="cpu", epochs=1, mode="budget"), command="test", progress=False)
    meta = json.loads((run / "run.json").read_text())
    recorded = meta.pop("intrinsic_dim")
    (run / "run.json").write_text(json.dumps(meta))  # as written before run.json held the estimate
    row, = collect_rows([run])
    assert row["d_intrinsic"] is None and row["missing"]["d_intrinsic"] == f"python -m advrobust.intrinsic {run}"
    assert run_main(main, [str(run)]) == 0
    assert "two-NN" in capsys.readouterr().out
    row, = collect_rows([run])
    assert row["d_intrinsic"] == pytest.approx(recorded["two_nn"]) and "d_intrinsic" not in row["missing"]
    assert run_main(main, [str(run), "--k", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --k must be an integer >= 3, got 2"
