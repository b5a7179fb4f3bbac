"""The sweep: spec validation, grid expansion, resume after kill -9, and the Dask path."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from advrobust.errors import UserError

from advrobust.cli._common import run_main
from advrobust.cli.sweep import main
from advrobust.sweep import expand, load_spec, run_sweep

TINY = """
name = "tiny"
[train]
epochs = 300
[attack]
norms = ["l2"]
splits = ["train"]
n = 12
steps = 20
attacks = ["ddn", "fmn"]
[lipschitz]
enabled = true
[report]
enabled = false
[[grid]]
dataset = "digits"
n = 100
model = "mlp"
width = [4, 8, 16]
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, needle",
    [
        (TINY.replace('epochs = 300', 'epocs = 300'), "'epocs'"),
        (TINY.replace('epochs = 300', 'epochs = "many"'), "'epochs'"),
        (TINY.replace('width = [4, 8, 16]', 'width = []'), "'width'"),
        (TINY.replace('width = [4, 8, 16]', 'width = ["p=lots"]'), "p=N"),
        (TINY.replace('dataset = "digits"', 'dataset = "digitz"'), "digitz"),
        (TINY.replace('model = "mlp"', 'model = "transformer"'), "transformer"),
        (TINY.split("[[grid]]")[0], "empty grid"),
        (TINY.replace('norms = ["l2"]', 'norms = ["l3"]'), "'norms'"),
        (TINY + "\nbogus = 1\n", "'bogus'"),
        ("name = [", "not valid TOML"),
    ],
)
def test_bad_spec_is_one_line_error_naming_key_and_file(tmp_path, capsys, text, needle):
    spec = write(tmp_path, text)
    code = run_main(main, [str(spec), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert needle in err and str(spec) in err


def test_missing_spec_file(tmp_path, capsys):
    assert run_main(main, [str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_expand_is_a_deterministic_product(tmp_path):
    text = TINY.replace("width = [4, 8, 16]", 'width = ["min", 8]\nlabel_noise = [0.0, 0.1]\nseed = [0, 1]')
    spec = load_spec(write(tmp_path, text))
    tasks = expand(spec, tmp_path / "o")
    assert len(tasks) == 2 * 2 * 2
    assert len({t.name for t in tasks}) == len(tasks)
    assert [t.name for t in tasks] == [t.name for t in expand(spec, tmp_path / "o")]
    t = next(t for t in tasks if t.params == {"dataset": "digits", "n": 100, "model": "mlp", "width": "min",
                                              "label_noise": 0.1, "seed": 1})
    assert t.model == {"family": "mlp", "width": "min", "depth": None}
    assert t.data == {"name": "digits", "seed": 1, "n": 100, "label_noise": 0.1}
    assert (t.train.epochs, t.train.seed) == (300, 1)
    assert t.attack_outputs == ("attack-l2-train.json",)
    a, = t.attacks
    assert (a.norms, a.split, a.n, a.steps, a.attacks, a.seed) == (("l2",), "train", 12, 20, ("ddn", "fmn"), 1)


def _radii(out: Path) -> dict[str, np.ndarray]:
    res = {}
    for f in sorted(out.glob("runs/*/attack-l2-train.npz")):
        with np.load(f) as z:
            res[f.parent.name] = z["best_radius"].copy()
    return res


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted sequential sweep of the tiny spec."""
    tmp = tmp_path_factory.mktemp("ref")
    spec = write(tmp, TINY)
    rec = run_sweep(spec, out=tmp / "out", threads=1, progress=False)
    return spec, tmp / "out", rec


def test_sequential_sweep_writes_everything(reference):
    spec, out, rec = reference
    assert rec["finished"] and len(rec["completed"]) == 3
    for name in rec["runs"]:
        run = out / "runs" / name
        for f in ("run.json", "model.pt", "attack-l2-train.npz", "attack-l2-train.json", "lipschitz.json"):
            assert (run / f).is_file(), f"{name}/{f}"
    assert (out / "compare.md").read_text().count("digits") >= 3
    # rerunning the same command skips everything
    again = run_sweep(spec, out=out, threads=1, progress=False)
    assert all(set(st["skipped"]) >= {"train", "attack-l2-train.json", "lipschitz.json"} for st in again["status"].values())


def test_resume_after_kill_9_gives_identical_results(reference, tmp_path):
    spec, ref_out, _ = reference
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "advrobust.sweep", str(spec), "--out", str(out), "--threads", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    try:
        # kill as soon as one run is complete and the second is under way
        while time.time() < deadline:
            rec = out / "sweep.json"
            if rec.is_file() and len(json.loads(rec.read_text())["completed"]) >= 1:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed = json.loads((out / "sweep.json").read_text())
    assert not killed["finished"], "the sweep finished before it could be killed: make the spec bigger"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    final = json.loads((out / "sweep.json").read_text())
    assert final["finished"] and sorted(final["completed"]) == sorted(final["runs"])
    assert len(list(out.glob("runs/*/run.json"))) == 3  # nothing lost, nothing duplicated
    got, want = _radii(out), _radii(ref_out)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_dask_local_cluster_agrees_with_sequential(reference, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    spec, ref_out, _ = reference
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rec = run_sweep(spec, out=tmp_path / "out", scheduler=cluster.scheduler_address, threads=1, progress=False)
    assert rec["finished"] and len(rec["completed"]) == 3
    got, want = _radii(tmp_path / "out"), _radii(ref_out)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_unreachable_scheduler_is_a_user_error(tmp_path):
    spec = write(tmp_path, TINY)
    with pytest.raises(UserError, match="Dask scheduler"):
        run_sweep(spec, out=tmp_path / "o", scheduler="tcp://127.0.0.1:1", progress=False)


def test_malformed_scheduler_address_is_a_user_error(tmp_path):
    spec = write(tmp_path, TINY)
    with pytest.raises(UserError, match="not a Dask scheduler address"):
        run_sweep(spec, out=tmp_path / "o", scheduler="not-an-address", progress=False)


def test_seeds_runs_every_grid_point_with_distinct_seeds_and_names(tmp_path):
    text = TINY.replace('name = "tiny"', 'name = "tiny"\nseeds = 3')
    text += '\n[[grid]]\ndataset = "sphere"\nmodel = "mlp"\nwidth = 8\nseeds = 2\n'
    text += '\n[[grid]]\ndataset = "gaussian"\nmodel = "mlp"\nwidth = 8\nseed = [7]\n'
    tasks = expand(load_spec(write(tmp_path, text)), tmp_path / "o")
    digits = [t for t in tasks if t.params["dataset"] == "digits"]
    assert len(digits) == 3 * 3 and {t.params["seed"] for t in digits} == {0, 1, 2}
    assert [t.params["seed"] for t in tasks if t.params["dataset"] == "sphere"] == [0, 1]  # the block's own count
    assert [t.params["seed"] for t in tasks if t.params["dataset"] == "gaussian"] == [7]  # explicit seeds win
    assert len({t.name for t in tasks}) == len({t.path for t in tasks}) == len(tasks) == 12
    t = next(t for t in digits if t.params["width"] == 8 and t.params["seed"] == 2)
    assert t.name == "digits-mlp-w8-n100-s2"
    assert t.train.seed == t.data["seed"] == t.lipschitz.seed == 2 and all(a.seed == 2 for a in t.attacks)
    # without seeds anywhere: one run per grid point, seed 0 (as before seeds existed)
    assert [t.params["seed"] for t in expand(load_spec(write(tmp_path, TINY, "one.toml")), tmp_path / "o")] == [0] * 3


def test_width_p_runs_are_named_by_their_target(tmp_path):
    text = TINY.replace('width = [4, 8, 16]', 'width = ["p=2000", 8]')
    tasks = expand(load_spec(write(tmp_path, text)), tmp_path / "o")
    assert [t.name for t in tasks] == ["digits-mlp-p2000-n100-s0", "digits-mlp-w8-n100-s0"]
    assert tasks[0].model["width"] == "p=2000"


@pytest.mark.parametrize("text, needle", [
    (TINY.replace('name = "tiny"', 'name = "tiny"\nseeds = 0'), "'seeds' must be a positive integer"),
    (TINY.replace('name = "tiny"', 'name = "tiny"\nseeds = "five"'), "'seeds' must be a positive integer"),
    (TINY + "seeds = 2\nseed = [0, 1]\n", "either 'seed'"),
])
def test_bad_seeds_are_one_line_errors(tmp_path, capsys, text, needle):
    spec = write(tmp_path, text)
    assert run_main(main, [str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(spec) in err, err


def test_reduced_spec_keeps_every_block_and_axis_on_few_values():
    from advrobust.sweep import reduced_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "experiments" / "law_sphere.toml")
    red = reduced_spec(spec)
    assert red["name"] == "law_sphere-reduced" and red["seeds"] == 2 and len(red["grid"]) == len(spec["grid"])
    width_block, dim_block, n_block, dim_block_2 = red["grid"]
    assert width_block["width"] == [16, 64, 1024]  # smallest, middle, largest up to 1024
    assert dim_block["dim"] == [8, 128] and n_block["n"] == [64, 512]  # first and last: the sweeps still vary
    assert dim_block["width"] == "p=17922"
    assert dim_block_2["dim"] == [16, 256] and dim_block_2["width"] == "p=4482"  # fixed p kept
    assert red["attack"]["n"] == 8 and red["attack"]["steps"] == 10 and red["train"]["epochs"] == 300
    assert red["attack"]["norms"] == spec["attack"]["norms"] and red["attack"]["splits"] == spec["attack"]["splits"]
    tasks = expand(red, "/tmp/x")
    assert len(tasks) == 2 * (3 + 2 + 2 + 2) and {t.params["seed"] for t in tasks} == {0, 1}
    assert len(spec["grid"][0]["width"]) == 14  # the spec itself is untouched
    digits = reduced_spec(load_spec(Path(__file__).resolve().parents[1] / "experiments" / "law_digits.toml"))
    assert digits["grid"][0]["width"] == [32, 128, 512]  # "min" dropped: its search trains many models
    budget = reduced_spec(load_spec(Path(__file__).resolve().parents[1] / "experiments" / "fashion_capacity.toml"))
    assert all(b["n"] == 500 and b["train"]["epochs"] == 5 for b in budget["grid"])


def test_missing_data_files_stop_the_study_before_any_training(tmp_path, capsys):
    text = TINY.replace('dataset = "digits"\nn = 100', f'dataset = "fashion-mnist"\nn = 100\ndata_dir = "{tmp_path / "nope"}"')
    spec = write(tmp_path, text)
    assert run_main(main, [str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fashion-mnist" in err and "nothing was trained" in err, err
    assert "train-images-idx3-ubyte" in err and "apt-get install dataset-fashion-mnist" in err
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.parametrize("argv", [[], ["experiments/quick.toml", "--workers", "abc"], ["experiments/quick.toml", "--nope"]])
def test_usage_errors_are_one_line(argv, capsys):
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--help" in err[0]


LEGACY = Path(__file__).parent / "data" / "legacy_sweep"


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "runs").rglob("*")) if p.is_file()}


def test_a_study_made_by_the_argv_sweep_resumes_without_redoing_its_runs(tmp_path):
    """tests/data/legacy_sweep/study was made by the sweep before it called the library (commit
    92791e5: stage commands recorded as sweep-train.json and sweep_argv, no configs). Resuming it
    redoes nothing and changes no file; a changed attack setting redoes the attacks only."""
    import shutil

    out = tmp_path / "study"
    shutil.copytree(LEGACY / "study", out)
    before = _files(out)
    assert all("config" not in json.loads(v) for k, v in before.items() if k.endswith("attack-l2-train.json"))
    rec = run_sweep(LEGACY / "legacy.toml", out=out, threads=1, progress=False)
    assert rec["finished"] and len(rec["runs"]) == 2
    assert all(set(st["skipped"]) == {"train", "attack-l2-train.json", "lipschitz.json"}
               for st in rec["status"].values())
    assert _files(out) == before
    assert "law of robustness fits" in (out / "compare.md").read_text()
    # the same study with 6 attack steps instead of 5: the attacks are redone, with configs recorded
    spec = load_spec(LEGACY / "legacy.toml")
    spec["attack"]["steps"] = 6
    rec = run_sweep(spec, out=out, threads=1, progress=False)
    assert all(set(st["skipped"]) == {"train", "lipschitz.json"} for st in rec["status"].values())
    for name in rec["runs"]:
        att = json.loads((out / "runs" / name / "attack-l2-train.json").read_text())
        assert att["config"]["steps"] == 6 and att["format"] == "advrobust-attack/2"
        assert (out / "runs" / name / "model.pt").read_bytes() == before[f"runs/{name}/model.pt"]


def test_resume_compares_the_recorded_configs(reference, tmp_path):
    """A run made by this sweep records each stage's config; a record whose config differs from the
    spec's (here: edited by hand) is redone, and one made by hand with another device too."""
    import shutil

    spec, ref_out, _ = reference
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    name = sorted((out / "runs").iterdir())[0].name
    f = out / "runs" / name / "attack-l2-train.json"
    rec = json.loads(f.read_text())
    assert rec["config"]["steps"] == 20 and rec["config"]["attacks"] == ["ddn", "fmn"]
    rec["config"]["steps"] = 19
    f.write_text(json.dumps(rec))
    lip = json.loads((out / "runs" / name / "lipschitz.json").read_text())
    assert lip["config"] == {"norm": "l2", "ascent_steps": 100, "ascent_points": 16, "segments": 256,
                             "max_points": None, "seed": 0, "device": "cpu"}
    again = run_sweep(spec, out=out, threads=1, progress=False)
    skipped = {k: set(v["skipped"]) for k, v in again["status"].items()}
    assert skipped.pop(name) == {"train", "lipschitz.json"}
    assert all(s == {"train", "attack-l2-train.json", "lipschitz.json"} for s in skipped.values())
    np.testing.assert_array_equal(np.load(f.with_suffix(".npz"))["best_radius"],
                                  np.load(ref_out / "runs" / name / "attack-l2-train.npz")["best_radius"])


def test_lipschitz_stage_reads_its_own_norm_from_lipschitz_json(reference, tmp_path):
    """lipschitz.json's top level is the norm estimated last (e.g. a later linf estimate by hand);
    the sweep's l2 stage is still done when by_norm holds its l2 config."""
    import shutil

    from advrobust.lipschitz import LipschitzConfig
    from advrobust.sweep import _stage_done

    spec, ref_out, _ = reference
    run = tmp_path / "run"
    shutil.copytree(next((ref_out / "runs").iterdir()), run)
    l2 = LipschitzConfig()
    assert _stage_done(run, "lipschitz.json", l2)
    rec = json.loads((run / "lipschitz.json").read_text())
    linf = {**rec["by_norm"]["l2"], "norm": "linf", "config": LipschitzConfig(norm="linf").to_dict()}
    (run / "lipschitz.json").write_text(json.dumps({**linf, "by_norm": {**rec["by_norm"], "linf": linf}}))
    assert _stage_done(run, "lipschitz.json", l2) and _stage_done(run, "lipschitz.json", LipschitzConfig(norm="linf"))
    assert not _stage_done(run, "lipschitz.json", LipschitzConfig(segments=3))
