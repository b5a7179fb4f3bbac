"""compare: rows from hand-built run directories that follow docs/internals.md, formats, filters, pairing."""
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from advrobust import runs
from advrobust.errors import UserError
from advrobust.cli._common import run_main
from advrobust.cli.compare import main
from advrobust.compare import collect_rows, filter_rows, format_table, paired, sort_rows
from advrobust.models import build_model, make_spec, param_count

DATA = {"name": "digits", "n": None, "n_test": None, "resize": None, "label_noise": 0.0, "seed": 0,
        "data_dir": None, "dim": None, "classes": None, "labels": "random", "flip": 0.0}


def make_run(root: Path, name: str, width: int, *, radii=None, test_radii=None, train_acc=1.0, lip=None,
             lower=None, data=None, n=1353) -> Path:
    """A run directory by the contract: run.json + model.pt, optional attack results and lipschitz.json."""
    spec = make_spec("mlp", width, input_shape=[1, 8, 8], classes=10)
    path = root / name
    runs.save_model(path / runs.MODEL_FILE, build_model(spec), spec)
    p = param_count(spec)
    runs.atomic_write_json(path / runs.RUN_FILE, {
        "spec": {"data": data or DATA, "model": spec}, "params": p, "n": n, "d": 64, "classes": 10,
        "train_accuracy": train_acc, "test_accuracy": 0.95,
        "data_meta": {"name": "digits", "scale": 3.86, "mean_l2_centered": 3.39}})
    for split, r in (("train", radii), ("test", test_radii)):
        if r is None:
            continue
        r = np.asarray(r, dtype=np.float64)
        arrays = {"index": np.arange(r.size, dtype=np.int64), "label": np.zeros(r.size, np.int64),
                  "pred": np.zeros(r.size, np.int64), "margin": np.ones(r.size), "best_radius": r,
                  "best_attack": np.zeros(r.size, np.int64), "radius__fmn": r}
        if lower is not None:
            arrays["lower__crown"] = np.asarray(lower, dtype=np.float64)
        runs.commit_results(path / f"attack-l2-{split}", arrays, {"norm": "l2", "split": split, "n": int(r.size)})
    if lip is not None:
        entry = {"norm": "l2", "margin": {"lower": lip[0], "upper": lip[1]}, "logit": {"lower": 1.0, "upper": 2.0},
                 "input_scale": 3.39}
        runs.atomic_write_json(path / "lipschitz.json", {**entry, "by_norm": {"l2": entry}})
    return path


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    a = make_run(tmp_path, "w8", 8, radii=[0.0, 0.2, 0.4, 0.6, np.inf], test_radii=[0.1, 0.3, 0.5, 0.7, 0.9],
                 lip=(3.0, 50.0), lower=[0.0, 0.1, 0.2, 0.5, 0.6])
    b = make_run(tmp_path, "w64", 64, radii=[0.5, 0.6, 0.7, 0.8, 0.9], lip=(2.0, 80.0))
    c = make_run(tmp_path, "w4", 4, train_acc=0.9)
    d = make_run(tmp_path, "w256", 256, radii=list(1.0 + rng.random(5)), lip=(1.5, 300.0))
    return tmp_path, (a, b, c, d)


def test_rows_values_and_missing(study):
    root, (a, b, c, d) = study
    rows = {r["run"]: r for r in collect_rows([root], eps=[0.35])}
    ra = rows["w8"]
    assert ra["params"] == 610 and ra["p/n"] == pytest.approx(610 / 1353)
    assert ra["p/(n*d)"] == pytest.approx(610 / (1353 * 64))
    assert ra["l2_train_radius_median"] == pytest.approx(0.4)
    assert ra["l2_test_radius_median"] == pytest.approx(0.5)
    assert ra["l2_train_robust_acc@0.35"] == pytest.approx(3 / 5)  # 0.4, 0.6, inf
    assert ra["l2_train_certified@0.35"] == pytest.approx(2 / 5)
    assert ra["l2_lip_lower"] == 3.0 and ra["l2_lip_upper"] == 50.0 and ra["input_scale"] == 3.39
    rc = rows["w4"]
    assert rc["l2_train_radius_median"] is None and rc["l2_lip_lower"] is None
    assert rc["missing"]["l2_train_radius_median"] == f"python -m advrobust.attack {c} --norm l2 --split train"
    assert rc["missing"]["l2_lip_lower"].startswith(f"python -m advrobust.lipschitz {c}")
    assert rows["w64"]["l2_test_radius_median"] is None
    assert "--split test" in rows["w64"]["missing"]["l2_test_radius_median"]
    assert "certify" in rows["w64"]["missing"]["l2_train_certified@0.35"]


