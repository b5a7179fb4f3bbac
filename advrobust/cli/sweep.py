"""``python -m advrobust.sweep SPEC``: a whole study from a TOML spec; the library is
:func:`advrobust.sweep.run_sweep` (spec format in :mod:`advrobust.sweep`)."""
from __future__ import annotations

import argparse
from typing import Sequence

from .. import sweep as sweep_lib
from ..errors import UserError
from ..sweep import DEFAULT_THREADS, run_sweep
from ._common import argument_parser, print_json, run_main


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.sweep", description=sweep_lib.__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", help="experiment spec (TOML), e.g. experiments/quick.toml")
    ap.add_argument("--out", help="output folder (default runs/<spec name>)")
    ap.add_argument("--workers", type=int, default=1, help="local processes running runs in parallel (default 1)")
    ap.add_argument("--scheduler", help="address of an existing Dask distributed scheduler, e.g. tcp://host:8786")
    ap.add_argument("--threads", type=int,
                    help=f"torch threads per run (default {DEFAULT_THREADS}: more threads spin when other "
                         "processes share the cores; use --workers to use more cores)")
    ap.add_argument("--device", help="device for every stage (cpu, cuda, auto)")
    ap.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                    help="write the report at the end (default: the spec's [report] enabled, else yes)")
    ap.add_argument("--reduced", action="store_true",
                    help="run a reduced version of the study (2 seeds, at most 3 widths and 2 values of every other "
                         "axis, 8 attacked points, short training) to check its pipeline and outputs in about a "
                         "minute; its numbers are not the study's results")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--json", action="store_true", help="print the sweep record as JSON")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advrobust.sweep``; see ``--help``."""
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise UserError(f"--workers must be a positive integer, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be a positive integer, got {args.threads}")
    if args.scheduler and args.workers > 1:
        raise UserError("use either --workers (local processes) or --scheduler (a Dask cluster), not both")
    rec = run_sweep(args.spec, out=args.out, workers=args.workers, scheduler=args.scheduler, threads=args.threads,
                    device=args.device, report=args.report, progress=not args.quiet, reduced=args.reduced)
    if args.json:
        print_json(rec)
    else:
        print(rec["table"])
        print(f"{len(rec['runs'])} runs in {rec['out']} ({rec['wall_time_s']:.0f} s); "
              f"table: {rec['compare']}" + (f"; report: {rec['report']}/report.html" if rec["report"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
