"""End to end: ``python -m advrobust.attack`` on a tiny trained run; bad input exits 2."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from advrobust import runs
from advrobust.errors import UserError
from advrobust.cli._common import run_main
from advrobust.cli.attack import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = ["--steps", "10", "--random-checks", "2", "--quiet", "--n", "12"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A digits MLP (width 8) fitted to 40 training points, saved as a run directory."""
    from advrobust.data import load_dataset
    from advrobust.models import build_model, make_spec

    out = tmp_path_factory.mktemp("run")
    dk = {"name": "digits", "n": 40, "n_test": 20, "seed": 0}
    ds = load_dataset(**dk)
    spec = make_spec("mlp", 8, input_shape=list(ds.x_train.shape[1:]), classes=10)
    model = build_model(spec, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(ds.x_train), ds.y_train).backward()
        opt.step()
    model.eval()
    runs.save_model(out / "model.pt", model, spec)
    runs.atomic_write_json(out / "run.json", {"spec": {"data": dk, "model": spec}})
    return out


def test_cli_writes_verified_results(run_dir, capsys):
    assert main([str(run_dir), "--attacks", "fmn,ddn", "--norm", "l2", *FAST, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    rec = json.loads((run_dir / "attack-l2-train.json").read_text())
    assert printed["results"][0]["summary"]["n"] == rec["summary"]["n"] == 12
    assert rec["attacks"] == ["fmn", "ddn"] and rec["norm"] == "l2" and rec["split"] == "train"
    for key in ("steps", "seed", "batch_size", "summary", "flags", "wall_time_s", "versions", "device", "command"):
        assert key in rec
    z = runs.load_npz(run_dir / "attack-l2-train.npz")
    for key in ("index", "label", "pred", "margin", "best_radius", "best_attack", "adv", "radius__fmn",
                "forward__fmn", "backward__fmn", "time__fmn", "radius__ddn"):
        assert key in z, key
    assert z["forward__fmn"][z["pred"] == z["label"]].min() >= 10  # 10 steps: >= 10 forward passes
    # every finite radius is reproduced from the stored adversarial point by an independent check
    run = runs.load_run(run_dir)
    x, y = run.data.x_train[:12], run.data.y_train[:12]
    adv = torch.from_numpy(z["adv"])
    with torch.no_grad():
        pred_adv = run.model(adv).argmax(1).numpy()
    finite = np.isfinite(z["best_radius"]) & (z["best_radius"] > 0)
    assert finite.sum() >= 8
    assert (pred_adv[finite] != y.numpy()[finite]).all()
    r = (adv - x).flatten(1).norm(dim=1).double().numpy()
    np.testing.assert_allclose(r[finite], z["best_radius"][finite], rtol=1e-5)
    best = np.minimum(z["radius__fmn"], z["radius__ddn"])
    np.testing.assert_array_equal(best[finite], z["best_radius"][finite])
    mis = z["pred"] != z["label"]
    assert (z["best_radius"][mis] == 0).all()


def test_cli_two_norms_test_split_and_table(run_dir, capsys):
    assert main([str(run_dir), "--attacks", "fmn", "--norm", "linf", "--norm", "l1", "--split", "test",
                 "--steps", "10", "--random-checks", "0", "--n", "6"]) == 0
    out = capsys.readouterr().out
    assert "linf on test split" in out and "l1 on test split" in out and "robust accuracy" in out
    assert (run_dir / "attack-linf-test.npz").is_file() and (run_dir / "attack-l1-test.json").is_file()


def test_cli_torchscript_and_factory(run_dir, tmp_path):
    model, _ = runs.load_model(run_dir / "model.pt")
    torch.jit.script(model).save(str(tmp_path / "m.ts"))
    assert main(["--model", str(tmp_path / "m.ts"), "--dataset", "digits", "--out", str(tmp_path),
                 "--attacks", "fmn", *FAST]) == 0
    assert (tmp_path / "attack-l2-train.npz").is_file()
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))\n")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    out2 = tmp_path / "f"
    assert main(["--model", f"{tmp_path / 'net.py'}:build", "--state-dict", str(tmp_path / "sd.pt"),
                 "--dataset", "digits", "--out", str(out2), "--attacks", "fmn", *FAST]) == 0
    a = runs.load_npz(tmp_path / "attack-l2-train.npz")
    b = runs.load_npz(out2 / "attack-l2-train.npz")
    np.testing.assert_allclose(a["best_radius"], b["best_radius"])  # same weights, same radii


def _nan_run(run_dir, tmp_path):
    model, spec = runs.load_model(run_dir / "model.pt")
    with torch.no_grad():
        model[-1].bias.fill_(math.nan)
    bad = tmp_path / "nanrun"
    runs.save_model(bad / "model.pt", model, spec)
    runs.atomic_write_json(bad / "run.json", json.loads((run_dir / "run.json").read_text()))
    return bad


@pytest.mark.parametrize("case", ["missing-run", "unknown-attack", "unsupported-norm", "nan-model",
                                  "bad-torchscript", "missing-factory", "bad-norm", "model-without-dataset",
                                  "bad-split", "bad-n", "unknown-flag", "negative-checks"])
