"""Does attack error move a slope? A study's radii beside the default cascade's and exact radii.

A study attacks every run with the attacks its spec names, often a fast subset of the default
cascade (law_digits uses fmn, fab and deepfool). This script takes the study's runs, attacks the
first ``--n`` training points of each selected run again with the full default cascade (ending
with the boundary attack) and, in Linf and L1, computes their exact radii (``advrobust.exact``:
HiGHS MILP with ``--exact-time-limit`` seconds per point). On those same points it then reports,
per run, the median radius from each source, and per group of runs (label noise, data size) the
exponent of the median radius against p from each source, fitted over the runs that interpolate,
with 95% bootstrap intervals over runs. If attack error mattered, the columns would disagree.

Usage::

    python experiments/check_attack_error.py runs/law_digits --norm linf --n 20 --seeds 0 \\
        --max-params 20000 --json-out runs/law_digits/check-linf.json

Results of the re-attacks go to ``STUDY/check/<run>/`` (an attack results folder per run, reused
when present, so an interrupted check resumes). The Markdown table printed at the end is what
``docs/results/law_digits.md`` shows.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advrobust.cli import attack as attack_cli  # noqa: E402
from advrobust.errors import UserError  # noqa: E402
from advrobust.norms import norm_name, parse_norm  # noqa: E402
from advrobust.cli._common import run_main  # noqa: E402
from advrobust._stats import median, quantile  # noqa: E402
from advrobust.compare import collect_rows  # noqa: E402
from advrobust.law import comparable_groups, fit_power_law  # noqa: E402
from advrobust.runs import find_runs, load_npz, read_json, results_stem  # noqa: E402


def _median(v: np.ndarray) -> float:
    """The project's median (the lower middle value) of the finite values."""
    v = v[np.isfinite(v)]
    return median(v) if v.size else math.nan


def check_run(run: Path, out: Path, *, norm: str, n: int, time_limit: float, seed: int) -> dict:
    """Re-attack one run's first ``n`` training points; the three radii on the points it fits."""
    stem = results_stem(norm, "train")
    study = load_npz(run / f"{stem}.npz", what="the study's attack results")
    if len(study["best_radius"]) < n:
        raise UserError(f"{run}: the study attacked {len(study['best_radius'])} training points, fewer than --n {n}")
    argv = [str(run), "--norm", norm, "--split", "train", "--n", str(n), "--seed", str(seed), "--out", str(out),
            "--quiet"]
    exact = parse_norm(norm) != 2.0  # the L2 MIQP rarely finishes on these networks
    if exact:
        argv += ["--exact", "--exact-time-limit", str(time_limit)]
    if not (out / f"{stem}.npz").is_file():
        t0 = time.perf_counter()
        code = run_main(attack_cli.main, argv)
        if code != 0:
            raise UserError(f"{run}: the re-attack failed (exit {code})")
        (out / "check-time.json").write_text(json.dumps({"wall_time_s": time.perf_counter() - t0}))
    full = load_npz(out / f"{stem}.npz", what="the check's attack results")
    fitted = (np.asarray(study["pred"][:n]) == np.asarray(study["label"][:n]))
    r_study = np.where(fitted, np.asarray(study["best_radius"][:n], dtype=np.float64), np.nan)
    r_full = np.where(fitted, np.asarray(full["best_radius"], dtype=np.float64), np.nan)
    rec = {"run": run.name, "points": int(fitted.sum()), "study": _median(r_study), "cascade": _median(r_full),
           "cascade_over_study_max": float(np.nanmax(r_full / r_study)) if fitted.any() else math.nan}
    if exact and "exact_radius" in full:
        status = np.asarray(full["exact_status"])
        r_exact = np.where(fitted, np.asarray(full["exact_radius"], dtype=np.float64), np.nan)
        solved = fitted & (status == 0)
        rec.update(exact=_median(r_exact) if solved.sum() == fitted.sum() else math.nan,
                   exact_solved=int(solved.sum()),
                   study_over_exact=_quantiles(r_study[solved] / r_exact[solved]),
                   cascade_over_exact=_quantiles(r_full[solved] / r_exact[solved]))
    try:
        rec["seconds"] = read_json(out / "check-time.json")["wall_time_s"]
    except (UserError, KeyError, TypeError):
        rec["seconds"] = None
    return rec


def _quantiles(r: np.ndarray) -> dict:
    if not r.size:
        return {}
    return {"median": median(r), "p90": quantile(r, 0.9), "max": float(r.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", help="a study's output folder (e.g. runs/law_digits) or run folders below it")
    ap.add_argument("--norm", default="linf", help="l2, linf or l1 (exact radii in linf and l1)")
    ap.add_argument("--n", type=int, default=20, help="first N training points of every run (default 20)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the runs to check (default 0)")
    ap.add_argument("--max-params", type=int, default=20000, help="check runs with at most this many parameters")
    ap.add_argument("--exact-time-limit", type=float, default=10.0, help="seconds per point for the exact solver")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    norm = norm_name(parse_norm(args.norm))
    seeds = {int(s) for s in args.seeds.split(",")}
    root = Path(args.study)
    rows = [r for r in collect_rows(find_runs([root]), norms=[norm])
            if r.get("params") and r["params"] <= args.max_params]
    metas = {r["run"]: read_json(Path(r["path"]) / "run.json") for r in rows}
    rows = [r for r in rows if metas[r["run"]].get("seed") in seeds]
    if not rows:
        raise UserError(f"no runs of seeds {sorted(seeds)} with at most {args.max_params} parameters under {root}")
    t0 = time.perf_counter()
    per_run = {}
    for i, r in enumerate(rows):
        run = Path(r["path"])
        per_run[r["run"]] = check_run(run, root / "check" / run.name, norm=norm, n=args.n,
                                      time_limit=args.exact_time_limit, seed=metas[r["run"]]["seed"])
        print(f"[{i + 1}/{len(rows)}] {r['run']}: {json.dumps(per_run[r['run']])}", flush=True)
    fits = []
    for label, members in comparable_groups(rows, "params"):
        members = [m for m in members if metas[m["run"]].get("interpolated")]
        fit = {"group": label, "runs": len(members)}
        for source in ("study", "cascade", "exact"):
            pts = [(m["params"], per_run[m["run"]].get(source)) for m in members]
            pts = [(p, v) for p, v in pts if v is not None and math.isfinite(v) and v > 0]
            if len({p for p, _ in pts}) >= 2:
                f = fit_power_law([p for p, _ in pts], [v for _, v in pts], bootstrap=args.bootstrap)
                fit[source] = {k: f[k] for k in ("exponent", "ci_low", "ci_high", "n")}
        fits.append(fit)
    out = {"norm": norm, "n": args.n, "seeds": sorted(seeds), "max_params": args.max_params,
           "exact_time_limit": args.exact_time_limit, "runs": per_run, "fits": fits,
           "wall_time_s": time.perf_counter() - t0}
    print()
    print("| group | runs | study attacks | default cascade | exact |")
    print("|---|---|---|---|---|")
    for f in fits:
        cells = []
        for source in ("study", "cascade", "exact"):
            g = f.get(source)
            cells.append(f"{g['exponent']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]"
                         if g and g["ci_low"] is not None else (f"{g['exponent']:+.3f}" if g else "–"))
        print(f"| {f['group']} | {f['runs']} | " + " | ".join(cells) + " |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
