"""``python -m advrobust.attack``: minimal adversarial radii of a run (or a model file); the library
is :func:`advrobust.attack.attack_run` with an :class:`advrobust.attack.AttackConfig`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import attack as attack_lib
from ..attack import AttackConfig, add_bounds, attack_run, format_table
from ..errors import UserError
from ._common import argument_parser, print_json, run_main


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.attack", description=attack_lib.__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", help="run directory written by python -m advrobust.train")
    ap.add_argument("--model", help="instead of a run dir: an advrobust checkpoint (.pt), a TorchScript file "
                                    "(.ts/.jit/.torchscript) or file.py:factory")
    ap.add_argument("--state-dict", help="state dict (torch.save of a dict of tensors) for --model file.py:factory")
    ap.add_argument("--dataset", help="data set name for --model (see advrobust.data.DATASETS)")
    ap.add_argument("--out", help="folder for the result files (default: the run dir, or the model's folder)")
    ap.add_argument("--split", choices=("train", "test"), default="train",
                    help="which split to attack (default train: the law of robustness is about fitted points)")
    ap.add_argument("--n", type=int, default=None, help="attack the first N samples of the split (default all)")
    ap.add_argument("--norm", action="append", default=None, help="l1, l2 or linf; repeatable (default l2)")
    ap.add_argument("--attacks", default=None,
                    help="comma-separated attack names (default: the cascade for the norm); foolbox:ClassName allowed")
    ap.add_argument("--starts", default=None,
                    help="adversarial starting points for the boundary attack: a .npy array (N, ...) or (N, S, ...) "
                         "with one row per attacked point, or an attack-*.npz from an earlier run (its best points, "
                         "'adv'); rows equal to the input mean none")
    ap.add_argument("--steps", type=int, default=None,
                    help="iterations per attack (default: each attack's own default, see docs/attacks.md)")
    ap.add_argument("--batch-size", type=int, default=256, help="points per attack call (default 256)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts (default 0)")
    ap.add_argument("--eps", default=None, help="comma-separated radii for robust accuracy (default per norm)")
    ap.add_argument("--certify", choices=("ibp", "crown", "crown-ibp"), default=None,
                    help="also compute certified lower bounds (crown-ibp: cheaper for convolutions; docs/certify.md)")
    ap.add_argument("--exact", action=argparse.BooleanOptionalAction, default=False,
                    help="also compute exact radii by MILP/MIQP (small ReLU MLPs only)")
    ap.add_argument("--bounds-only", action="store_true",
                    help="with --certify and/or --exact: add the bounds to the existing attack-<norm>-<split> results "
                         "(the same points), leaving the attacks' radii and configuration as they are (no attack runs)")
    ap.add_argument("--exact-time-limit", type=float, default=10.0, help="seconds per sample for --exact")
    ap.add_argument("--random-checks", type=int, default=8,
                    help="random directions per sample for the gradient-masking check (0: off)")
    ap.add_argument("--json", action="store_true", help="print the result records as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    return ap


def _parse_eps(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--eps must be comma-separated numbers, got {text!r}") from None
    if not vals or any(not (v >= 0) for v in vals):
        raise UserError(f"--eps values must be >= 0, got {text!r}")
    return vals


def config_from_args(args: argparse.Namespace) -> AttackConfig:
    """The :class:`AttackConfig` of parsed command-line arguments."""
    names = None
    if args.attacks:  # an empty --attacks "" means the default cascade, as before
        names = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    return AttackConfig(norms=tuple(args.norm or ["l2"]), split=args.split, n=args.n, attacks=names,
                        steps=args.steps, batch_size=args.batch_size, seed=args.seed, eps=_parse_eps(args.eps),
                        certify=args.certify, exact=args.exact, exact_time_limit=args.exact_time_limit,
                        random_checks=args.random_checks, starts=args.starts, device=args.device)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advrobust.attack``; see ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    where = dict(model=args.model, state_dict=args.state_dict, dataset=args.dataset, out=args.out,
                 progress=not args.quiet, command=["python", "-m", "advrobust.attack", *argv])
    if args.bounds_only:
        for done in add_bounds(args.run_dir, config, **where):
            if args.json:
                print_json({"file": done["file"], "summary": done["summary"]})
            elif not args.quiet:
                print(f"added {done['added']} for {done['points']} points to {done['file']} (attack radii unchanged)")
        return 0
    result = attack_run(args.run_dir, config, **where)
    if args.json:
        print_json(result)
    elif not args.quiet:
        for rec in result["results"]:
            print(format_table(rec))
            print(f"wrote {rec['files'][0]} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