def test_formats_parse_and_show_missing(study):
    root, (a, b, c, d) = study
    rows = sort_rows(collect_rows([root]), "params")
    assert [r["run"] for r in rows] == ["w4", "w8", "w64", "w256"]
    text = format_table(rows, fmt="csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["run"] for r in parsed] == ["w4", "w8", "w64", "w256"]
    assert parsed[0]["l2_train_radius_median"] == "" and float(parsed[1]["l2_train_radius_median"]) == 0.4
    js = json.loads(format_table(rows, fmt="json"))
    assert js[0]["l2_lip_lower"] is None and "l2_lip_lower" in js[0]["missing"]
    assert js[1]["l2_train_robust_acc@0.5"] == pytest.approx(0.4)
    table = format_table(rows, fmt="table")
    line = next(ln for ln in table.splitlines() if ln.startswith("w4 "))
    assert " - " in line and " 0 " not in line
    assert f"python -m advrobust.attack {c} --norm l2 --split train" in table
    md = format_table(rows, fmt="markdown", columns=["run", "params", "l2_train_radius_median"])
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 6 and lines[2].split("|")[3].strip() == "-"
    with pytest.raises(UserError):
        format_table(rows, fmt="xml")
    with pytest.raises(UserError):
        format_table(rows, columns=["run", "nonsense"])


def test_filter_and_sort(study):
    root, _ = study
    rows = collect_rows([root])
    assert {r["run"] for r in filter_rows(rows, "params>1000")} == {"w64", "w256"}
    assert {r["run"] for r in filter_rows(rows, "p<=610")} == {"w4", "w8"}
    assert len(filter_rows(rows, "dataset=digits")) == 4
    assert filter_rows(rows, "dataset!=digits") == []
    assert [r["run"] for r in sort_rows(rows, "-l2_lip_lower")][:3] == ["w8", "w64", "w256"]
    for bad in ("params >>", "colour=red", "dataset>3x"):
        with pytest.raises(UserError):
            filter_rows(rows, bad)
    with pytest.raises(UserError):
        sort_rows(rows, "nope")


def test_paired_ratio_and_wilcoxon(tmp_path):
    base = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.0, np.inf])
    a = make_run(tmp_path, "a", 8, test_radii=base)
    b = make_run(tmp_path, "b", 64, test_radii=np.where(np.isfinite(base), 2 * base, base))
    out = paired(a, b, norm="l2", split="test")
    assert out["n_common"] == 12 and out["n_used"] == 10
    assert out["median_ratio"] == pytest.approx(2.0) and out["geomean_ratio"] == pytest.approx(2.0)
    assert out["p_value"] < 0.01 and out["excluded"]["zero_a"] == 1 and out["excluded"]["inf_b"] == 1
    assert out["same_data"]
    # reversed order and common indices only
    c = tmp_path / "c"
    make_run(tmp_path, "c", 16)
    r = np.asarray(base[:6]) * 0.5
    runs.commit_results(c / "attack-l2-test", dict(index=np.arange(3, 9, dtype=np.int64), best_radius=r[::-1].copy(),
                        margin=np.ones(6), label=np.zeros(6, np.int64), pred=np.zeros(6, np.int64)),
                        {"norm": "l2", "split": "test", "n": 6})
    out = paired(a, c, norm="l2", split="test")
    assert out["n_common"] == 6
    with pytest.raises(UserError):
        paired(a, tmp_path / "nowhere", norm="l2", split="test")


