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
