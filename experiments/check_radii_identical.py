"""Check that a change leaves every radius bit-identical: dump the results at one commit, compare at another.

    python experiments/check_radii_identical.py dump RUNS_DIR before.npz     # at the old commit
    python experiments/check_radii_identical.py dump RUNS_DIR after.npz      # at the new one
    python experiments/check_radii_identical.py compare before.npz after.npz

``RUNS_DIR`` holds run directories (``python -m advrobust.train --out RUNS_DIR/<name>``; the attack
benchmark's models, say). For each run, on its first ``--n`` (30) training points and each norm
(l1, l2, linf), ``dump`` records with one torch thread and fixed seeds:

* every registered attack of ``attacks.ATTACKS`` but ``boundary`` (which the cascade runs), untargeted
  and targeted at label + 1, plus variants that reach the other code paths (PGD and APGD restarts,
  which use the rival classes and pair losses; APGD's DLR loss; PGD without early stopping; FAB
  restarts; DeepFool over all classes); budget attacks at eps 2 (L1), 0.5 (L2), 0.05 (Linf);
* the default cascade, ``advrobust.radii(model, x, y, norm=...)``: radii, points, winners, and the
  per-attack radii;
* the certified radii of every method of ``advrobust.certify.METHODS``;
* ``advrobust.lipschitz.upper_bounds`` and a small ``estimate_lipschitz`` (20 ascent steps, 32
  segments, 64 points);
* exact radii (``advrobust.exact.exact_radii``, 20 s per point) of the first 5 points, for the runs
  named in ``--exact`` (small MLPs).

``compare`` checks every array for the same dtype, shape and bytes. Wall times are skipped, and so are
the exact radii of a run and norm where a solver stopped at its time limit in either dump (status 1:
what it returns then depends on the machine's speed).

Run from the repository root of the commit under test (the script imports the ``advrobust`` and
``attacks`` beside it). A dump of the 8 benchmark models takes about 7 minutes on a shared 2-core CPU.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import advrobust  # noqa: E402
from advrobust import lipschitz  # noqa: E402
from advrobust.certify import METHODS, certified_radii  # noqa: E402
from advrobust.exact import exact_radii  # noqa: E402
from advrobust.runs import load_run  # noqa: E402
from attacks import ATTACKS  # noqa: E402
from attacks.norms import NORMS  # noqa: E402

BUDGET = {1.0: 2.0, 2.0: 0.5, math.inf: 0.05}
VARIANTS = {"pgd": [dict(restarts=3), dict(early_stop=False, restarts=2)],
            "apgd": [dict(loss="dlr"), dict(restarts=3), dict(loss="dlr", restarts=3)],
            "fab": [dict(restarts=2)], "deepfool": [dict(candidates=None)]}


def _attacks(out: dict, key: str, model, x, y, classes: int, p: float) -> None:
    for name, info in ATTACKS.items():
        if name == "boundary" or not info.supports(p):
            continue
        kw = {"eps": BUDGET[p]} if info.kind == "budget" else {}
        for targeted in (False, True):
            labels = (y + 1) % classes if targeted else y
            out[f"{key}/{name}/{'t' if targeted else 'u'}"] = info.fn(model, x, labels, norm=p, targeted=targeted,
                                                                    **kw).numpy()
        for i, extra in enumerate(VARIANTS.get(name, [])):
            out[f"{key}/{name}/v{i}"] = info.fn(model, x, y, norm=p, **kw, **extra).numpy()


def dump(runs_dir: Path, dest: Path, n: int, exact_runs: set[str]) -> int:
    torch.set_num_threads(1)
    out: dict[str, np.ndarray] = {}
    t0 = time.time()
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        run = load_run(run_dir)
        model = run.model.eval()
        x, y = run.data.x_train[:n], run.data.y_train[:n]
        for name, p in NORMS.items():
            key = f"{run_dir.name}/{name}"
            torch.manual_seed(0)
            _attacks(out, key, model, x, y, int(run.data.classes), p)
            r = advrobust.radii(model, x, y, norm=name)
            out[f"{key}/cascade/radius"] = r.radius
            out[f"{key}/cascade/adv"] = np.asarray(r.adv)
            out[f"{key}/cascade/attack"] = np.array([str(a) for a in r.attack])
            for attack, radius in r.cascade.radius.items():
                out[f"{key}/cascade/per/{attack}"] = np.asarray(radius)
            for m in METHODS:
                out[f"{key}/certify/{m}"] = np.asarray(certified_radii(model, x, y, norm=p, method=m))
            for k, v in sorted(lipschitz.upper_bounds(model, run.data.input_shape, norm=p).items()):
                if isinstance(v, (int, float)):
                    out[f"{key}/lipub/{k}"] = np.asarray(v)
            est = lipschitz.estimate_lipschitz(model, run.data.x_train[:64], run.data.y_train[:64], norm=p,
                                               ascent_steps=20, segments=32)
            for k, v in sorted(est.items()):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{key}/lipest/{k}"] = np.asarray(v)
            if run_dir.name in exact_runs:
                ex = exact_radii(model, x[:5], y[:5], norm=p, upper=r.radius[:5], time_limit=20)
                for k, v in ex.items():
                    out[f"{key}/exact/{k}"] = np.asarray(v)
        print(f"{run_dir.name}: {time.time() - t0:.0f} s", flush=True)
    np.savez(dest, **out)
    print(f"{len(out)} arrays in {dest}")
    return 0


def compare(a_path: Path, b_path: Path) -> int:
    a, b = np.load(a_path), np.load(b_path)
    bad = compared = skipped = 0
    for k in sorted(set(a.files) | set(b.files)):
        if k.endswith("wall_time_s"):
            skipped += 1
            continue
        if k not in a.files or k not in b.files:
            print(f"only in {'the first' if k in a.files else 'the second'}: {k}")
            bad += 1
            continue
        if "/exact/" in k:
            status = k.rsplit("/", 1)[0] + "/status"
            if (a[status] == 1).any() or (b[status] == 1).any():  # a solver stopped by its wall-clock limit
                skipped += 1
                continue
        x, y = a[k], b[k]
        compared += 1
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            bad += 1
            print(f"differs: {k}")
    print(f"{compared} arrays compared bit for bit ({skipped} wall times or time-limited exact runs skipped), "
          f"{bad} differ")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="run everything and save the results")
    d.add_argument("runs_dir", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--n", type=int, default=30, help="training points per run")
    d.add_argument("--exact", default="digits-w8,sphere-w16", help="runs whose exact radii are computed")
    c = sub.add_parser("compare", help="compare two dumps bit for bit")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        return dump(args.runs_dir, args.out, args.n, set(filter(None, args.exact.split(","))))
    return compare(args.a, args.b)


if __name__ == "__main__":
    raise SystemExit(main())