def test_cli_bad_input_exits_2(case, run_dir, tmp_path, capsys):
    (tmp_path / "junk.ts").write_bytes(b"not a torchscript archive")
    (tmp_path / "net.py").write_text("x = 1\n")
    argv = {
        "missing-run": [str(tmp_path / "nope")],
        "unknown-attack": [str(run_dir), "--attacks", "fmn,nosuch"],
        "unsupported-norm": [str(run_dir), "--attacks", "ddn", "--norm", "linf"],
        "nan-model": [str(_nan_run(run_dir, tmp_path)) if case == "nan-model" else "", "--attacks", "fmn"],
        "bad-torchscript": ["--model", str(tmp_path / "junk.ts"), "--dataset", "digits"],
        "missing-factory": ["--model", f"{tmp_path / 'net.py'}:build", "--dataset", "digits"],
        "bad-norm": [str(run_dir), "--norm", "l3"],
        "model-without-dataset": ["--model", str(run_dir / "model.pt")],
        "bad-split": [str(run_dir), "--split", "bogus"],  # argparse's own errors: one line too, no usage dump
        "bad-n": [str(run_dir), "--n", "abc"],
        "unknown-flag": [str(run_dir), "--bogus-flag"],
        "negative-checks": [str(run_dir), "--random-checks", "-1"],
    }[case]
    assert run_main(main, [*FAST, *argv] if case == "negative-checks" else [*argv, *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_cascade_rejects_out_of_range_data():
    from advrobust.evaluate import make_attack, run_cascade

    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.rand(3, 4) * 2
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        run_cascade(model, x, torch.zeros(3, dtype=torch.long), norm=2.0,
                    attacks=[("fmn", make_attack("fmn", norm=2.0, steps=2))])


class _Quantised(nn.Module):
    """A linear model on inputs rounded to 1/4: input gradients are exactly zero (masked)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 3)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(3, 6, generator=torch.Generator().manual_seed(0)) * 3)

    def forward(self, x):
        return self.lin(torch.round(x * 4) / 4)


def test_cascade_flags():
    from advrobust.evaluate import make_attack, run_cascade, summarize

    model = _Quantised().eval()
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)

    def out_of_box(m, a, b):
        return a + 2.0  # outside [0, 1]

    def broken(m, a, b):
        raise RuntimeError("boom")

    attacks = [("fmn", make_attack("fmn", norm=2.0, steps=5)), ("oob", out_of_box), ("broken", broken)]
    res = run_cascade(model, x, y, norm=2.0, attacks=attacks, random_checks=8,
                      lower=np.full(8, 100.0))
    names = {f["name"] for f in res.flags}
    assert {"out-of-box", "attack-error", "zero-gradients", "gradient-masking-suspected"} <= names
    assert np.isinf(res.radius["oob"]).all() and np.isinf(res.radius["broken"]).all()
    s = summarize(res)
    assert s["flags"]["out-of-box"] == 8 and "robust_accuracy_certified" in s
    # a verified radius below a (wrong) certified bound is flagged: fake a bound above a true radius
    lin = nn.Sequential(nn.Linear(6, 3)).eval()
    with torch.no_grad():
        y2 = lin(x).argmax(1)
    res2 = run_cascade(lin, x, y2, norm=2.0, attacks=[("fmn", make_attack("fmn", norm=2.0, steps=30))],
                       lower=np.full(8, 50.0), random_checks=0)
    flag = [f for f in res2.flags if f["name"] == "radius-below-certified"]
    assert flag and flag[0]["count"] == int(np.isfinite(res2.best_radius).sum()) >= 4


@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_cli_boundary_attack_every_norm(run_dir, tmp_path, norm):
    """--attacks boundary alone (its own far and ray starts from the training set), and again from
    an earlier run's points (--starts): it never ends farther than the points it started from."""
    out = tmp_path / norm
    assert main([str(run_dir), "--attacks", "fmn", "--norm", norm, *FAST, "--out", str(out)]) == 0
    first = runs.load_npz(out / f"attack-{norm}-train.npz")
    assert main([str(run_dir), "--attacks", "boundary", "--norm", norm, *FAST, "--out", str(out),
                 "--starts", str(out / f"attack-{norm}-train.npz")]) == 0
    again = runs.load_npz(out / f"attack-{norm}-train.npz")
    ok = np.isfinite(first["best_radius"]) & (first["pred"] == first["label"])
    assert ok.any() and np.isfinite(again["radius__boundary"][ok]).all()
    assert (again["radius__boundary"][ok] <= first["best_radius"][ok] * (1 + 1e-6)).all()
    assert main([str(run_dir), "--attacks", "boundary", "--norm", norm, *FAST, "--out", str(tmp_path / "own")]) == 0
    own = runs.load_npz(tmp_path / "own" / f"attack-{norm}-train.npz")
    assert np.isfinite(own["radius__boundary"][own["pred"] == own["label"]]).all()


@pytest.mark.parametrize("case", ["missing", "wrong-shape", "not-adversarial", "pickle", "no-boundary"])
def test_cli_bad_starts_exit_2(case, run_dir, tmp_path, capsys):
    run = runs.load_run(run_dir)
    x = run.data.x_train[:12].numpy()
    files = {"wrong-shape": np.zeros((12, 5), np.float32), "not-adversarial": x, "no-boundary": x}
    path = tmp_path / f"{case}.npy"
    if case in files:
        np.save(path, np.clip(files[case] + (1e-3 if case == "not-adversarial" else 0.0), 0, 1))
    if case == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "before.txt").write_text("kept")
    attacks = "fmn" if case == "no-boundary" else "boundary"
    assert run_main(main, [str(run_dir), "--attacks", attacks, "--starts", str(path), *FAST,
                           "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not list(tmp_path.glob("attack-*"))  # nothing written on a bad start


def test_bounds_only_adds_bounds_and_keeps_the_attack_results(tmp_path):
    """The fill command for missing bounds: same points, radii and record untouched, bounds below the radii."""
    import json

    import numpy as np

    from advrobust.cli import attack
    from advrobust.runs import load_npz
    from advrobust.train import TrainConfig, train_run

    out = tmp_path / "run"
    train_run(out, data_kwargs={"name": "digits", "n": 40, "n_test": 20, "seed": 0},
              model_spec={"family": "mlp", "width": 8, "depth": 1},
              config=TrainConfig(epochs=50, seed=0, device="cpu"), command="pytest", progress=False)
    base = [str(out), "--split", "train", "--norm", "l2", "--quiet", "--device", "cpu"]
    assert attack.main(base + ["--attacks", "fmn", "--n", "12", "--steps", "15", "--random-checks", "0"]) == 0
    before = load_npz(out / "attack-l2-train.npz")
    rec = json.loads((out / "attack-l2-train.json").read_text())
    assert attack.main(base + ["--certify", "crown", "--bounds-only"]) == 0
    after = load_npz(out / "attack-l2-train.npz")
    rec2 = json.loads((out / "attack-l2-train.json").read_text())
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)
    lo, best = after["lower__crown"], after["best_radius"]
    assert lo.shape == best.shape and np.all(lo <= best + 1e-9) and np.any(lo > 0)
    assert (rec2["attacks"], rec2["n"], rec2["steps"], rec2["command"]) == (rec["attacks"], 12, 15, rec["command"])
    assert "crown" in rec2["summary"]["certified"] and rec2["bounds_commands"]
    assert attack.main(base + ["--certify", "crown-ibp", "--bounds-only"]) == 0  # offered as docs/certify.md says
    ci = load_npz(out / "attack-l2-train.npz")["lower__crown-ibp"]
    assert np.all(ci <= best + 1e-9) and np.all(ci >= 0)
    assert run_main(attack.main, base + ["--bounds-only"]) == 2
    assert run_main(attack.main, [str(out), "--split", "test", "--certify", "ibp", "--bounds-only", "--quiet"]) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"norms": ("l3",)}, "norm"),
    ({"split": "val"}, "split"),
    ({"steps": 0}, "--steps"),
    ({"n": 0}, "--n"),
    ({"batch_size": 0}, "--batch-size"),
    ({"random_checks": -1}, "--random-checks"),
    ({"certify": "magic"}, "--certify"),
    ({"eps": (0.1, -1.0)}, "--eps"),
    ({"attacks": ()}, "--attacks is empty"),
    ({"attacks": ("fmn", "nosuch")}, "nosuch"),
    ({"attacks": ("ddn",), "norms": ("linf",)}, "ddn"),
    ({"starts": "s.npy", "attacks": ("fmn",)}, "boundary"),
])
def test_attack_config_checks_every_field(kwargs, match):
    from advrobust.attack import AttackConfig

    with pytest.raises(UserError, match=match):
        AttackConfig(**kwargs)


def test_attack_config_round_trips_and_its_command_line_parses_back():
    """to_dict -> JSON -> from_dict gives the same config; the command line recorded for a library
    call, parsed by the command's own parser, gives the same config too."""
    import json

    from advrobust.attack import AttackConfig, command_line
    from advrobust.cli.attack import build_parser, config_from_args

    cfg = AttackConfig(norms=["L2", "linf", "l2"], split="test", n=7, attacks=["fmn", "pgd-min"], steps=9,
                       batch_size=5, seed=3, eps=[0.5, 1], certify="crown", exact=True, random_checks=0)
    assert cfg.norms == ("l2", "linf") and cfg.eps == (0.5, 1.0) and cfg.attacks == ("fmn", "pgd-min")
    assert AttackConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(UserError, match="unknown attack setting"):
        AttackConfig.from_dict({"norm": "l2"})
    for config in (cfg, AttackConfig()):
        argv = command_line("runs/x", config)
        assert argv[:4] == ["python", "-m", "advrobust.attack", "runs/x"]
        assert config_from_args(build_parser().parse_args(argv[3:])) == config
