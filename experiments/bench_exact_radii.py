"""How close the default cascade gets to the exact minimal radius, on memorising and ordinary MLPs.

Models (trained here with ``python -m advrobust.train`` into ``OUT/models``, reused when present):

* random-label sphere MLPs: d = 32, n = 500, 2 classes, one hidden layer of width 16, 64, 512,
  full-batch Adam to interpolation (or the epoch cap, as far as the width allows);
* digits MLPs: widths 8, 16, 32, 128 (64-w-10) and the two-hidden-layer 64-32-32-10;
* held out (``--models held-w64-s0,...``, not in the default list): random-label sphere MLPs of
  widths 64 and 256 trained with the default epoch cap (as ``python -m advrobust.train`` does for a
  new user, so not always to interpolation), seeds 0 to 2; the default cascade's constants were
  chosen on the models above, so these rows show how far they carry.

On the first ``--n`` training points of each model and each norm:

1. the cascade of ``--baseline`` (default: the cascade before the boundary attack was added,
   fmn/ddn/alma/fab/deepfool, fmn/fab/apgd-min/deepfool, fmn/alma/fab/apgd-min) and the current
   default cascade (``advrobust.evaluate.DEFAULT_CASCADES``), both timed in this process (after a
   warm-up on 4 points in each norm and an import of scipy's LP solver, which the first L1 or Linf
   polish would otherwise pay), in wall time and in this process's CPU time; the time ratio is the
   CPU time's, which other jobs on a shared machine disturb far less than the wall time;
2. exact radii (``advrobust.exact.exact_radii``: HiGHS MILP for Linf/L1, SCIP MIQP for L2) with
   ``--time-limit`` seconds per point (``--l2-time-limit`` and ``--l2-n`` points for L2, whose
   MIQP is far slower), cached in ``OUT/exact`` (delete to recompute);
3. per point, cascade radius / exact radius over the points solved to optimality: median, p90,
   max, success rate, and the time per point. Points stopped at the time limit are reported
   separately (their ratio to the solver's best verified point, an upper bound of the exact radius).

Usage::

    python experiments/bench_exact_radii.py --out runs/bench_exact_radii --json-out out.json
    python experiments/bench_exact_radii.py --models sphere-w64 --norms linf --n 20   # a quick look

The table in ``docs/attacks.md`` comes from the first command, run several times, and
``--table out1.json out2.json ...``, which prints it (radii and times from the first run, the range
of the time ratio over all of them).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.norms import INF  # noqa: E402
from advrobust.errors import UserError  # noqa: E402

from advrobust.norms import norm_name, parse_norm  # noqa: E402

from advrobust.cli._common import run_main  # noqa: E402

SPHERE = ["--dataset", "sphere", "--dim", "32", "--n", "500", "--classes", "2", "--labels", "random",
          "--model", "mlp", "--epochs", "20000"]
MODELS = {
    "sphere-w16": SPHERE + ["--width", "16"],
    "sphere-w64": SPHERE + ["--width", "64"],
    "sphere-w512": SPHERE + ["--width", "512"],
    "digits-w8": ["--dataset", "digits", "--model", "mlp", "--width", "8"],
    "digits-w16": ["--dataset", "digits", "--model", "mlp", "--width", "16"],
    "digits-w32": ["--dataset", "digits", "--model", "mlp", "--width", "32"],
    "digits-w128": ["--dataset", "digits", "--model", "mlp", "--width", "128"],
    "digits-32x32": ["--dataset", "digits", "--model", "mlp", "--width", "32", "--depth", "2"],
}
#: Held out: random-label sphere MLPs trained as a new user would (the default epoch cap, so not
#: always to interpolation), seeds the cascade's constants were not chosen on.
HELD_OUT = {
    "held-w64-s0": SPHERE[:-2] + ["--width", "64"],
    "held-w64-s1": SPHERE[:-2] + ["--width", "64", "--seed", "1"],
    "held-w256-s1": SPHERE[:-2] + ["--width", "256", "--seed", "1"],
    "held-w256-s2": SPHERE[:-2] + ["--width", "256", "--seed", "2"],
}
MODELS.update(HELD_OUT)
BASELINE = {2.0: ("fmn", "ddn", "alma", "fab", "deepfool"), INF: ("fmn", "fab", "apgd-min", "deepfool"),
            1.0: ("fmn", "alma", "fab", "apgd-min")}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench_exact_radii", help="models and cached exact radii")
    ap.add_argument("--models", default=",".join(m for m in MODELS if m not in HELD_OUT),
                    help=f"comma-separated, from {', '.join(MODELS)} (default: all but the held-out ones)")
    ap.add_argument("--norms", default="l2,linf,l1")
    ap.add_argument("--n", type=int, default=100, help="training points per model (Linf, L1)")
    ap.add_argument("--l2-n", type=int, default=30, help="training points per model for L2")
    ap.add_argument("--time-limit", type=float, default=20.0, help="exact solver seconds per point (Linf, L1)")
    ap.add_argument("--l2-time-limit", type=float, default=10.0, help="exact solver seconds per point (L2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline cascade")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--table", nargs="+", metavar="JSON", default=None,
                    help="print the Markdown table of docs/attacks.md from --json-out files and exit: radii and "
                         "times from the first, the CPU time ratio's range over all of them")
    return ap


def _commit() -> str | None:
    """The checkout's short commit, with ``+changes`` when tracked files differ from it; None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


