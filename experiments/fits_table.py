"""A study's fitted exponents as a Markdown table, read from its ``compare.json``.

The results pages under ``docs/results/`` quote these tables as printed::

    python experiments/fits_table.py runs/law_digits            # every fit
    python experiments/fits_table.py runs/law_digits --norm l2  # one norm

Columns: the response (median training radius or Lipschitz lower bound), the variable it is fitted
against, the group of comparable runs (what is held fixed), the number of runs, the exponent with
its 95% bootstrap interval over runs and the interval's half-width, R², and the law's exponent
(+-1/2; for radii a heuristic reading, radius ~ margin / Lipschitz). Per group and response the stage
list also shows the runs' wall time per stage from the sweep record (``sweep.json``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advrobust.errors import UserError  # noqa: E402

from advrobust.cli._common import run_main  # noqa: E402
from advrobust.runs import read_json  # noqa: E402

RESPONSE = {"train_radius_median": "median training radius", "lip_lower": "Lipschitz lower bound"}
LAW = {0.5: "+1/2", -0.5: "−1/2"}


def _fmt(v: float) -> str:
    return f"{v:+.3f}".replace("-", "−")


def table(fits: list[dict], norm: str | None = None) -> str:
    lines = ["| response | norm | against | group | runs | exponent | 95% CI | half-width | R² | law |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in fits:
        fit = f.get("fit")
        if not fit or (norm and f.get("norm") != norm):
            continue
        lo, hi = fit.get("ci_low"), fit.get("ci_high")
        ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else "–"
        half = f"{(hi - lo) / 2:.3f}" if lo is not None else "–"
        law = f.get("predicted_exponent")
        law_s = LAW.get(law, "–" if law is None else _fmt(law))
        if f.get("kind") == "radius" and law is not None:
            law_s += " (heuristic)"
        lines.append(f"| {RESPONSE.get(f['response'], f['response'])} | {f.get('norm')} | {f['against']} | "
                     f"{f.get('group')} | {fit['n']} | {_fmt(fit['exponent'])} | {ci} | {half} | {fit['r2']:.3f} | "
                     f"{law_s} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", help="a study's output folder (holding compare.json)")
    ap.add_argument("--norm", default=None)
    args = ap.parse_args(argv)
    path = Path(args.study) / "compare.json"
    if not path.is_file():
        raise UserError(f"{path} not found; run the study first (python -m advrobust.sweep SPEC --out {args.study})")
    data = read_json(path, what="comparison")
    print(table(data.get("fits") or [], args.norm))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
