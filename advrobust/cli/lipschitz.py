"""``python -m advrobust.lipschitz``: Lipschitz lower and upper estimates of a run; the library is
:func:`advrobust.lipschitz.lipschitz_run` with a :class:`advrobust.lipschitz.LipschitzConfig`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..lipschitz import LipschitzConfig, lipschitz_run
from ._common import argument_parser, print_json, run_main


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.lipschitz",
                                 description="Lower and upper Lipschitz estimates of a run's model; writes "
                                             "lipschitz.json in the run directory.")
    ap.add_argument("run_dir", help="run directory written by python -m advrobust.train")
    ap.add_argument("--norm", default="l2", help="input norm of the margin estimates: l1, l2 or linf (default l2)")
    ap.add_argument("--ascent-steps", type=int, default=100,
                    help="hill-climbing steps on the local gradient norm for the lower bound (0: none; default 100)")
    ap.add_argument("--ascent-points", type=int, default=16,
                    help="points the hill climbing starts from: those with the largest gradient norm (default 16)")
    ap.add_argument("--segments", type=int, default=256,
                    help="random pairs of training points whose segments are sampled for the lower bound (default 256)")
    ap.add_argument("--max-points", type=int, default=None,
                    help="use only the first N training points (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the segments' random pairs (default 0)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    ap.add_argument("--no-write", action="store_true", help="do not write lipschitz.json")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress bar (--json implies it)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advrobust.lipschitz``; see ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    config = LipschitzConfig(norm=args.norm, ascent_steps=args.ascent_steps, ascent_points=args.ascent_points,
                             segments=args.segments, max_points=args.max_points, seed=args.seed, device=args.device)
    est = lipschitz_run(args.run_dir, config, write=not args.no_write, progress=not (args.quiet or args.json),
                        command="python -m advrobust.lipschitz " + " ".join(argv))
    if args.json:
        print_json(est)
    else:
        m, lg = est["margin"], est["logit"]
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        print(f"{args.run_dir}: norm {est['norm']}, {est['n_points']} training points, "
              f"input scale {est['input_scale']:.4g}")
        print(f"  margin Lipschitz  lower {fmt(m['lower'])} ({m['lower_method']})  upper {fmt(m['upper'])}")
        print(f"  logit  Lipschitz  lower {fmt(lg['lower'])} ({lg['lower_method']})  upper {fmt(lg['upper'])} (l2->l2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