_ROW_KEYS = ("model", "norm", "p", "train_acc", "n", "new", "new_ms_per_point", "new_cpu_ms_per_point")
_STAT_KEYS = ("optimal", "median", "p90", "max", "time_limit_points", "time_limit_max_vs_incumbent")


def table(paths: list[str]) -> str:
    """The Markdown table of docs/attacks.md from one or more --json-out files (same models and norms)."""
    runs, keys = [], []
    for path in paths:
        try:
            rows = json.loads(Path(path).read_text())["rows"]
            missing = sorted({k for r in rows for k in _ROW_KEYS if k not in r}
                             | {f"new.{k}" for r in rows for k in _STAT_KEYS if k not in r.get("new", {})})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"cannot read benchmark rows from {path} ({type(e).__name__}: {e}); pass files written "
                            "by --json-out") from None
        if missing:
            raise UserError(f"cannot read benchmark rows from {path} (no {', '.join(missing)}); pass files written "
                            "by --json-out")
        runs.append(rows)
        keys.append([(r["model"], r["norm"]) for r in rows])
    for path, k in zip(paths[1:], keys[1:]):
        if k != keys[0]:
            raise UserError(f"{path} has other models or norms than {paths[0]}; tabulate runs of the same command")
    tri = (lambda d: f"{d['median']:.5f} · {d['p90']:.5f} · {d['max']:.4f}")
    lines = ["| model (p, train acc) | norm | points exact | cascade median · p90 · max | before: median · p90 · max "
             "| ms/point wall (before) | ms/point CPU (before) | time ratio (CPU; range over runs) | at time limit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for j, r in enumerate(runs[0]):
        ratios = [rows[j].get("time_ratio", math.nan) for rows in runs]
        rng = f"{ratios[0]:.2f}" + (f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else "")
        lim = r["new"]["time_limit_points"]
        at = f"{lim} (max {r['new']['time_limit_max_vs_incumbent']:.4f} of incumbent)" if lim else "0"
        base = r.get("baseline")
        lines.append(f"| {r['model']} ({r['p']}, {r['train_acc']:.3f}) | {r['norm']} | {r['new']['optimal']}/{r['n']} | "
                     f"{tri(r['new'])} | {tri(base) if base else '-'} | {r['new_ms_per_point']:.0f} "
                     f"({r.get('baseline_ms_per_point', math.nan):.0f}) | {r['new_cpu_ms_per_point']:.1f} "
                     f"({r.get('baseline_cpu_ms_per_point', math.nan):.1f}) | {rng} | {at} |")
    return "\n".join(lines)


def train_model(name: str, out: Path):
    from advrobust.runs import load_run

    run_dir = out / "models" / name
    if not (run_dir / "model.pt").is_file():
        env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
        cmd = [sys.executable, "-m", "advrobust.train", *MODELS[name], "--out", str(run_dir), "--quiet", "--overwrite"]
        subprocess.run(cmd, check=True, env=env)
    return load_run(run_dir)


def cascade(model, x, y, p, names, pool):
    """The cascade's result, its wall time and its CPU time (this process) per point."""
    from advrobust.evaluate import make_attack, run_cascade

    t0, c0 = time.perf_counter(), time.process_time()
    res = run_cascade(model, x, y, norm=p, attacks=[(a, make_attack(a, norm=p)) for a in names], random_checks=0,
                      pool=pool)
    return res, (time.perf_counter() - t0) / len(y), (time.process_time() - c0) / len(y)


def exact(model, x, y, p, upper, time_limit, cache: Path):
    from advrobust.exact import exact_radii
    from advrobust.runs import atomic_save_npz

    if cache.is_file():
        z = np.load(cache)
        if len(z["radius"]) == len(y) and float(z["time_limit"]) == time_limit:
            return {k: z[k] for k in ("radius", "lower", "status")}, float(z["seconds"])
    t0 = time.perf_counter()
    e = exact_radii(model, x, y, norm=p, upper=upper, time_limit=time_limit)
    dt = (time.perf_counter() - t0) / len(y)
    atomic_save_npz(cache, radius=e["radius"], lower=e["lower"], status=e["status"], time_limit=np.float64(time_limit),
                    seconds=np.float64(dt))
    return {k: e[k] for k in ("radius", "lower", "status")}, dt


def ratios(radius, ex):
    ok = ex["status"] == 0
    fin = ok & np.isfinite(ex["radius"]) & (ex["radius"] > 0)
    r = radius[fin] / ex["radius"][fin]
    lim = (ex["status"] == 1) & np.isfinite(ex["radius"]) & (ex["radius"] > 0)
    rl = radius[lim] / ex["radius"][lim]
    q = (lambda a, f: float(f(a)) if a.size else math.nan)
    return {"optimal": int(fin.sum()), "median": q(r, np.median), "p90": q(r, lambda a: np.quantile(a, 0.9)),
            "max": q(r, np.max), "over_1pct": int((r > 1.01).sum()), "success": float(np.isfinite(radius[ok]).mean()) if ok.any() else math.nan,
            "time_limit_points": int(lim.sum()), "time_limit_max_vs_incumbent": q(rl, np.max)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        if m not in MODELS:
            raise UserError(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    norms = [parse_norm(t) for t in args.norms.split(",") if t.strip()]
    out = Path(args.out)
    from advrobust.data import split
    from advrobust.evaluate import DEFAULT_CASCADES

    rows, warm = [], set()
    for m in names:
        run = train_model(m, out)
        model = run.model.eval()
        xtr, ytr = split(run.data, "train")
        with torch.no_grad():
            train_acc = float((model(xtr).argmax(1) == ytr).float().mean())
        for p in norms:
            n = args.l2_n if p == 2 else args.n
            x, y = xtr[:n], ytr[:n]
            if p not in warm:  # warm-up per norm: one-time imports and allocations are not per-point costs
                warm.add(p)
                # the boundary attack's L1/Linf polish imports scipy's LP solver on first use (about
                # 0.5 s of CPU, 5 ms per point of a 100-point row); 4 warm-up points may not reach it
                import scipy.optimize  # noqa: F401
                cascade(model, x[:4], y[:4], p, DEFAULT_CASCADES[p], xtr)
                cascade(model, x[:4], y[:4], p, BASELINE[p], xtr)
            new, t_new, c_new = cascade(model, x, y, p, DEFAULT_CASCADES[p], xtr)
            base, t_base, c_base = (None, math.nan, math.nan) if args.no_baseline else cascade(model, x, y, p, BASELINE[p], xtr)
            upper = new.best_radius if base is None else np.minimum(new.best_radius, base.best_radius)
            tl = args.l2_time_limit if p == 2 else args.time_limit
            ex, t_ex = exact(model, x, y, p, upper, tl, out / "exact" / f"{m}-{norm_name(p)}-n{n}.npz")
            row = {"model": m, "p": run.meta.get("params"), "train_acc": train_acc, "norm": norm_name(p), "n": n,
                   "exact_s_per_point": t_ex, "new": ratios(new.best_radius, ex), "new_ms_per_point": 1e3 * t_new,
                   "new_cpu_ms_per_point": 1e3 * c_new}
            if base is not None:
                row["baseline"] = ratios(base.best_radius, ex)
                row["baseline_ms_per_point"] = 1e3 * t_base
                row["baseline_cpu_ms_per_point"] = 1e3 * c_base
                row["time_ratio_wall"] = t_new / t_base
                row["time_ratio"] = c_new / c_base  # CPU time: less sensitive to other jobs on a shared machine
            wins = {a: int((new.best_attack == k).sum()) for k, a in enumerate(new.attacks)}
            row["wins"] = wins
            rows.append(row)
            b = row.get("baseline", {})
            print(f"{m:13s} {norm_name(p):4s} acc {train_acc:.3f} optimal {row['new']['optimal']:3d}/{n} | "
                  f"new median {row['new']['median']:.5f} p90 {row['new']['p90']:.5f} max {row['new']['max']:.4f} "
                  f"{row['new_ms_per_point']:.0f} ms/pt | base p90 {b.get('p90', math.nan):.4f} max {b.get('max', math.nan):.4f} "
                  f"{row.get('baseline_ms_per_point', math.nan):.0f} ms/pt | time x{row.get('time_ratio', math.nan):.2f} "
                  f"(cpu; wall x{row.get('time_ratio_wall', math.nan):.2f}) "
                  f"| at limit {row['new']['time_limit_points']} (max vs incumbent {row['new']['time_limit_max_vs_incumbent']:.4f})",
                  flush=True)
    from advrobust.runs import device_info, versions

    result = {"rows": rows, "args": vars(args), "torch_threads": torch.get_num_threads(),
              "provenance": {**versions(), **device_info("cpu"), "commit": _commit(), "cpus": os.cpu_count(),
                             "load_average_start": load_start, "load_average_end": os.getloadavg()}}
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
