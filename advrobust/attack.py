"""Attack a trained model and record verified per-sample adversarial radii.

Examples::

    python -m advrobust.attack runs/d64                       # L2 cascade on the training split
    python -m advrobust.attack runs/d64 --norm l2 --norm linf --split test --n 200
    python -m advrobust.attack runs/d64 --attacks fmn,foolbox:L2BrendelBethgeAttack --certify crown
    python -m advrobust.attack --model net.ts --dataset digits --out results/   # TorchScript
    python -m advrobust.attack --model mynet.py:build --state-dict sd.pt --dataset digits --out results/
    python -m advrobust.attack runs/s64 --norm linf --attacks boundary --starts runs/s64/attack-linf-train.npz

Writes ``attack-<norm>-<split>.npz`` and ``.json`` (format in ``docs/internals.md``) atomically
into the run directory (or ``--out``), and prints a summary per norm.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from . import runs
from .errors import UserError
from ._cli import argument_parser, print_json, run_main
from .norms import norm_name, parse_norm
from .models import select_device
from ._stats import median

INF = math.inf
_TS_SUFFIXES = (".ts", ".jit", ".torchscript")


def build_parser() -> argparse.ArgumentParser:
    ap = argument_parser(prog="python -m advrobust.attack", description=__doc__.split("\n\n")[0],
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


def _wrap(module):
    """A plain nn.Module around ``module`` (TorchScript modules take no Python hooks)."""
    from torch import nn

    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return Wrapped(module).eval()


def load_target(args, device):
    """Returns (model, x_split, y_split, out_dir, source dict, training inputs)."""
    import torch

    from .data import load_dataset, split

    if args.run_dir and args.model:
        raise UserError("give either a run directory or --model, not both")
    if args.run_dir:
        run = runs.load_run(args.run_dir, device=device)
        x, y = split(run.data, args.split)
        out = Path(args.out) if args.out else run.path
        return run.model.eval(), x, y, out, {"run_dir": str(run.path)}, split(run.data, "train")[0]
    if not args.model:
        raise UserError("nothing to attack: give a run directory or --model with --dataset")
    if not args.dataset:
        raise UserError("--model needs --dataset NAME (e.g. --dataset digits)")
    spec = args.model
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        model = _load_factory(spec, args.state_dict)
        out_default = Path(spec.split(":", 1)[0]).parent
    else:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"model file not found: {path}")
        if args.state_dict:
            raise UserError("--state-dict is only for --model file.py:factory")
        if path.suffix in _TS_SUFFIXES:
            try:
                model = torch.jit.load(str(path), map_location="cpu")
            except (RuntimeError, ValueError, OSError) as exc:
                raise UserError(f"cannot load TorchScript model {path}: {str(exc).strip().splitlines()[0][:160]}") from None
            model = _wrap(model)
        else:
            model, _ = runs.load_model(path)
        out_default = path.parent
    data = load_dataset(args.dataset)
    x, y = split(data, args.split)
    out = Path(args.out) if args.out else out_default
    return model.to(device).eval(), x, y, out, {"model": spec, "dataset": args.dataset}, split(data, "train")[0]


def check_model_output(model, x, y, source: dict, device) -> None:
    """Run the model on two points: its output must be logits of shape (batch, classes) covering the
    labels. A user's model returning a 1-D tensor, a tuple, too few classes, or failing on the data's
    input size is a UserError naming the shapes, not a traceback inside an attack."""
    import torch

    what = source.get("model") or source.get("run_dir") or "the model"
    probe = x[:2].to(device=device, dtype=torch.float32)
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:  # the user's module: whatever it raises on the data is theirs to fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"{what} fails on inputs of shape {list(probe.shape)} from the data set "
                        f"({type(exc).__name__}: {first}); it must accept the data's input shape") from None
    classes = int(y.max()) + 1 if len(y) else 0
    if not isinstance(out, torch.Tensor):
        raise UserError(f"{what} returned {type(out).__name__}, not a tensor of logits; return one tensor of "
                        f"shape (batch, classes)")
    if out.ndim != 2 or out.shape[0] != probe.shape[0]:
        raise UserError(f"{what} returned shape {list(out.shape)} for a batch of {probe.shape[0]}; "
                        f"it must return logits of shape (batch, classes), e.g. [{probe.shape[0]}, {max(classes, 2)}]")
    if out.shape[1] < max(classes, 2):
        raise UserError(f"{what} returns {out.shape[1]} logits per input but the labels need at least {max(classes, 2)} "
                        f"classes; match the model's output to the data set")
    if not out.is_floating_point():
        raise UserError(f"{what} returned {out.dtype} logits; return floating-point logits")


def _load_factory(spec: str, state_dict: str | None):
    import torch
    from torch import nn

    file, name = spec.split(":", 1)
    path = Path(file)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    mod_spec = importlib.util.spec_from_file_location(f"_advrobust_user_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise UserError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error in it is theirs to fix
        raise UserError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UserError(f"{path} has no callable {name!r}; use --model file.py:function_returning_a_module")
    try:
        model = factory()
    except Exception as exc:
        raise UserError(f"{spec}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    if state_dict:
        sd_path = Path(state_dict)
        if not sd_path.is_file():
            raise UserError(f"state dict not found: {sd_path}")
        try:
            sd = torch.load(sd_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or unsafe file: torch raises several types
            raise UserError(f"cannot load state dict {sd_path} safely: {str(exc).strip().splitlines()[0][:160]}") from None
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        try:
            model.load_state_dict(sd)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise UserError(f"state dict {sd_path} does not fit {spec}(): {str(exc).splitlines()[0][:160]}") from None
    return model


def _load_starts(path_text: str) -> np.ndarray:
    """Starting points from a .npy array or an attack .npz (its 'adv'); never unpickles."""
    path = Path(path_text)
    if not path.is_file():
        raise UserError(f"--starts file not found: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "adv" not in z.files:
                    raise UserError(f"--starts {path} has no 'adv' array; give an attack-*.npz or a .npy of points")
                arr = z["adv"]
        else:
            arr = np.load(path, allow_pickle=False)
    except UserError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"cannot read --starts {path}: expected a .npy array of points or an attack-*.npz "
                        f"({type(exc).__name__}; pickled data is never loaded)") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise UserError(f"--starts {path} must hold a numeric array of points")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _parse_eps(text: str | None, norm: float) -> tuple[float, ...]:
    from .evaluate import DEFAULT_EPS

    if text is None:
        return DEFAULT_EPS[norm]
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--eps must be comma-separated numbers, got {text!r}") from None
    if not vals or any(not (v >= 0) for v in vals):
        raise UserError(f"--eps values must be >= 0, got {text!r}")
    return vals


def attack_norm(model, x, y, *, norm: float, names: Sequence[str], args, device, out_dir: Path,
                source: dict, argv: Sequence[str] | None, pool=None, starts=None) -> dict:
    """Run the cascade for one norm, write the npz/json pair, return the JSON record."""
    from .evaluate import make_attack, run_cascade, summarize

    configured = [(n, make_attack(n, norm=norm, steps=args.steps, seed=args.seed)) for n in names]
    lower = {}
    if args.certify:
        try:
            from .certify import certified_radii
        except ImportError as exc:
            raise UserError(f"--certify needs advrobust.certify ({exc})") from None
        lower[args.certify] = np.asarray(certified_radii(model, x.to(device), y.to(device), norm=norm,
                                                         method=args.certify, progress=not args.quiet),
                                         dtype=np.float64)
    result = run_cascade(model, x, y, norm=norm, attacks=configured, batch_size=args.batch_size, device=device,
                         seed=args.seed, progress=not args.quiet, lower=lower.get(args.certify),
                         random_checks=args.random_checks, pool=pool, starts=starts)
    exact = None
    if args.exact:
        try:
            from .exact import exact_radii
        except ImportError as exc:
            raise UserError(f"--exact needs advrobust.exact and a MILP solver ({exc})") from None
        exact = exact_radii(model, x.to(device), y.to(device), norm=norm, upper=result.best_radius,
                            time_limit=args.exact_time_limit, progress=not args.quiet)
        lo = np.asarray(exact["lower"], dtype=np.float64)
        below = np.isfinite(result.best_radius) & (result.best_radius < lo * (1 - 1e-4) - 1e-9)
        if below.any():
            result.flags.append({"name": "radius-below-certified", "count": int(below.sum()),
                                 "message": f"{int(below.sum())} verified attack radii lie below the exact solver's "
                                            "proven lower bound: the solver (or the model encoding) is wrong"})
    summary = summarize(result, _parse_eps(args.eps, norm))
    if lower:
        summary["certified"] = {k: {"median": median(v)} for k, v in lower.items()}
    if exact is not None:
        st = np.asarray(exact["status"])
        summary["exact"] = {"optimal": int((st == 0).sum()), "time_limit": int((st == 1).sum()),
                            "error": int((st == 2).sum()),
                            "median": median(exact["radius"])}
        r_ex = np.asarray(exact["lower"], dtype=np.float64)
        summary["robust_accuracy_exact_lower"] = {e: float((np.where(result.correct, r_ex, 0) > float(e)).mean())
                                                  for e in summary["robust_accuracy"]}

    arrays = {
        "index": np.arange(len(result.labels), dtype=np.int64),
        "label": result.labels.astype(np.int64),
        "pred": result.pred.astype(np.int64),
        "margin": result.margin.astype(np.float64),
        "best_radius": result.best_radius.astype(np.float64),
        "best_attack": result.best_attack.astype(np.int64),
        "adv": result.adv.astype(np.float32),
    }
    for n in names:
        arrays[f"radius__{n}"] = result.radius[n].astype(np.float64)
        arrays[f"forward__{n}"] = result.forward[n].astype(np.float64)
        arrays[f"backward__{n}"] = result.backward[n].astype(np.float64)
        arrays[f"time__{n}"] = result.time[n].astype(np.float64)
    for k, v in lower.items():
        arrays[f"lower__{k}"] = v
    if exact is not None:
        arrays["exact_radius"] = np.asarray(exact["radius"], dtype=np.float64)
        arrays["exact_lower"] = np.asarray(exact["lower"], dtype=np.float64)
        arrays["exact_status"] = np.asarray(exact["status"], dtype=np.int64)
    stem = runs.results_stem(norm_name(norm), args.split)
    record = {
        "norm": norm_name(norm), "split": args.split, "n": int(len(result.labels)), "attacks": names,
        "steps": args.steps, "seed": args.seed, "batch_size": args.batch_size, "summary": summary,
        "flags": result.flags, "wall_time_s": result.wall_time_s, "versions": runs.versions(),
        "device": runs.device_info(device), "command": ["python", "-m", "advrobust.attack", *(argv or sys.argv[1:])],
        "source": source,
    }
    record = runs.commit_results(out_dir / stem, arrays, record)  # npz, then the json naming its sha256
    record["files"] = [str(out_dir / f"{stem}.npz"), str(out_dir / f"{stem}.json")]
    return record


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(record: dict) -> str:
    """Human-readable summary of one norm's record."""
    s = record["summary"]
    lines = [f"== {record['norm']} on {record['split']} split: n={s['n']}, clean accuracy {s['clean_accuracy']:.3f}, "
             f"{record['wall_time_s']:.1f}s"]
    lines.append(f"{'attack':28s} {'ran':>5s} {'success':>8s} {'failed':>6s} {'median':>9s} {'wins':>5s} "
                 f"{'fwd/smp':>8s} {'bwd/smp':>8s} {'ms/smp':>8s}")
    for name, a in s["per_attack"].items():
        lines.append(f"{name:28s} {a['ran']:5d} {_fmt(a['success_rate']):>8s} {a['failed']:6d} {_fmt(a['median']):>9s} "
                     f"{a['wins']:5d} {_fmt(a['forward']):>8s} {_fmt(a['backward']):>8s} "
                     f"{_fmt(a['time_per_sample_s'] * 1e3 if a['time_per_sample_s'] == a['time_per_sample_s'] else math.nan):>8s}")
    q = s["quantiles"]
    lines.append(f"best: success {_fmt(s['success_rate'])} ({s['unbroken']} unbroken of {s['n_correct']} correct); "
                 f"radius median {_fmt(s['median'])} [q10 {_fmt(q['q10'])}, q25 {_fmt(q['q25'])}, q75 {_fmt(q['q75'])}, "
                 f"q90 {_fmt(q['q90'])}]")
    lower = s.get("robust_accuracy_certified") or s.get("robust_accuracy_exact_lower")
    cells = []
    for e, up in s["robust_accuracy"].items():
        cells.append(f"eps {e}: [{_fmt(lower[e])}, {_fmt(up)}]" if lower else f"eps {e}: <= {_fmt(up)}")
    lines.append("robust accuracy " + ("[certified, attack]: " if lower else "(attack upper bound): ") + "; ".join(cells))
    if "exact" in s:
        ex = s["exact"]
        lines.append(f"exact: {ex['optimal']} optimal, {ex['time_limit']} at time limit, {ex['error']} errors, "
                     f"median {_fmt(ex['median'])}")
    for f in record["flags"]:
        lines.append(f"flag {f['name']}: {f['message']}")
    return "\n".join(lines)


