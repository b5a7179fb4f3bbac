"""``python -m advrobust.train``: train a model (to interpolation by default) and write a run
directory; the library is :func:`advrobust.train.train_run`."""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

from .. import runs
from ..errors import UserError
from ..models import FAMILIES
from ..train import (ADV_NORMS, DEFAULT_MAX_WIDTH, LOSSES, MODES, OPTIMIZERS, TARGETS, WIDTH_FORMS, DataSpec,
                     ModelRequest, TrainConfig, params_target, train_run)
from ._common import argument_parser, print_json, run_main


def _width_arg(text: str) -> int | str:
    if text == "min":
        return "min"
    if text.startswith("p="):
        params_target(text)
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--width must be {WIDTH_FORMS}, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    ap = argument_parser(prog="python -m advrobust.train",
                         description="Train a model (to interpolation by default) and write a run directory.")
    g = ap.add_argument_group("data (see advrobust.data.load_dataset)")
    g.add_argument("--dataset", default="digits", help="digits (default), sphere, gaussian, mnist, fashion-mnist, cifar10")
    g.add_argument("--n", type=int, default=None, help="training points (default: all / 256 synthetic)")
    g.add_argument("--n-test", type=int, default=None, help="test points")
    g.add_argument("--resize", type=int, default=None, help="images: new side length (downsampling)")
    g.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels flipped")
    g.add_argument("--dim", type=int, default=None, help="synthetic data: input dimension d")
    g.add_argument("--classes", type=int, default=None, help="number of classes (real data: keep 0..classes-1)")
    g.add_argument("--labels", default="random", help="synthetic data: random or teacher")
    g.add_argument("--flip", type=float, default=0.0, help="synthetic teacher labels: flipped fraction")
    g.add_argument("--data-dir", default=None, help="folder with mnist / fashion-mnist / cifar10 files")
    g = ap.add_argument_group("model")
    g.add_argument("--model", default="mlp", choices=FAMILIES, help="model family (default mlp)")
    g.add_argument("--width", type=_width_arg, default=None,
                   help="hidden units (mlp) or capacity scale (cnn); 'min' for the smallest width that interpolates; "
                   "'p=N' for the width whose parameter count is nearest N (arms at fixed p)")
    g.add_argument("--depth", type=int, default=None, help="hidden dense layers (default 1)")
    g.add_argument("--max-width", type=int, default=DEFAULT_MAX_WIDTH, help="largest width --width min tries")
    g = ap.add_argument_group("training")
    g.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help=f"default {d.optimizer}")
    g.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr:g})")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD only")
    g.add_argument("--batch-size", type=int, default=None, help="default: full batch")
    g.add_argument("--loss", default=d.loss, choices=LOSSES,
                   help=f"ce: cross-entropy; mse: square loss on --targets (default {d.loss})")
    g.add_argument("--targets", default=d.targets, choices=TARGETS, help="square-loss targets")
    g.add_argument("--mode", default=d.mode, choices=MODES,
                   help="interpolate: stop when train accuracy is 1 and loss < tol; budget: exactly --epochs")
    g.add_argument("--epochs", type=int, default=d.epochs, help="epoch cap (interpolate) or budget")
    g.add_argument("--tol", type=float, default=d.tol, help="training-loss threshold of interpolation")
    g.add_argument("--seed", type=int, default=d.seed, help="seeds data subsets, init, order and attacks")
    g.add_argument("--device", default=d.device, help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--adv-norm", default=None, choices=ADV_NORMS, help="adversarial training norm")
    g.add_argument("--adv-eps", type=float, default=None, help="adversarial training radius")
    g.add_argument("--adv-steps", type=int, default=d.adv_steps, help="PGD steps per minibatch")
    g = ap.add_argument_group("output")
    g.add_argument("--out", required=True, help="run directory to write")
    g.add_argument("--resume", action="store_true", help="reuse a complete run made with the same settings")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    g.add_argument("--json", action="store_true", help="print run.json's summary as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advrobust.train``; see ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    data_kwargs: DataSpec = {"name": args.dataset, "n": args.n, "n_test": args.n_test, "resize": args.resize,
                             "label_noise": args.label_noise, "seed": args.seed, "data_dir": args.data_dir,
                             "dim": args.dim, "classes": args.classes, "labels": args.labels, "flip": args.flip}
    config = TrainConfig(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                         loss=args.loss, targets=args.targets, mode=args.mode, epochs=args.epochs, tol=args.tol,
                         seed=args.seed, device=args.device, adv_norm=args.adv_norm, adv_eps=args.adv_eps,
                         adv_steps=args.adv_steps)
    model_spec: ModelRequest = {"family": args.model, "width": args.width, "depth": args.depth}
    existed = runs.is_run_dir(args.out)
    out = train_run(args.out, config, data_kwargs=data_kwargs, model_spec=model_spec,
                    command=shlex.join(["python", "-m", "advrobust.train", *argv]), resume=args.resume,
                    overwrite=args.overwrite, max_width=args.max_width, progress=not args.quiet)
    meta = runs.read_json(out / runs.RUN_FILE, what="run record")
    reused = existed and args.resume
    summary_keys = ("model", "params", "n", "d", "classes", "train_accuracy", "test_accuracy", "train_loss",
                    "interpolated", "epochs", "wall_time_s")
    if args.json:
        print_json({"path": str(out), "reused": reused, **{k: meta.get(k) for k in summary_keys},
                    "min_width": meta["spec"]["model"]["width"] if "min_width_search" in meta else None})
    elif not args.quiet:
        test = "n/a" if meta["test_accuracy"] is None else f"{meta['test_accuracy']:.4f}"
        print(f"{'reused' if reused else 'wrote'} {out}: {meta['model']}, {meta['params']} params, "
              f"{meta['spec']['data']['name']} n={meta['n']} d={meta['d']} classes={meta['classes']}")
        print(f"train acc {meta['train_accuracy']:.4f}  test acc {test}  train loss {meta['train_loss']:.3g}  "
              f"interpolated {'yes' if meta['interpolated'] else 'no'} after {meta['epochs']} epochs "
              f"({meta['wall_time_s']:.2f} s)")
        if "min_width_search" in meta:
            s = meta["min_width_search"]
            print(f"min width {s['width']} (largest failure {s['largest_failure']}), "
                  f"{len(s['tried'])} widths tried in {s['wall_time_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
