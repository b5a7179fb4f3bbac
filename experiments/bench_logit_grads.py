"""Benchmark: the attacks' closed-form logit gradients against autograd through the same loss.

    python experiments/bench_logit_grads.py                 # n=200, widths 16 and 512, 3 repeats
    python experiments/bench_logit_grads.py --n 100 --repeats 5

The gradient-based attacks never put their loss into the autograd graph: ``attacks.losses``
(``margin_weights``, ``logit_weights``) returns the loss's gradient with respect to the logits in
closed form (softmax minus one-hot for the cross-entropy, the quotient rule for DLR, +-1 for the
margins), and ``attacks._common.input_grad`` starts the backward pass at the logits with it. The
alternative is autograd: the loss (``attacks.losses.ce_loss``, ``dlr_loss``, ``pair_loss``,
``dlr_pair_loss``, ``label_margin``) evaluated on the logits, differentiated by
``torch.autograd.grad``. This script swaps the one for the other inside each attack (the rest of
the attack is unchanged) and reports, per attack, model and norm:

* ``same``: whether the adversarial points are bit-identical (the radii then are too);
* ``changed``: share of samples whose point differs; ``radius``: the largest relative change of
  the Lp radius over those samples (+: autograd's radius is larger), and how many of them broke
  with one version only;
* ``time``: autograd's time over the closed form's (fastest of ``--repeats`` alternating runs).

Two MLPs (width 16 and 512, one hidden ReLU layer) are trained here on scikit-learn's digits
to interpolation; the attacks run on the first ``--n`` training points with one torch thread.
Result (2026-12-07, shared 2-core CPU, torch 2.13, ``--n 200 --repeats 9``): the margins (fmn,
ddn, cw) and DLR give bit-identical points either way; the cross-entropy does not (PGD and APGD:
19-35% of L2 points change, by up to 7e-6 relative in radius; 1% of APGD's L1 points at width
512). Autograd's time over the closed form's: median 1.13, 1.13-1.46 at width 16, 0.92-1.15 at
width 512. Table in ``docs/attacks.md`` ("Code layout").
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import attacks._adaptive_radius as adaptive_mod  # noqa: E402
import attacks.apgd as apgd_mod  # noqa: E402
import attacks.cw as cw_mod  # noqa: E402
import attacks.pgd as pgd_mod  # noqa: E402
from attacks.norms import INF  # noqa: E402
from advrobust.data import load_dataset  # noqa: E402
from bench_attacks import train_mlp  # noqa: E402  (the same MLPs as the attack benchmark)
from attacks import losses  # noqa: E402
from attacks.norms import lp_norm, norm_name  # noqa: E402



def _autograd(loss_of, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d sum(loss) / dz, loss) by autograd through ``loss_of`` at detached logits ``z``."""
    zc = z.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_of(zc)
        (w,) = torch.autograd.grad(loss.sum(), zc)
    return w, loss.detach()


def autograd_margin_weights(logits, labels, targeted=False, onehot=None):
    """Drop-in for ``losses.margin_weights``: the label margin's logit gradient by autograd."""
    return _autograd(lambda z: losses.label_margin(z, labels, targeted), logits)


def autograd_logit_weights(kind, labels, rival, targeted, num_classes, dtype, with_loss=True):
    """Drop-in for ``losses.logit_weights``: the same losses, differentiated by autograd."""
    loss_of = {"ce": lambda z: losses.ce_loss(z, labels, targeted),
               "dlr": lambda z: losses.dlr_loss(z, labels, targeted),
               "pair": lambda z: losses.pair_loss(z, rival, labels),
               "dlr-pair": lambda z: losses.dlr_pair_loss(z, rival, labels)}[kind]

    def weigh(z):
        w, loss = _autograd(loss_of, z)
        return w, (loss if with_loss else None)
    return weigh


# (module attribute to swap, its autograd replacement) for each attack's loss
SWAPS = [(adaptive_mod, "margin_weights", autograd_margin_weights),
         (cw_mod, "margin_weights", autograd_margin_weights),
         (pgd_mod, "logit_weights", autograd_logit_weights),
         (apgd_mod, "logit_weights", autograd_logit_weights)]

CASES = [  # (label, attack, norms, keyword arguments)
    ("fmn", "attacks.fmn:fmn", (1.0, 2.0, INF), {}),
    ("ddn", "attacks.ddn:ddn", (2.0,), {}),
    ("cw", "attacks.cw:cw", (2.0,), {"steps": 200}),
    ("pgd (ce, pair)", "attacks.pgd:pgd", (1.0, 2.0, INF), {"restarts": 2}),
    ("apgd (ce, dlr-pair)", "attacks.apgd:apgd", (1.0, 2.0, INF), {"restarts": 2}),
    ("apgd (dlr)", "attacks.apgd:apgd", (2.0, INF), {"loss": "dlr"}),
]
EPS = {1.0: 1.0, 2.0: 0.3, INF: 0.03}


class swapped:
    """Context manager: the attacks use the autograd versions of their losses inside it."""

    def __enter__(self):
        self.saved = [(m, a, getattr(m, a)) for m, a, _ in SWAPS]
        for m, a, f in SWAPS:
            setattr(m, a, f)

    def __exit__(self, *exc):
        for m, a, f in self.saved:
            setattr(m, a, f)


def resolve(path: str):
    mod, fn = path.split(":")
    return getattr(__import__(mod, fromlist=[fn]), fn)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--widths", default="16,512")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    x, y = ds.x_train, ds.y_train
    print(f"torch {torch.__version__}, 1 thread, n={args.n}, repeats={args.repeats}\n")
    print("| attack | width | norm | same | changed | radius | time autograd / closed form |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for width in (int(w) for w in args.widths.split(",")):
        model = train_mlp(width, x, y)
        xs, ys = x[: args.n], y[: args.n]
        for label, path, norms, kw in CASES:
            fn = resolve(path)
            for p in norms:
                extra = dict(kw, eps=EPS[p]) if "pgd" in path else dict(kw)

                def run():
                    t = time.perf_counter()
                    out = fn(model, xs, ys, norm=p, **extra)
                    return out, time.perf_counter() - t

                times = {"hand": [], "auto": []}
                for _ in range(args.repeats):
                    a, t = run()
                    times["hand"].append(t)
                    with swapped():
                        b, t = run()
                    times["auto"].append(t)
                same = torch.equal(a, b)
                diff = (a != b).flatten(1).any(1)
                ra, rb = lp_norm(a - xs, p)[diff], lp_norm(b - xs, p)[diff]
                ok = (ra > 0) & (rb > 0)
                rel = (rb[ok] - ra[ok]) / ra[ok]
                worst = float(rel[rel.abs().argmax()]) if ok.any() else 0.0
                one_only = int((ok.logical_not()).sum())
                ratio = min(times["auto"]) / min(times["hand"])
                ratios.append(ratio)
                print(f"| {label} | {width} | {norm_name(p)} | {'yes' if same else 'no'} | "
                      f"{float(diff.float().mean()):.0%} | {worst:+.1e}{f' ({one_only} broken by one only)' if one_only else ''} | "
                      f"{ratio:.2f} |", flush=True)
    print(f"\nmedian time ratio (autograd / closed form): {float(np.median(ratios)):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
