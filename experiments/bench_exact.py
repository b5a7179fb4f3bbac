"""Exact minimal radii on digits MLPs: solver cost, and how close the attacks get.

For each MLP (64-w-10, trained here to 100% training accuracy with full-batch Adam) and each norm,
on the first ``--n`` training points:

1. the attack cascade (``advrobust.evaluate.run_cascade`` with ``DEFAULT_CASCADES``) at the
   largest ``--steps`` gives verified radii, which bound the MILP's search ball;
2. ``advrobust.exact.exact_radii`` (HiGHS MILP for Linf/L1, SCIP MIQP for L2) with
   ``--time-limit`` seconds per sample: time per sample and fraction solved to optimality;
3. the cascade at every ``--steps`` value: median ratio best-attack radius / exact radius over
   the samples solved to optimality (1 = the attacks find the optimum);
4. the CROWN certified radius: median ratio certified / exact;
5. ``check_bracket(certified, exact, attack)``: any violation is a bug and is printed.

Usage::

    python experiments/bench_exact.py --n 20 --time-limit 10 --json-out out/bench_exact.json
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advrobust.norms import norm_name, parse_norm  # noqa: E402

from advrobust.cli._common import print_json, run_main  # noqa: E402
from advrobust.certify import certified_radii, check_bracket  # noqa: E402
from advrobust.exact import exact_radii  # noqa: E402


def train_mlp(x: torch.Tensor, y: torch.Tensor, width: int, *, seed: int, epochs: int = 3000) -> tuple[nn.Sequential, float]:
    """Full-batch Adam on cross-entropy until every training point is fit (or ``epochs``)."""
    torch.manual_seed(seed)
    d = x[0].numel()
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(epochs):
        opt.zero_grad()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        if epoch % 100 == 99 and (logits.argmax(1) == y).all():
            break
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    return model, acc


def cascade(model, x, y, p, steps, seed):
    from advrobust.evaluate import DEFAULT_CASCADES, make_attack, run_cascade

    attacks = [(name, make_attack(name, norm=p, steps=steps, seed=seed)) for name in DEFAULT_CASCADES[p]]
    t0 = time.perf_counter()
    res = run_cascade(model, x, y, norm=p, attacks=attacks, seed=seed, random_checks=0)
    return res.best_radius, time.perf_counter() - t0, res.attacks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="training points per model")
    ap.add_argument("--widths", default="32,64", help="hidden widths, comma-separated")
    ap.add_argument("--norms", default="linf,l1,l2")
    ap.add_argument("--steps", default="100,1000", help="attack steps to compare, comma-separated")
    ap.add_argument("--time-limit", type=float, default=10.0, help="MILP seconds per sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the record as JSON")
    ap.add_argument("--json-out", default=None, help="also write the record to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from advrobust.data import load_dataset
    from advrobust.runs import atomic_write_json, versions

    data = load_dataset("digits", seed=args.seed)
    x_all, y_all = data.x_train, data.y_train
    steps_list = [int(s) for s in args.steps.split(",")]
    rows = []
    for width in (int(w) for w in args.widths.split(",")):
        model, acc = train_mlp(x_all, y_all, width, seed=args.seed)
        x, y = x_all[: args.n], y_all[: args.n]
        for p in (parse_norm(s) for s in args.norms.split(",")):
            upper, t_att, names = cascade(model, x, y, p, max(steps_list), args.seed)
            t0 = time.perf_counter()
            ex = exact_radii(model, x, y, norm=p, upper=upper, time_limit=args.time_limit)
            t_exact = (time.perf_counter() - t0) / len(x)
            t0 = time.perf_counter()
            cert = certified_radii(model, x, y, norm=p, method="crown")
            t_cert = (time.perf_counter() - t0) / len(x)
            opt = ex["status"] == 0
            ok = opt & np.isfinite(ex["radius"]) & (ex["radius"] > 0)
            row = {"model": f"64-{width}-10", "params": sum(q.numel() for q in model.parameters()),
                   "train_acc": acc, "norm": norm_name(p), "n": len(x),
                   "exact_s_per_sample": t_exact, "optimal_frac": float(opt.mean()),
                   "status_counts": {int(k): int(v) for k, v in zip(*np.unique(ex["status"], return_counts=True))},
                   "median_exact": float(np.median(ex["radius"][ok])) if ok.any() else math.nan,
                   "certified_s_per_sample": t_cert,
                   "median_cert_over_exact": float(np.median(cert[ok] / ex["radius"][ok])) if ok.any() else math.nan,
                   "attacks": names}
            for steps in steps_list:
                att = upper if steps == max(steps_list) else cascade(model, x, y, p, steps, args.seed)[0]
                if steps != max(steps_list):
                    att_time = None
                else:
                    att_time = t_att / len(x)
                row[f"median_attack_over_exact@{steps}"] = float(np.median(att[ok] / ex["radius"][ok])) if ok.any() else math.nan
                row[f"max_attack_over_exact@{steps}"] = float(np.max(att[ok] / ex["radius"][ok])) if ok.any() else math.nan
                if att_time is not None:
                    row[f"attack_s_per_sample@{steps}"] = att_time
                viol = check_bracket(cert, ex["radius"], att, rtol=2e-3)
                row[f"violations@{steps}"] = len(viol)
                for v in viol:
                    print(f"BRACKET VIOLATION {row['model']} {row['norm']} steps={steps}: {v['message']}", file=sys.stderr)
            rows.append(row)
            print(f"{row['model']:>9} {row['norm']:>4}  exact {t_exact:6.2f} s/sample  optimal {row['optimal_frac']:.2f}  "
                  + "  ".join(f"attack/exact@{s} {row[f'median_attack_over_exact@{s}']:.4f}" for s in steps_list)
                  + f"  cert/exact {row['median_cert_over_exact']:.3f}", file=sys.stderr, flush=True)
    record = {"bench": "exact", "n": args.n, "time_limit_s": args.time_limit, "seed": args.seed,
              "threads": args.threads, "rows": rows, "versions": versions(), "command": " ".join(sys.argv)}
    if args.json_out:
        atomic_write_json(args.json_out, record)
    if args.json:
        print_json(record)
    else:
        head = ["model", "norm", "exact s/sample", "optimal", *[f"attack/exact @{s}" for s in steps_list], "cert/exact"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            cells = [r["model"], r["norm"], f"{r['exact_s_per_sample']:.2f}", f"{r['optimal_frac']:.2f}",
                     *[f"{r[f'median_attack_over_exact@{s}']:.4f}" for s in steps_list], f"{r['median_cert_over_exact']:.3f}"]
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
