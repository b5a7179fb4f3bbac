"""The README's hand session, run verbatim: it must end with a law fit over three sizes."""
from __future__ import annotations

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
