"""The quick study on a shared machine: its time with two busy neighbours against its quiet time.

On a 2-core machine, a sweep whose torch threads spin in OpenMP barriers loses most of its time
when other processes take the cores. This benchmark runs ``python -m advrobust.sweep SPEC`` under
several thread/worker policies, each twice in this one command: once alone and once beside
``--neighbours`` busy processes (each a single-threaded float32 matrix-multiply loop, started before
the sweep and killed after it), and reports the busy/quiet ratio per policy. The issue's target is a
ratio of at most 2 for the default policy.

Policies (``--policies``, comma-separated):

* ``default``: the sweep's defaults (whatever ``python -m advrobust.sweep SPEC`` does);
* ``w1t2``: ``--workers 1 --threads 2`` (one process with torch's usual 2 threads on 2 cores);
* ``w1t1``: ``--workers 1 --threads 1``;
* ``w2t1``: ``--workers 2 --threads 1``.

Usage::

    python experiments/bench_threads.py                       # quick spec, 2 neighbours, all policies
    python experiments/bench_threads.py --policies default,w1t2 --json-out threads.json

Every sweep writes a fresh temporary folder (no resume), so each timing is the whole study: training,
attacks, Lipschitz bounds, compare and the report. Quiet and busy runs of a policy are adjacent, so
slow drifts in the machine's load hit both alike; other load on the machine (``uptime``) is printed
with the results and makes both numbers larger.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {"default": [], "w1t2": ["--workers", "1", "--threads", "2"], "w1t1": ["--workers", "1", "--threads", "1"],
            "w2t1": ["--workers", "2", "--threads", "1"]}
NEIGHBOUR = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
             "while True:\n    a = torch.tanh(a @ a * 0.01)\n")


def time_sweep(spec: str, extra: list[str]) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "advrobust.sweep", spec, "--out", str(out / "s"), "--quiet", *extra],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


def with_neighbours(k: int, fn):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env) for _ in range(k)]
    try:
        time.sleep(2.0)  # let them reach their loops
        return fn()
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="experiments/quick.toml")
    ap.add_argument("--neighbours", type=int, default=2)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    names = args.policies.split(",")
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        ap.error(f"unknown policies {unknown}; use {', '.join(POLICIES)}")
    rows = []
    print(f"{os.cpu_count()} cores; load before: {os.getloadavg()[0]:.2f}", flush=True)
    for name in names:
        quiet = time_sweep(args.spec, POLICIES[name])
        busy = with_neighbours(args.neighbours, lambda: time_sweep(args.spec, POLICIES[name]))
        rows.append({"policy": name, "argv": POLICIES[name], "quiet_s": quiet, "busy_s": busy, "ratio": busy / quiet})
        print(f"{name:8s} quiet {quiet:6.1f} s   with {args.neighbours} busy neighbours {busy:6.1f} s   "
              f"ratio {busy / quiet:.2f}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"spec": args.spec, "neighbours": args.neighbours, "rows": rows},
                                                  indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
