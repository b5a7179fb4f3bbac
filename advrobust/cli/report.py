"""``python -m advrobust.report RUN_DIRS... --out DIR``: parse the flags, build a
:class:`~advrobust.report.ReportConfig`, call :func:`advrobust.report.build_report`, print."""
from __future__ import annotations

import argparse
from typing import Sequence

from advrobust.cli._common import argument_parser, print_json, run_main
from advrobust.report import ReportConfig, build_report


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.report",
                         description="Build a self-contained HTML + Markdown report (with PNG/PDF figures) "
                                     "over run directories.")
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding them")
    ap.add_argument("--out", required=True, help="output folder for report.html, report.md and the figures")
    ap.add_argument("--norm", action="append", default=None,
                    help="norm to show: l1, l2 or linf; repeatable (default: every norm with attack results)")
    ap.add_argument("--title", default=None, help="report title")
    ap.add_argument("--samples", type=int, default=3, help="gallery samples per model (0: no gallery)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the fits' intervals")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    ap.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = ReportConfig(norms=tuple(args.norm) if args.norm else None, title=args.title, samples=args.samples,
                          bootstrap=args.bootstrap, seed=args.seed, progress=not args.quiet)
    res = build_report(args.run_dirs, args.out, config)
    if args.json:
        print_json(res)
    else:
        print(f"wrote {res['html']} and {res['markdown']} ({len(res['figures'])} figures, "
              f"{len(res['missing'])} missing pieces, {len(res['flags'])} flags)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
