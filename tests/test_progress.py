"""Every long stage names itself in a progress bar on stderr; --quiet silences it."""
from __future__ import annotations

import pytest

from advrobust import _progress


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    from advrobust.cli import attack
    from advrobust.train import TrainConfig, train_run

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("progress") / "run"
    train_run(out, data_kwargs={"name": "digits", "n": 40, "n_test": 20, "seed": 0},
              model_spec={"family": "mlp", "width": 8, "depth": 1},
              config=TrainConfig(epochs=300, seed=0, device="cpu"), command="pytest", progress=False)
    assert attack.main([str(out), "--attacks", "fmn", "--n", "4", "--steps", "10", "--quiet", "--device", "cpu",
                        "--random-checks", "0"]) == 0
    return out


@pytest.fixture
def no_delay(monkeypatch):
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)  # show every bar, however short the stage


def test_certify_exact_lipschitz_and_report_name_their_stage(run_dir, no_delay, capsys, tmp_path):
    from advrobust.cli import attack, lipschitz, report

    common = [str(run_dir), "--attacks", "fmn", "--n", "3", "--steps", "10", "--device", "cpu",
              "--random-checks", "0", "--json"]
    assert attack.main(common + ["--certify", "crown", "--exact", "--exact-time-limit", "5"]) == 0
    err = capsys.readouterr().err
    assert "certify crown" in err and "exact (MILP)" in err and "optimal" in err
    assert lipschitz.main([str(run_dir), "--ascent-steps", "2", "--segments", "4", "--no-write"]) == 0
    err = capsys.readouterr().err
    assert "lipschitz: segments" in err or "lipschitz: upper bound" in err
    assert report.main([str(run_dir), "--out", str(tmp_path / "r"), "--samples", "0", "--bootstrap", "5"]) == 0
    assert "report: " in capsys.readouterr().err


def test_quiet_silences_every_bar(run_dir, no_delay, capsys, tmp_path):
    from advrobust.cli import attack, lipschitz, report

    assert attack.main([str(run_dir), "--attacks", "fmn", "--n", "3", "--steps", "10", "--device", "cpu",
                        "--random-checks", "0", "--certify", "ibp", "--quiet"]) == 0
    assert lipschitz.main([str(run_dir), "--ascent-steps", "2", "--segments", "4", "--no-write", "--quiet"]) == 0
    assert report.main([str(run_dir), "--out", str(tmp_path / "r"), "--samples", "0", "--bootstrap", "5",
                        "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_bars_wait_for_long_stages(capsys):
    """With the default delay a stage shorter than DELAY_S prints nothing."""
    with _progress.bar(range(3), desc="short stage") as b:
        for _ in b:
            pass
    assert "short stage" not in capsys.readouterr().err