def add_bounds(model, x_split, *, norms, args, device, out_dir: Path, argv) -> int:
    """``--bounds-only``: certified (and exact) lower bounds for the points of existing attack results,
    added as columns of the same files; the attacks' radii, configuration and record stay as they were."""
    import torch

    if not args.certify and not args.exact:
        raise UserError("--bounds-only adds bounds: give --certify ibp|crown and/or --exact")
    for p in norms:
        stem = runs.results_stem(norm_name(p), args.split)
        f, fj = out_dir / f"{stem}.npz", out_dir / f"{stem}.json"
        if not f.is_file() or not fj.is_file():
            raise UserError(f"--bounds-only needs existing results {f} (and .json); run python -m advrobust.attack "
                            f"{args.run_dir or '...'} --norm {norm_name(p)} --split {args.split} first")
        arrays = dict(runs.load_npz(f, what="attack results"))
        record = runs.read_json(fj, what="attack record")
        if "index" not in arrays or "best_radius" not in arrays or not isinstance(record, dict):
            raise UserError(f"{f} lacks its index or best_radius column; rerun the attack on it")
        idx = torch.as_tensor(np.asarray(arrays["index"], dtype=np.int64))
        if idx.numel() and int(idx.max()) >= len(x_split):
            raise UserError(f"{f} indexes point {int(idx.max())} but the {args.split} split has {len(x_split)}: "
                            "the results belong to other data; rerun the attack")
        x = x_split[idx].to(device=device, dtype=torch.float32)
        y = torch.as_tensor(np.asarray(arrays["label"], dtype=np.int64), device=device)
        best = np.asarray(arrays["best_radius"], dtype=np.float64)
        correct = np.asarray(arrays["pred"]) == np.asarray(arrays["label"])
        summary = record.setdefault("summary", {})
        eps = list((summary.get("robust_accuracy") or {}).keys()) or [f"{e:g}" for e in _parse_eps(args.eps, p)]
        if args.certify:
            from .certify import certified_radii

            lo = np.asarray(certified_radii(model, x, y, norm=p, method=args.certify, progress=not args.quiet),
                            dtype=np.float64)
            arrays[f"lower__{args.certify}"] = lo
            summary.setdefault("certified", {})[args.certify] = {"median": median(lo)}
            summary["robust_accuracy_certified"] = {e: float((np.where(correct, lo, 0) > float(e)).mean())
                                                    for e in eps}
        if args.exact:
            from .exact import exact_radii

            ex = exact_radii(model, x, y, norm=p, upper=best, time_limit=args.exact_time_limit,
                             progress=not args.quiet)
            arrays["exact_radius"] = np.asarray(ex["radius"], dtype=np.float64)
            arrays["exact_lower"] = np.asarray(ex["lower"], dtype=np.float64)
            arrays["exact_status"] = np.asarray(ex["status"], dtype=np.int64)
            st = arrays["exact_status"]
            summary["exact"] = {"optimal": int((st == 0).sum()), "time_limit": int((st == 1).sum()),
                                "error": int((st == 2).sum()), "median": median(arrays["exact_radius"])}
            summary["robust_accuracy_exact_lower"] = {
                e: float((np.where(correct, arrays["exact_lower"], 0) > float(e)).mean()) for e in eps}
        record.setdefault("bounds_commands", []).append(
            ["python", "-m", "advrobust.attack", *(argv if argv is not None else sys.argv[1:])])
        runs.commit_results(out_dir / stem, arrays, record)  # npz, then the json naming its new sha256
        if args.json:
            print_json({"file": str(f), "summary": summary})
        elif not args.quiet:
            what = " and ".join(w for w, on in ((f"{args.certify} bounds", args.certify), ("exact radii", args.exact)) if on)
            print(f"added {what} for {len(best)} points to {f} (attack radii unchanged)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.n is not None and args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    if args.random_checks < 0:
        raise UserError(f"--random-checks must be >= 0 (0 turns the check off), got {args.random_checks}")
    norms = []
    for t in args.norm or ["l2"]:
        p = parse_norm(t)
        if p not in norms:
            norms.append(p)
    device = select_device(args.device)
    from .evaluate import DEFAULT_CASCADES

    plan = []
    for p in norms:
        names = [a.strip() for a in args.attacks.split(",") if a.strip()] if args.attacks else list(DEFAULT_CASCADES[p])
        if not names:
            raise UserError("--attacks is empty; name at least one attack")
        from .evaluate import make_attack

        for n in names:  # fail fast on unknown names or unsupported norms, before loading anything
            make_attack(n, norm=p, steps=args.steps, seed=args.seed)
        plan.append((p, names))
    starts = None
    if args.starts:
        from attacks import get_attack

        if not any("starts" in inspect.signature(get_attack(n).fn).parameters
                   for _, names in plan for n in names if not n.startswith("foolbox:")):
            raise UserError("--starts is used by the boundary attack; add it to --attacks (e.g. --attacks boundary)")
        starts = _load_starts(args.starts)
    model, x, y, out_dir, source, pool = load_target(args, device)
    if args.bounds_only:
        return add_bounds(model, x, norms=[p for p, _ in plan], args=args, device=device, out_dir=out_dir, argv=argv)
    if args.n is not None:  # at most n (a sweep's attack n applies to runs of every data size)
        if args.n > len(x) and not args.quiet:
            print(f"note: --n {args.n} is more than the {len(x)} points of the {args.split} split; "
                  f"attacking all {len(x)}", file=sys.stderr)
        x, y = x[: args.n], y[: args.n]
    check_model_output(model, x, y, source, device)
    if starts is not None:
        if starts.shape[0] > len(x):  # rows are the split's first points, as are the attacked ones
            starts = starts[: len(x)]
        starts = torch.from_numpy(starts)
    x = x.to(device=device, dtype=torch.float32)
    y = y.to(device)
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise UserError("the data lie outside [0, 1]; inputs must be in [0, 1] with normalisation inside the model")
    records = []
    t0 = time.perf_counter()
    with runs.run_lock(out_dir):  # a second writer of these result files gets an error naming this process
        for p, names in plan:
            rec = attack_norm(model, x, y, norm=p, names=names, args=args, device=device, out_dir=out_dir,
                              source=source, argv=argv, pool=pool.to(device=device, dtype=torch.float32),
                              starts=starts)
            records.append(rec)
            if not args.quiet and not args.json:
                print(format_table(rec))
                print(f"wrote {rec['files'][0]} and .json")
    if args.json:
        print_json({"results": records, "wall_time_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
