"""CROWN on a convolutional network: the chunked implementation against the reference, same command.

The case of issue 17: a Fashion-MNIST CNN at capacity scale 2 (``models.cnn``: two stride-2 5x5
convolutions with 4 and 8 filters, a dense layer of 128 units; 52,506 parameters), certified L-inf
radii (``certify.certified_radii``, method ``crown``) of its first ``--points`` test points.

* ``new``: the default path: (point, neuron) pairs refined in chunks of ``certify.DEFAULT_CHUNK``
  (memory bounded by the chunk, not by the layer width squared), only neurons left unstable by the
  bounds already known, cheaper bounds (IBP, CROWN-IBP) tried first, and bounds computed at a radius
  that failed reused at the smaller radii of the bisection;
* ``reference``: ``chunk=None``, the earlier implementation: every neuron of a layer at once through
  an identity matrix.

Each runs in its own child process (so their peak resident memory is measured apart), with one
torch thread. After loading, the data set is dropped (the points are kept) and the kernel's peak-RSS
mark is reset (``/proc/self/clear_refs``), so the peak reported is that of certification, with
torch and the model resident. The parent prints wall and CPU time (CPU time is the fairer ratio on a shared machine), peak RSS, the ratios, and how the radii
compare point by point (the new ones must never be smaller).

Usage::

    python experiments/bench_certify_cnn.py --points 50 --json-out out/bench_certify_cnn.json

The model is trained once into ``--run`` (default ``out/bench-fashion-cnn2``: 2,000 training images,
30 full-batch epochs, seed 0) and reused afterwards.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = {"name": "fashion-mnist", "n": 2000, "n_test": 200, "seed": 0}
MODEL = {"family": "cnn", "width": 2}


def ensure_run(path: Path) -> None:
    from advrobust.train import TrainConfig, train_run

    if (path / "run.json").is_file() and (path / "model.pt").is_file():
        return
    train_run(path, data_kwargs=dict(DATA), model_spec=dict(MODEL),
              config=TrainConfig(epochs=30, mode="budget", seed=0, device="cpu"), command="bench_certify_cnn",
              progress=False)


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(impl: str, run: Path, points: int, out: Path) -> None:
    import numpy as np
    import torch

    from advrobust.certify import DEFAULT_CHUNK, certified_radii
    from advrobust.data import split
    from advrobust.runs import load_run

    torch.set_num_threads(1)
    r = load_run(run)
    x, y = split(r.data, "test")
    x, y, model = x[:points].clone(), y[:points].clone(), r.model
    del r
    gc.collect()
    # the peak of certification alone: reset the kernel's high-water mark (Linux) after loading
    reset = _reset_peak()
    before = _rss_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    radii = certified_radii(model, x, y, norm="linf", method="crown", chunk=DEFAULT_CHUNK if impl == "new" else None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out / f"radii-{impl}.npy", radii)
    (out / f"stats-{impl}.json").write_text(json.dumps({"impl": impl, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak,
                                                        "rss_before_mb": before, "points": points,
                                                        "chunk": DEFAULT_CHUNK if impl == "new" else None}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=50, help="test points certified (default 50)")
    ap.add_argument("--run", default="out/bench-fashion-cnn2", help="run directory of the model (trained if absent)")
    ap.add_argument("--json-out", default=None, help="also write the results as JSON here")
    ap.add_argument("--child", choices=("new", "reference"), help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    run = Path(args.run)
    if args.child:
        child(args.child, run, args.points, Path(args.scratch))
        return 0
    ensure_run(run)
    scratch = run / "bench-certify"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    stats = {}
    for impl in ("new", "reference"):
        subprocess.run([sys.executable, __file__, "--child", impl, "--run", str(run), "--points", str(args.points),
                        "--scratch", str(scratch)], check=True, env=env)
        stats[impl] = json.loads((scratch / f"stats-{impl}.json").read_text())
    import numpy as np

    new, ref = np.load(scratch / "radii-new.npy"), np.load(scratch / "radii-reference.npy")
    both = np.isfinite(new) & np.isfinite(ref) & (ref > 0)
    res = {
        "case": "fashion-mnist cnn scale 2 (52,506 params), Linf, CROWN, first test points",
        "points": args.points, "new": stats["new"], "reference": stats["reference"],
        "time_ratio_reference_over_new": stats["reference"]["wall_s"] / stats["new"]["wall_s"],
        "cpu_ratio_reference_over_new": stats["reference"]["cpu_s"] / stats["new"]["cpu_s"],
        "peak_rss_ratio_reference_over_new": stats["reference"]["peak_rss_mb"] / stats["new"]["peak_rss_mb"],
        "radii": {"new_smaller": int((new < ref).sum()), "equal": int((new == ref).sum()),
                  "new_larger": int((new > ref).sum()),
                  "median_new_over_reference": float(np.median(new[both] / ref[both])) if both.any() else None,
                  "median_radius_new": float(np.median(new)), "median_radius_reference": float(np.median(ref))},
    }
    for impl in ("new", "reference"):
        s = stats[impl]
        print(f"{impl:9s}: {s['wall_s']:7.1f} s wall, {s['cpu_s']:7.1f} s CPU, peak RSS during certification {s['peak_rss_mb']:6.0f} MB "
              f"(process size before it: {s['rss_before_mb']:.0f} MB, torch and the model included)")
    print(f"reference / new: wall time x{res['time_ratio_reference_over_new']:.1f}, CPU time "
          f"x{res['cpu_ratio_reference_over_new']:.1f}, peak RSS "
          f"x{res['peak_rss_ratio_reference_over_new']:.2f}")
    r = res["radii"]
    print(f"radii: {r['equal']} equal, {r['new_larger']} larger, {r['new_smaller']} smaller than the reference's; "
          f"median {r['median_radius_new']:.4g} (reference {r['median_radius_reference']:.4g})")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(res, indent=2))
    return 0 if r["new_smaller"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
