"""Slow: the shipped quick study reproduces its headline figures (run with  pytest -m slow)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_spec_reproduces_its_headline(tmp_path):
    out = tmp_path / "quick"
    subprocess.run([sys.executable, "-m", "advrobust.sweep", str(ROOT / "experiments" / "quick.toml"), "--out", str(out),
                    "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rec = json.loads((out / "sweep.json").read_text())
    assert rec["finished"] and len(rec["completed"]) == 9
    assert (out / "report" / "report.html").is_file()
    fits = json.loads((out / "compare.json").read_text())["fits"]
    radius = {f["group"]: f["fit"] for f in fits
              if f.get("response") == "train_radius_median" and f.get("against") == "params" and "fit" in f}
    # README: digits +0.111 [0.023, 0.208], sphere +0.099 [0.014, 0.149] (seeded: reproduces to round-off)
    assert radius["digits n=1348 d=64"]["exponent"] == pytest.approx(0.111, abs=0.01)
    assert radius["sphere n=256 d=32"]["exponent"] == pytest.approx(0.099, abs=0.01)
    rows = {r["run"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert rows["digits-mlp-wmin-s0"]["width"] == 6 and rows["digits-mlp-wmin-s0"]["params"] == 460


def _bench_row(model, norm, ratio):
    stats = {"optimal": 9, "median": 1.0, "p90": 1.00002, "max": 1.0123, "time_limit_points": 0,
             "time_limit_max_vs_incumbent": float("nan")}
    return {"model": model, "norm": norm, "p": 610, "train_acc": 1.0, "n": 10, "new": stats, "baseline": dict(stats, max=1.19),
            "new_ms_per_point": 13.2, "new_cpu_ms_per_point": 12.8, "baseline_ms_per_point": 7.1,
            "baseline_cpu_ms_per_point": 6.9, "time_ratio": ratio}


def test_bench_exact_radii_table_spans_the_runs(tmp_path):
    """docs/attacks.md's exact-radii table: radii and times of the first run, the CPU time ratio's
    range over all runs; runs of other rows are refused with one line."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import bench_exact_radii as bench
    finally:
        sys.path.pop(0)
    from advrobust.errors import UserError

    paths = []
    for i, ratio in enumerate((1.8, 1.6, 1.9)):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps({"rows": [_bench_row("digits-w8", "linf", ratio)]}))
    lines = bench.table([str(p) for p in paths]).splitlines()
    assert len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:4] == ["digits-w8 (610, 1.000)", "linf", "9/10", "1.00000 · 1.00002 · 1.0123"]
    assert cells[4].endswith("1.1900") and cells[6] == "12.8 (6.9)" and cells[7] == "1.80 (1.60-1.90)"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": [_bench_row("digits-w16", "linf", 1.5)]}))
    with pytest.raises(UserError, match="other models or norms"):
        bench.table([str(paths[0]), str(other)])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"rows": [{"model": "digits-w8", "norm": "linf"}]}))
    with pytest.raises(UserError, match="cannot read benchmark rows from .*broken.json"):
        bench.table([str(broken)])
