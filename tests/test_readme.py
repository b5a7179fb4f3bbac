"""The README's examples run verbatim: the hand session must end with a law fit over three sizes,
and so must the run-based Python example."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def hand_session() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"A typical session by hand.*?```bash\n(.*?)```", text, re.S)
    assert m, "README lost its hand session"
    return m.group(1)


def test_hand_session_has_three_sizes_and_ends_in_a_fit():
    script = hand_session()
    widths = set(re.findall(r"--width (\w+)", script))
    assert len(widths) >= 3
    assert re.search(r"python -m advrobust\.compare (runs/\S+ ){3}", script)


@pytest.mark.slow
def test_hand_session_runs_verbatim_and_prints_a_law_fit(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    script = "set -e\n" + hand_session().replace("python ", f"{sys.executable} ")
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    fits = re.findall(r"l2 (train_radius_median|lip_lower) vs params \[beyond, 3 runs.*?exponent ([-+]\d\.\d+)",
                      proc.stdout)
    assert {k for k, _ in fits} == {"train_radius_median", "lip_lower"}, proc.stdout[-3000:]
    assert (tmp_path / "report" / "report.html").is_file()
    print(f"README hand session: {elapsed:.0f} s")


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]


def test_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's run-based example (train_run -> attack_run -> lipschitz_run -> compare), executed
    verbatim in an empty folder: three run directories, a table of three rows, a law fit per response.
    (The advrobust.radii example is executed by tests/test_api.py.)"""
    example = [b for b in python_blocks() if "train_run(" in b]
    assert len(example) == 1, "README lost its run-based Python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(example[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["py-w128", "py-w32", "py-w8"]
    for run in runs:
        assert (tmp_path / "runs" / run / "attack-l2-train.npz").is_file()
        assert json.loads((tmp_path / "runs" / run / "lipschitz.json").read_text())["config"]["norm"] == "l2"
        assert re.search(rf"^{run}\s+\d+\s+1\s+\d\.\d+\s+\d+\.?\d*", out, re.M), out
    assert len(re.findall(r"l2 (train_radius_median|lip_lower) vs params \[beyond, 3 runs", out)) == 2, out
