"""Training to interpolation, min-width search, run directories and the train command."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from advrobust import runs
from advrobust.errors import UserError
from advrobust.cli._common import run_main
from advrobust.data import load_dataset
from advrobust.models import build_model, make_spec, param_count
from advrobust.cli.train import main
from advrobust.train import TrainConfig, find_min_width, train, train_run

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    return load_dataset("digits", n=120, n_test=60, seed=1)


def _mlp(data, width, *, seed=0, depth=None):
    return build_model(make_spec("mlp", width, input_shape=data.input_shape, classes=data.classes, depth=depth),
                       seed=seed)


@torch.no_grad()
def _fit(model, data, loss="ce", targets="onehot"):
    """Independent recomputation of the training loss and accuracy."""
    logits = model(data.x_train)
    if loss == "ce":
        value = F.cross_entropy(logits, data.y_train)
    else:
        t = F.one_hot(data.y_train, data.classes).float()
        value = F.mse_loss(logits, 2 * t - 1 if targets == "pm1" else t)
    return float(value), float((logits.argmax(1) == data.y_train).float().mean())


def _cpu(**kw):
    return TrainConfig(device="cpu", **kw)


# --------------------------------------------------------------------------- train()
def test_default_command_memorises_digits(tmp_path):
    out = tmp_path / "d64"
    assert main(["--dataset", "digits", "--model", "mlp", "--width", "64", "--out", str(out), "--quiet"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["params"] == 4810
    assert meta["train_accuracy"] == 1.0 and meta["interpolated"] and meta["stopped"] == "interpolated"
    assert meta["train_loss"] < meta["spec"]["train"]["tol"]
    assert meta["epochs"] < 600  # ~170 full-batch Adam epochs; the cap is 3000
    assert meta["test_accuracy"] > 0.9
    run = runs.load_run(out)
    loss, acc = _fit(run.model, run.data)
    assert acc == 1.0 and loss == pytest.approx(meta["train_loss"], rel=1e-4)


def test_full_batch_stops_at_first_interpolating_epoch(small):
    model = _mlp(small, 32)
    rec = train(model, small, _cpu(tol=0.02), progress=False)
    assert rec["interpolated"] and rec["stopped"] == "interpolated"
    loss, acc = _fit(model, small)
    assert acc == 1.0 and loss < 0.02 and loss == pytest.approx(rec["train_loss"], rel=1e-4)
    hist = rec["loss_history"]
    assert hist["epoch"][-1] == rec["epochs"] and hist["loss"][-1] == pytest.approx(loss, rel=1e-4)
    # every earlier epoch was above tol or not yet fitting: the last history value is the first below tol
    # (not checked for accuracy here), and the history is long enough to be subsampled sensibly
    assert hist["loss"][0] > 1.0  # ~ln(10) at initialisation
    assert rec["steps"] == rec["epochs"]


def test_mse_pm1_targets(small):
    model = _mlp(small, 32)
    rec = train(model, small, _cpu(loss="mse", targets="pm1", tol=0.05, lr=0.03), progress=False)
    assert rec["interpolated"]
    loss_pm1, acc = _fit(model, small, "mse", "pm1")
    loss_onehot, _ = _fit(model, small, "mse", "onehot")
    assert acc == 1.0 and loss_pm1 < 0.05
    assert rec["train_loss"] == pytest.approx(loss_pm1, rel=1e-4)
    assert abs(loss_onehot - loss_pm1) > 0.05  # the record measured the +-1 targets, not one-hot ones
    # +-1 targets: logits near +1 for the label and -1 elsewhere
    logits = model(small.x_train).detach()
    assert logits.gather(1, small.y_train[:, None]).mean() > 0.5 and logits.mean() < -0.5


def test_minibatch_interpolation_is_confirmed(small):
    model = _mlp(small, 32)
    rec = train(model, small, _cpu(batch_size=32, tol=0.05), progress=False)
    assert rec["interpolated"] and rec["stopped"] == "interpolated"
    loss, acc = _fit(model, small)
    assert acc == 1.0 and loss < 0.05 and loss == pytest.approx(rec["train_loss"], rel=1e-4)
    assert rec["steps"] == rec["epochs"] * math.ceil(120 / 32)


def test_budget_mode_runs_exactly_the_budget(small):
    rec = train(_mlp(small, 8), small, _cpu(mode="budget", epochs=7, batch_size=50, optimizer="sgd", lr=0.1),
                progress=False)
    assert rec["epochs"] == 7 and rec["steps"] == 7 * 3 and rec["stopped"] == "budget"
    assert len(rec["loss_history"]["loss"]) == 7
    assert all(math.isfinite(v) for v in rec["loss_history"]["loss"])


def test_same_seed_same_weights_other_seed_other_weights(small):
    def run(seed):
        model = _mlp(small, 16, seed=seed)
        train(model, small, _cpu(mode="budget", epochs=5, batch_size=40, seed=seed), progress=False)
        return model.state_dict()

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_minibatch_order_depends_on_seed_not_only_init(small):
    # same initial weights, different training seeds: shuffling must differ
    results = []
    for seed in (0, 1):
        model = _mlp(small, 16, seed=0)
        train(model, small, _cpu(mode="budget", epochs=2, batch_size=40, seed=seed), progress=False)
        results.append(model.state_dict())
    assert not all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_divergence_is_a_user_error(small):
    with pytest.raises(UserError, match="diverged.*--lr"):
        train(_mlp(small, 16), small, _cpu(optimizer="sgd", lr=1e6, loss="mse", mode="budget", epochs=30),
              progress=False)


def test_adversarial_training_uses_pgd_examples(small):
    model = _mlp(small, 32)
    rec = train(model, small, _cpu(adv_norm="linf", adv_eps=0.1, adv_steps=3, tol=0.05, epochs=400), progress=False)
    clean_loss, acc = _fit(model, small)
    assert rec["interpolated"] and acc == 1.0
    # the loss history holds the loss on PGD examples, far above the clean loss of the same weights
    assert rec["loss_history"]["loss"][-1] > 3 * clean_loss


@pytest.mark.parametrize("kwargs,match", [
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"targets": "pm1"}, "square loss"),
    ({"lr": 0.0}, "learning rate"),
    ({"lr": float("nan")}, "learning rate"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch size"),
    ({"mode": "forever"}, "mode"),
    ({"adv_eps": 0.1}, "adv_norm"),
    ({"adv_norm": "l2"}, "adv-eps"),
    ({"adv_norm": "l7", "adv_eps": 0.1}, "norm"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(UserError, match=match):
        TrainConfig(**kwargs).validated()


def test_config_dict_round_trip():
    cfg = TrainConfig(lr=0.5, batch_size=7, adv_norm="l2", adv_eps=0.3)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(UserError, match="unknown training setting"):
        TrainConfig.from_dict({"learning_rate": 1.0})


# --------------------------------------------------------------------------- min width
def test_min_width_search_property():
    data = load_dataset("digits", n=100, n_test=20, seed=2)
    cfg = _cpu(epochs=200)
    width, rec = find_min_width("mlp", data, cfg, max_width=64)
    tried = {e["width"]: e for e in rec["tried"]}
    assert rec["width"] == width and tried[width]["interpolated"]
    assert width > 1, "grid too easy for this test to check anything"
    assert tried[width - 1]["interpolated"] is False and rec["largest_failure"] == width - 1
    # the geometric phase stopped at the first success: every earlier grid width failed
    first = min(w for w in rec["grid"] if tried.get(w, {}).get("interpolated"))
    assert all(not tried[w]["interpolated"] for w in rec["grid"] if w < first)
    assert all(e["params"] == param_count(make_spec("mlp", e["width"], input_shape=[1, 8, 8], classes=10))
               for e in rec["tried"])
    # retraining the returned width from the same seed reproduces the success
    model = _mlp(data, width, seed=cfg.seed)
    assert train(model, data, cfg, progress=False)["interpolated"]


def test_plateau_rule_waits_for_a_whole_quiet_window():
    from advrobust.train import _plateaued

    flat = [5] * 8
    assert _plateaued(flat, [1.0] * 8, 4)
    assert not _plateaued(flat[:7], [1.0] * 7, 4)  # fewer than two windows seen
    assert not _plateaued([5, 5, 5, 5, 5, 5, 5, 4], [1.0] * 8, 4)  # a new fewest-misfits
    assert not _plateaued(flat, [1.0, 1, 1, 1, 1, 0.9, 0.9, 0.9], 4)  # the loss still falls (> 5%)


def test_search_gives_up_on_stalled_widths_and_finds_the_same_width():
    # random labels on the sphere: widths far below the threshold stall early; abandoning them
    # saves most of their epochs and must not move the width found
    data = load_dataset("sphere", dim=8, n=64, n_test=8, seed=1)
    cfg = _cpu(epochs=800, lr=0.01)
    w_cap, rec_cap = find_min_width("mlp", data, cfg, max_width=64, give_up=None)
    w, rec = find_min_width("mlp", data, cfg, max_width=64)
    assert w == w_cap and rec["give_up"] == 200 and rec_cap["give_up"] is None
    stalled = [e for e in rec["tried"] if e["stopped"] == "plateau"]
    assert stalled and all(e["epochs"] < 800 and not e["interpolated"] for e in stalled)
    assert sum(e["epochs"] for e in rec["tried"]) < 0.9 * sum(e["epochs"] for e in rec_cap["tried"])
    assert all(e["stopped"] != "plateau" for e in rec_cap["tried"])


def test_min_width_search_failure_is_a_user_error(small):
    with pytest.raises(UserError, match="no mlp width up to 2"):
        find_min_width("mlp", small, _cpu(epochs=3), max_width=2)
    with pytest.raises(UserError, match="linear"):
        find_min_width("linear", small, _cpu(epochs=3))


# --------------------------------------------------------------------------- run directories
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    train_run(out, data_kwargs={"name": "digits", "n": 150, "n_test": 50, "seed": 3},
              model_spec={"family": "mlp", "width": 12, "depth": 2}, config=_cpu(seed=3), command="test",
              progress=False)
    return out


def test_run_json_contents(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    for key in ("spec", "seed", "params", "n", "d", "classes", "train_accuracy", "test_accuracy", "train_loss",
                "interpolated", "epochs", "wall_time_s", "versions", "device", "command"):
        assert key in meta, key
    assert set(meta["spec"]) == {"data", "model", "train"}
    assert meta["n"] == 150 and meta["d"] == 64 and meta["classes"] == 10 and meta["seed"] == 3
    assert meta["params"] == param_count(meta["spec"]["model"]) == 64 * 12 + 12 + 12 * 12 + 12 + 12 * 10 + 10
    assert meta["command"] == "test" and meta["versions"]["torch"] == torch.__version__
    assert TrainConfig.from_dict(meta["spec"]["train"]).seed == 3
    assert not list(run_dir.parent.glob(".*"))  # no temporary folders left behind


def test_run_json_records_the_training_inputs_intrinsic_dimension(run_dir):
    from advrobust.compare import collect_rows
    from advrobust.data import load_dataset
    from advrobust.intrinsic import estimate

    meta = json.loads((run_dir / "run.json").read_text())
    rec = meta["intrinsic_dim"]
    x = load_dataset(**meta["spec"]["data"]).x_train
    want = estimate(x)
    assert rec["mle"] == pytest.approx(want["mle"]) and rec["two_nn"] == pytest.approx(want["two_nn"])
    assert rec["known"] is None and rec["ambient"] == 64 and rec["points"] <= 150
    # 150 digits spread in far fewer than their 64 pixels
    assert 3 < rec["mle"] < 20 and 3 < rec["two_nn"] < 20
    row, = collect_rows([run_dir])
    assert row["d_intrinsic"] == pytest.approx(rec["two_nn"]) and row["d_intrinsic_mle"] == pytest.approx(rec["mle"])
    assert row["interpolated"] is (meta["train_accuracy"] == 1.0)


def test_synthetic_runs_record_the_exact_dimension(tmp_path):
    out = train_run(tmp_path / "s", data_kwargs={"name": "sphere", "dim": 12, "n": 64, "n_test": 16},
                    model_spec={"family": "mlp", "width": 8}, config=_cpu(epochs=2, mode="budget"), command="test",
                    progress=False)
    from advrobust.compare import collect_rows

    meta = json.loads((out / "run.json").read_text())
    assert meta["intrinsic_dim"]["known"] == 11  # the sphere S^11 in R^12
    row, = collect_rows([out])
    assert row["d"] == 12 and row["d_intrinsic"] == row["d_intrinsic_mle"] == 11


def test_spec_round_trip_and_load_run(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    run = runs.load_run(run_dir)
    assert run.meta == meta and run.spec == meta["spec"]
    state = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    rebuilt = build_model(meta["spec"]["model"])
    rebuilt.load_state_dict(state)
    data = load_dataset(**meta["spec"]["data"])
    assert torch.equal(run.data.x_train, data.x_train) and torch.equal(run.data.y_train, data.y_train)
    x = torch.cat([data.x_train, data.x_test])
    assert torch.equal(rebuilt(x), run.model(x))
    acc = float((run.model(data.x_train).argmax(1) == data.y_train).float().mean())
    assert acc == meta["train_accuracy"] == 1.0
    test_acc = float((run.model(data.x_test).argmax(1) == data.y_test).float().mean())
    assert test_acc == pytest.approx(meta["test_accuracy"])


def test_existing_run_dir_resume_and_overwrite(tmp_path):
    out = tmp_path / "r"
    kwargs = dict(data_kwargs={"name": "digits", "n": 60, "n_test": 20}, model_spec={"family": "linear"},
                  progress=False)
    train_run(out, config=_cpu(mode="budget", epochs=5), **kwargs)
    before = (out / "run.json").read_bytes()
    with pytest.raises(UserError, match="already exists.*--resume.*--overwrite"):
        train_run(out, config=_cpu(mode="budget", epochs=5), **kwargs)
    # identical request: reused untouched (the device is not part of the request)
    assert train_run(out, config=TrainConfig(mode="budget", epochs=5, device="auto"), resume=True, **kwargs) == out
    assert (out / "run.json").read_bytes() == before
    with pytest.raises(UserError, match="different settings.*train.epochs"):
        train_run(out, config=_cpu(mode="budget", epochs=6), resume=True, **kwargs)
    (out / "attack-l2-train.json").write_text("{}")  # a stale result of the old model
    train_run(out, config=_cpu(mode="budget", epochs=6), overwrite=True, **kwargs)
    assert json.loads((out / "run.json").read_text())["epochs"] == 6
    assert not (out / "attack-l2-train.json").exists()
    with pytest.raises(UserError, match="exclude each other"):
        train_run(out, config=_cpu(mode="budget", epochs=6), overwrite=True, resume=True, **kwargs)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="not a run directory"):
        train_run(other, config=_cpu(mode="budget", epochs=5), overwrite=True, **kwargs)
    assert (other / "todo.txt").read_text() == "mine"


# --------------------------------------------------------------------------- the command's errors
def test_width_p_holds_the_parameter_count_across_dimensions(tmp_path):
    # an arm at fixed p: the width follows d, run.json records the target, compare carries it
    from advrobust.compare import collect_rows

    outs = [train_run(tmp_path / f"d{d}", data_kwargs={"name": "sphere", "dim": d, "n": 32, "n_test": 8},
                      model_spec={"family": "mlp", "width": "p=3000"}, config=_cpu(epochs=1, mode="budget"),
                      command="test", progress=False) for d in (8, 64)]
    metas = [json.loads((o / "run.json").read_text()) for o in outs]
    assert [m["spec"]["model"]["width"] for m in metas] == [273, 45]  # 273 * 11 + 2 = 3005, 45 * 67 + 2 = 3017
    assert all(m["params_target"] == 3000 and abs(m["params"] - 3000) < 20 for m in metas)
    assert [r["params_target"] for r in collect_rows(outs)] == [3000, 3000]


def _broken_run(tmp_path, run_dir, content):
    import shutil

    out = tmp_path / "broken"
    shutil.copytree(run_dir, out)
    if isinstance(content, bytes):
        (out / "model.pt").write_bytes(content)
    else:
        torch.save(content, out / "model.pt")
    return out


def _resume_argv(out):
    # the request recorded by the run_dir fixture, as command-line flags
    return ["--n", "150", "--n-test", "50", "--seed", "3", "--model", "mlp", "--width", "12", "--depth", "2",
            "--device", "cpu", "--out", str(out), "--resume", "--quiet"]


@pytest.mark.parametrize("case", ["dataset", "model", "width0", "width_text", "data_dir", "exists", "corrupt",
                                  "foreign", "both_flags", "adv_eps_only", "bad_device", "p_text", "p_too_small"])
def test_cli_user_errors_exit_2_with_one_line(case, tmp_path, run_dir, capsys):
    argv = {
        "dataset": ["--dataset", "imagenet", "--width", "8", "--out", str(tmp_path / "a")],
        "model": ["--model", "transformer", "--out", str(tmp_path / "a")],
        "width0": ["--width", "0", "--out", str(tmp_path / "a")],
        "width_text": ["--width", "wide", "--out", str(tmp_path / "a")],
        "data_dir": ["--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--width", "8",
                     "--out", str(tmp_path / "a")],
        "exists": ["--width", "8", "--out", str(run_dir)],
        "corrupt": _resume_argv(_broken_run(tmp_path, run_dir, b"not a checkpoint")) if case == "corrupt" else None,
        "foreign": _resume_argv(_broken_run(tmp_path, run_dir, torch.zeros(3))) if case == "foreign" else None,
        "both_flags": ["--width", "8", "--out", str(run_dir), "--resume", "--overwrite"],
        "adv_eps_only": ["--width", "8", "--adv-eps", "0.1", "--out", str(tmp_path / "a")],
        "bad_device": ["--width", "8", "--device", "tpu", "--out", str(tmp_path / "a")],
        "p_text": ["--width", "p=many", "--out", str(tmp_path / "a")],
        "p_too_small": ["--width", "p=5", "--out", str(tmp_path / "a")],
    }[case]
    code = run_main(main, argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    assert not (tmp_path / "a").exists()


def test_cli_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "advrobust.train", "--width", "0", "--out", str(tmp_path / "a")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: mlp width must be a positive integer, got 0"]


def test_cli_json_and_min_width(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["--n", "60", "--n-test", "20", "--seed", "2", "--width", "min", "--max-width", "16", "--epochs", "150",
            "--device", "cpu", "--out", str(out), "--quiet", "--json"]
    code = main(argv)
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    meta = json.loads((out / "run.json").read_text())
    search = meta["min_width_search"]
    assert printed["min_width"] == search["width"] == meta["spec"]["model"]["width"]
    assert printed["interpolated"] and meta["interpolated"]
    assert meta["request"]["model"]["width"] == "min"
    # same command with --resume reuses the run (the request says width=min, not the width found)
    code = main(argv + ["--resume"])
    assert code == 0 and json.loads(capsys.readouterr().out)["reused"] is True


def test_command_line_recorded_for_a_library_call_makes_the_same_request():
    """train_run called from Python (the sweep) records an equivalent python -m advrobust.train
    command: parsed by the command's own parser it asks for the same run (run.json's request)."""
    import shlex

    from advrobust.cli.train import build_parser
    from advrobust.train import command_line, run_request

    data = {"name": "sphere", "dim": 12, "n": 64, "n_test": 16, "label_noise": 0.1, "seed": 4}
    model = {"family": "mlp", "width": "p=2000", "depth": 2}
    cfg = TrainConfig(lr=0.003, epochs=77, mode="budget", loss="mse", targets="pm1", seed=4, device="cpu")
    a = build_parser().parse_args(shlex.split(command_line("runs/x y", cfg, data_kwargs=data, model_spec=model))[3:])
    parsed_data = {"name": a.dataset, "n": a.n, "n_test": a.n_test, "resize": a.resize, "label_noise": a.label_noise,
                   "seed": a.seed, "data_dir": a.data_dir, "dim": a.dim, "classes": a.classes, "labels": a.labels,
                   "flip": a.flip}
    parsed_cfg = TrainConfig(optimizer=a.optimizer, lr=a.lr, momentum=a.momentum, batch_size=a.batch_size, loss=a.loss,
                             targets=a.targets, mode=a.mode, epochs=a.epochs, tol=a.tol, seed=a.seed, device=a.device,
                             adv_norm=a.adv_norm, adv_eps=a.adv_eps, adv_steps=a.adv_steps)
    parsed_model = {"family": a.model, "width": a.width, "depth": a.depth}
    assert a.out == "runs/x y" and parsed_cfg == cfg
    assert run_request(parsed_cfg, data_kwargs=parsed_data, model_spec=parsed_model) == \
        run_request(cfg, data_kwargs=data, model_spec=model)
