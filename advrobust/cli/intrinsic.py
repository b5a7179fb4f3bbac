"""``python -m advrobust.intrinsic RUN_DIRS...``: estimate and record the intrinsic dimension of each
run's training inputs in ``intrinsic.json``, for runs trained before ``run.json`` held it; the
library is :func:`advrobust.intrinsic.record_runs`."""
from __future__ import annotations

import argparse
from typing import Sequence

from ..intrinsic import DEFAULT_K, record_runs
from ._common import argument_parser, print_json, run_main


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.intrinsic",
                         description="Intrinsic dimension (Levina-Bickel MLE and two-NN) of each run's training "
                                     "inputs, written to intrinsic.json in the run directory.")
    ap.add_argument("runs", nargs="+", help="run directories or folders holding them")
    ap.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours of the MLE (default {DEFAULT_K})")
    ap.add_argument("--json", action="store_true", help="print the records as JSON")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advrobust.intrinsic``; see ``--help``."""
    args = build_parser().parse_args(argv)
    out = record_runs(args.runs, k=args.k)
    if args.json:
        print_json(out)
    else:
        for r in out:
            if r.get("error"):
                print(f"{r['run']}: no estimate ({r['error']})")
                continue
            known = "" if r["known"] is None else f"; exact {r['known']} (synthetic)"
            print(f"{r['run']}: MLE {r['mle']:.2f}, two-NN {r['two_nn']:.2f} in {r['ambient']} coordinates "
                  f"({r['points']} distinct points{known})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
