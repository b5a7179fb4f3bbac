"""``python -m advrobust.compare RUN_DIRS...``: parse the flags, call :func:`advrobust.compare.compare`, print."""
from __future__ import annotations

import argparse
import math
from typing import Sequence

from advrobust import compare as lib
from advrobust.cli._common import argument_parser, print_json, run_main
from advrobust.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.compare",
                         description="Compare runs: one row per model, and the law-of-robustness fit.")
    ap.add_argument("runs", nargs="+", help="run directories or folders holding them")
    ap.add_argument("--sort", default=None, help="column to sort by (prefix - for descending)")
    ap.add_argument("--filter", action="append", default=[], metavar="EXPR",
                    help="keep rows where COLUMN OP VALUE holds, e.g. dataset=digits, params>1000 (repeatable)")
    ap.add_argument("--format", default="table", choices=("table", "markdown", "csv", "json"),
                    help="output format (default table; csv holds every column at full precision)")
    ap.add_argument("--columns", default=None, help="comma-separated columns to show")
    ap.add_argument("--eps", default=None, help="robust-accuracy radii, comma-separated (e.g. 0.1,0.5)")
    ap.add_argument("--norm", action="append", default=None, help="norm(s) to report (default: all attacked)")
    ap.add_argument("--fit", action=argparse.BooleanOptionalAction, default=True,
                    help="fit the law when runs differ in p, n or d (default on)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the law fits' intervals (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    ap.add_argument("--pair", nargs=2, metavar=("A", "B"), default=None,
                    help="paired per-sample radius comparison of two runs (ratio B/A, Wilcoxon test)")
    ap.add_argument("--split", default="test", choices=lib.SPLITS, help="split for --pair (default test)")
    ap.add_argument("--json", action="store_true", help="print rows, fits and pairing as JSON")
    return ap


def _eps(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        eps = [float(e) for e in text.split(",") if e.strip()]
    except ValueError:
        raise UserError(f"--eps must be comma-separated numbers, got {text!r}") from None
    if any(not math.isfinite(e) or e < 0 for e in eps):
        raise UserError("--eps values must be finite and >= 0")
    return eps


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    eps = _eps(args.eps)
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0 resamples (0: no intervals), got {args.bootstrap}")
    rows = lib.compare(args.runs, norms=args.norm, eps=eps, filters=args.filter, sort=args.sort)
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    fits = lib.law_fits(rows, norms=lib.row_norms(rows), bootstrap=args.bootstrap, seed=args.seed) \
        if args.fit and rows else []
    pair = lib.paired(args.pair[0], args.pair[1], norm=(args.norm or ["l2"])[0], split=args.split) if args.pair else None
    if args.json:
        print_json({"rows": rows, "fits": fits, "paired": pair})
        return 0
    print(lib.format_table(rows, fmt=args.format, columns=columns), end="")
    if args.format in ("table", "markdown"):
        print(lib.format_fits(fits), end="")
        if pair:
            print(lib.format_pair(pair), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