def test_cli(study, capsys):
    root, (a, b, c, d) = study
    assert main([str(root), "--sort", "params", "--eps", "0.35"]) == 0
    out = capsys.readouterr().out
    assert "l2_train_robust_acc@0.35" in out and "law of robustness fits" in out
    assert "exponent" in out  # w8, w64, w256 memorise with radii: a fit over p
    assert main([str(root), "--format", "csv", "--no-fit", "--filter", "params>1000"]) == 0
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["run"] for r in parsed} == {"w64", "w256"}
    assert main([str(a), str(b), "--json", "--pair", str(a), str(b), "--split", "train"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert len(js["rows"]) == 2 and js["paired"]["n_common"] == 5
    assert run_main(main, [str(root), "--sort", "bogus"]) == 2
    assert run_main(main, [str(root), "--filter", "p>>1"]) == 2
    assert run_main(main, [str(root / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
    assert run_main(main, [str(root), "--bootstrap", "-5"]) == 2  # not "no CI (< 3 runs)" on 4 runs
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --bootstrap must be >= 0 resamples (0: no intervals), got -5"]


def test_law_fits_one_per_comparable_group():
    """Two data sets with opposite exponents: one fit each, each recovering its own exponent."""
    from advrobust.compare import format_fit, law_fits

    rows = []
    for ds, n, a, c in (("digits", 1353, 0.5, 1e-3), ("sphere", 256, -0.5, 30.0)):
        for i, p in enumerate([1e3, 4e3, 1.6e4, 6.4e4]):
            rows.append({"run": f"{ds}{i}", "dataset": ds, "n": n, "d": 64, "params": int(p), "family": "mlp",
                         "width": 8 * 2 ** i, "depth": 1, "labels": "random", "label_noise": 0.0, "flip": 0.0,
                         "train_accuracy": 1.0, "input_scale": 1.0, "l2_train_radius_median": c * p ** a,
                         "l2_lip_lower": None})
    fits = law_fits(rows, norms=["l2"], bootstrap=100)
    radius = [f for f in fits if f["response"] == "train_radius_median"]
    assert [(f["group"], f["against"]) for f in radius] == [("digits n=1353 d=64", "params"),
                                                           ("sphere n=256 d=64", "params")]
    assert radius[0]["fit"]["exponent"] == pytest.approx(0.5) and radius[1]["fit"]["exponent"] == pytest.approx(-0.5)
    assert radius[0]["rows_used"] == [f"digits{i}" for i in range(4)]
    assert all(f["against"] == "params" for f in fits)  # n differs only across data sets: no fit against n
    lip = [f for f in fits if f["response"] == "lip_lower"]
    assert len(lip) == 2 and all("error" in f and f["group"] for f in lip)
    assert format_fit(radius[1]).startswith("sphere n=256 d=64: l2 train_radius_median vs params [beyond, 4 runs")
    assert format_fit(lip[0]).startswith("digits n=1353 d=64: l2 lip_lower vs params: no fit")


def test_cli_fits_each_data_set_separately(study, capsys):
    root, _ = study
    sphere = dict(DATA, name="sphere")
    make_run(root, "s8", 8, radii=[0.5] * 5, data=sphere, n=256)
    make_run(root, "s64", 64, radii=[0.25] * 5, data=sphere, n=256)
    rows = collect_rows([root])
    assert {r["depth"] for r in rows} == {1}
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "digits n=1353 d=64: l2 train_radius_median vs params [beyond, 3 runs" in out
    assert "sphere n=256 d=64: l2 train_radius_median vs params [beyond, 2 runs" in out
    assert " vs n " not in out and " vs n:" not in out and " vs n [" not in out
    assert main([str(root), "--json"]) == 0
    fits = json.loads(capsys.readouterr().out)["fits"]
    sph = [f for f in fits if f["group"] == "sphere n=256 d=64" and f["response"] == "train_radius_median"]
    p8, p64 = (r["params"] for r in sort_rows([r for r in rows if r["dataset"] == "sphere"], "params"))
    expect = np.log(0.25 / 0.5) / np.log(p64 / p8)  # the two sphere runs alone; digits radii rise with p
    assert len(sph) == 1 and sph[0]["fit"]["exponent"] == pytest.approx(expect, rel=1e-9) and expect < 0


def test_real_trained_runs_lipschitz_and_compare(tmp_path, capsys):
    """Two tiny runs trained by advrobust.train, estimated by advrobust.lipschitz, compared."""
    from advrobust.cli.lipschitz import main as lip_main
    from advrobust.train import TrainConfig, train_run

    data = {"name": "sphere", "n": 32, "n_test": 16, "dim": 8, "classes": 2, "labels": "random", "seed": 0}
    paths = []
    for w in (4, 32):
        paths.append(train_run(tmp_path / f"s{w}", data_kwargs=data, model_spec={"family": "mlp", "width": w},
                               config=TrainConfig(mode="budget", epochs=30), progress=False))
    for p in paths:
        assert lip_main([str(p), "--ascent-steps", "2", "--segments", "4"]) == 0
    capsys.readouterr()
    rows = sort_rows(collect_rows(paths), "params")
    assert [r["params"] for r in rows] == [4 * 8 + 4 + 2 * 4 + 2, 32 * 8 + 32 + 2 * 32 + 2]
    for r in rows:
        assert r["dataset"] == "sphere" and r["input_scale"] == pytest.approx(0.5)
        assert 0 < r["l2_lip_lower"] <= r["l2_lip_upper"] * (1 + 1e-6)
        assert r["l2_train_radius_median"] is None and "advrobust.attack" in r["missing"]["l2_train_radius_median"]
    parsed = list(csv.DictReader(io.StringIO(format_table(rows, fmt="csv"))))
    assert parsed[0]["l2_train_radius_median"] == "" and float(parsed[0]["l2_lip_lower"]) > 0


def test_one_median_definition_in_summary_compare_and_report(tmp_path):
    """Even count: every path gives the lower middle value (an observed radius), never the mean of the two."""
    from advrobust._stats import median, quantile
    from advrobust.evaluate import CascadeResult, summarize
    from advrobust.report.sections import quartiles

    r = np.array([0.0775, 0.0853, 0.0700, 0.1200, np.inf, 0.0600])  # sorted: .06 .07 .0775 .0853 .12 inf
    run = make_run(tmp_path, "even", 8, radii=r)
    row = collect_rows([run])[0]
    z = np.zeros(r.size, np.int64)
    res = CascadeResult(norm=2.0, attacks=["fmn"], labels=z, pred=z, margin=np.ones(r.size), best_radius=r,
                        best_attack=z, radius={"fmn": r}, forward={"fmn": np.ones(r.size)},
                        backward={"fmn": np.ones(r.size)}, time={"fmn": np.ones(r.size)},
                        adv=np.zeros((r.size, 2), np.float32))
    s = summarize(res)
    assert s["median"] == row["l2_train_radius_median"] == quartiles(r)[0] == median(r) == 0.0775
    assert s["per_attack"]["fmn"]["median"] == 0.0775
    assert quantile(r, 0.9) == np.inf and np.isnan(median(np.array([np.nan])))
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert s["quantiles"][f"q{int(q * 100)}"] == np.quantile(r, q, method="inverted_cdf")


# --------------------------------------------------------------------------- the one loader (compare and report)
def _old_format(run: Path) -> None:
    """Rewrite a run's files as older versions wrote them: a single-norm lipschitz.json (no by_norm),
    attack summaries without the npz checksum, the intrinsic dimension in intrinsic.json."""
    lip = json.loads((run / "lipschitz.json").read_text())
    lip.pop("by_norm")
    runs.atomic_write_json(run / "lipschitz.json", lip)
    for f in run.glob("attack-*.json"):
        rec = json.loads(f.read_text())
        rec.pop("npz")
        runs.atomic_write_json(f, rec)
    runs.atomic_write_json(run / "intrinsic.json", {"two_nn": 7.5, "mle": 8.25, "known": None})


def test_old_format_files_read_alike_by_compare_and_report(tmp_path):
    """One loader: an old-format run gives compare and the report the same values (the report used
    to read lipschitz.json and the intrinsic dimension on its own)."""
    from advrobust import report

    old = make_run(tmp_path / "runs", "old", 8, radii=[0.1, 0.3, 0.5], test_radii=[0.2, 0.4, 0.6], lip=(3.0, 50.0))
    make_run(tmp_path / "runs", "new", 64, radii=[0.2, 0.4, 0.6], test_radii=[0.3, 0.5], lip=(2.0, 40.0))
    _old_format(old)
    loaded = runs.load_results(old)
    assert loaded.lipschitz_entry("l2")["margin"] == {"lower": 3.0, "upper": 50.0}
    assert loaded.lipschitz_entry("linf") is None and loaded.intrinsic["two_nn"] == 7.5
    with_model = runs.load_run(old).results  # the same loader behind a loaded run
    assert with_model.lipschitz == loaded.lipschitz and sorted(with_model.results) == [("l2", "test"), ("l2", "train")]
    rows = {r["run"]: r for r in collect_rows([tmp_path / "runs"])}
    assert rows["old"]["l2_lip_lower"] == 3.0 and rows["old"]["l2_lip_upper"] == 50.0
    assert rows["old"]["d_intrinsic"] == 7.5 and rows["old"]["d_intrinsic_mle"] == 8.25
    assert rows["old"]["l2_train_radius_median"] == 0.3 and rows["new"]["d_intrinsic"] is None
    res = report.build_report([tmp_path / "runs"], tmp_path / "rep", samples=0, bootstrap=0)
    md = (tmp_path / "rep" / "report.md").read_text()
    overview = next(ln for ln in md.splitlines() if ln.startswith("| digits mlp w8 |"))
    assert overview.rstrip().endswith("| l2 |")  # its Lipschitz estimates were found
    csv_rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "rep" / "comparison.csv"))}
    assert float(csv_rows["old"]["l2_lip_lower"]) == 3.0 and float(csv_rows["old"]["d_intrinsic"]) == 7.5
    # the scaling fit over the two runs: the unit-scale Lipschitz lower bounds compare fits
    lip_fig = res["figures"]["scaling-lipschitz-l2-vs-p"]
    assert sorted(lip_fig["runs"]) == ["new", "old"]
    # its entry lacks the local-slope median (as older estimates do): named as such, not as a missing entry
    lip_missing = [m["what"] for m in res["missing"] if "lipschitz" in (m["command"] or "")]
    assert lip_missing == [f"digits mlp {w}: l2 median local slope of the margin (the lipschitz.json entry for l2 was "
                           "estimated before it was recorded)" for w in ("w8", "w64")]


def test_missing_results_name_the_same_command_in_compare_and_report(tmp_path, capsys):
    """A run without linf results and without Lipschitz estimates: compare's table and the report's
    missing pieces name the same commands, and the cell is a dash in both."""
    from advrobust import report
    from advrobust.cli.compare import main as compare_main

    a = make_run(tmp_path / "runs", "a", 8, radii=[0.1, 0.3], test_radii=[0.2, 0.4], lip=(3.0, 50.0))
    b = make_run(tmp_path / "runs", "b", 16, radii=[0.2, 0.5])
    arrays = runs.load_npz(a / "attack-l2-test.npz")
    runs.commit_results(a / "attack-linf-test", arrays, {"norm": "linf", "split": "test", "n": 2, "attacks": ["fmn"],
                                                        "steps": 7, "seed": 3})
    assert compare_main([str(tmp_path / "runs"), "--no-fit"]) == 0
    table = capsys.readouterr().out
    res = report.build_report([tmp_path / "runs"], tmp_path / "rep", samples=0, bootstrap=0)
    in_report = {m["command"] for m in res["missing"]}
    row = next(r for r in collect_rows([tmp_path / "runs"]) if r["run"] == "b")
    want = set(row["missing"].values())
    assert f"python -m advrobust.attack {b} --norm linf --split test" in want
    assert f"python -m advrobust.lipschitz {b} --norm linf" in want
    for cmd in want:
        assert cmd in table and cmd in in_report, cmd
    # and in the same words: the report's missing pieces are compare's descriptions, after the run's label
    from advrobust.compare import describe_missing

    whats = {m["command"]: m["what"] for m in res["missing"]}
    for col in ("linf_test_radius_median", "l2_lip_lower", "linf_lip_lower", "l2_test_radius_median"):
        assert whats[row["missing"][col]] == "digits mlp w16: " + describe_missing(col, has_results=False)
    line = next(ln for ln in table.splitlines() if ln.startswith("b "))
    assert line.split()[table.splitlines()[0].split().index("linf_test_radius_median")] == "-"
    md = (tmp_path / "rep" / "report.md").read_text()
    radii = md[md.index("## Radii: linf, test points"):]
    assert next(ln for ln in radii.splitlines() if ln.startswith("| digits mlp w16")).startswith("| digits mlp w16 | – |")


def test_compare_and_report_read_each_result_file_once_and_fail_alike(tmp_path, monkeypatch):
    """The report takes compare's rows from the runs it loaded (no second reading through
    collect_rows), and a broken results file is the same error in both."""
    from advrobust import compare, report

    run = make_run(tmp_path / "runs", "a", 8, radii=[0.1, 0.3], test_radii=[0.2, 0.4], lip=(3.0, 50.0))
    make_run(tmp_path / "runs", "b", 16, radii=[0.2, 0.5])
    reads = []
    real = np.load
    monkeypatch.setattr(np, "load", lambda f, *a, **k: reads.append(str(f)) or real(f, *a, **k))
    monkeypatch.setattr(compare, "collect_rows", lambda *a, **k: pytest.fail("the report re-read the runs"))
    report.build_report([tmp_path / "runs"], tmp_path / "rep", samples=0, bootstrap=0)
    assert sorted(reads) == sorted(str(f) for f in (tmp_path / "runs").rglob("attack-*.npz"))
    monkeypatch.undo()
    arrays = runs.load_npz(run / "attack-l2-test.npz")
    arrays.pop("best_radius")
    runs.commit_results(run / "attack-l2-test", arrays, {"norm": "l2", "split": "test"})
    errors = []
    for call in (lambda: collect_rows([tmp_path / "runs"]),
                 lambda: report.build_report([tmp_path / "runs"], tmp_path / "rep2", samples=0)):
        with pytest.raises(UserError) as exc:
            call()
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "attack-l2-test.npz has no best_radius array" in errors[0]
    assert f"python -m advrobust.attack {run} --norm l2 --split test" in errors[0]
