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

Python API: :class:`AttackConfig` (what to attack and how), :func:`attack_run` (attack a run
directory or a model file and write the results), :func:`add_bounds` (``--bounds-only``). The
command line is :mod:`advrobust.cli.attack`.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from attacks import get_attack

from . import configs, runs
from ._stats import median
from .certify import certified_radii
from .data import load_dataset, split as split_data
from .errors import UserError
from .evaluate import DEFAULT_CASCADES, DEFAULT_EPS, make_attack, run_cascade, summarize
from .exact import exact_radii
from .models import select_device
from .norms import norm_name, parse_norm

_TS_SUFFIXES = (".ts", ".jit", ".torchscript")
SPLITS = ("train", "test")
CERTIFY_METHODS = ("ibp", "crown", "crown-ibp")
#: ``format`` of the attack records this code writes; records without one (version 1) lack ``config``
ATTACK_FORMAT = "advrobust-attack/2"


@dataclass(frozen=True)
class AttackConfig:
    """What to attack and how: everything of ``python -m advrobust.attack`` except where the model
    comes from and where the files go. Defaults are the command's. Checked on construction
    (UserError naming the field); lists are taken as tuples and norm names made canonical, so
    ``AttackConfig(**json.loads(...))`` of a recorded :meth:`to_dict` gives an equal config.
    """

    # l1, l2 and/or linf; one pair of result files per norm
    norms: tuple[str, ...] = ("l2",)
    # the law of robustness is about fitted points, so the training split by default
    split: str = "train"
    # attack the first n points of the split (None: all of them; more than the split: all, with a note)
    n: int | None = None
    # attack names (foolbox:ClassName allowed); None: the default cascade of each norm
    attacks: tuple[str, ...] | None = None
    # iterations per attack; None: each attack's own default (docs/attacks.md)
    steps: int | None = None
    batch_size: int = 256
    # seeds the attacks' random starts
    seed: int = 0
    # radii of the robust-accuracy summary; None: evaluate.DEFAULT_EPS of the norm
    eps: tuple[float, ...] | None = None
    # certified lower bounds too: ibp, crown or crown-ibp (docs/certify.md)
    certify: str | None = None
    # exact radii by MILP/MIQP too (small ReLU MLPs only), at most exact_time_limit seconds a sample
    exact: bool = False
    exact_time_limit: float = 10.0
    # random directions per sample of the gradient-masking check (0: off)
    random_checks: int = 8
    # starting points of the boundary attack: a .npy of points or an attack-*.npz (its 'adv')
    starts: str | None = None
    # cpu, cuda, cuda:N or auto (cuda when available)
    device: str = "auto"

    def __post_init__(self) -> None:
        norms: list[str] = []
        for t in ([self.norms] if isinstance(self.norms, str) else self.norms):
            name = norm_name(parse_norm(t))
            if name not in norms:
                norms.append(name)
        object.__setattr__(self, "norms", tuple(norms))
        if not norms:
            raise UserError("norms is empty; give at least one of l1, l2, linf")
        if self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}; use one of {', '.join(SPLITS)}")
        if self.steps is not None and (not configs.is_int(self.steps) or self.steps < 1):
            raise UserError(f"--steps must be >= 1, got {self.steps}")
        if not configs.is_int(self.batch_size) or self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.n is not None and (not configs.is_int(self.n) or self.n < 1):
            raise UserError(f"--n must be >= 1, got {self.n}")
        if not configs.is_int(self.random_checks) or self.random_checks < 0:
            raise UserError(f"--random-checks must be >= 0 (0 turns the check off), got {self.random_checks}")
        if not configs.is_int(self.seed):
            raise UserError(f"--seed must be an integer, got {self.seed!r}")
        if self.certify is not None and self.certify not in CERTIFY_METHODS:
            raise UserError(f"unknown --certify {self.certify!r}; use one of {', '.join(CERTIFY_METHODS)}")
        if not (isinstance(self.exact_time_limit, (int, float)) and self.exact_time_limit > 0):
            raise UserError(f"--exact-time-limit must be a positive number of seconds, got {self.exact_time_limit!r}")
        if self.eps is not None:
            eps = tuple(self.eps)
            if not eps or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0) for v in eps):
                raise UserError(f"--eps values must be >= 0, got {','.join(map(str, eps)) or 'nothing'}")
            object.__setattr__(self, "eps", tuple(float(v) for v in eps))
        if self.attacks is not None:
            names = tuple(self.attacks)
            if not names:
                raise UserError("--attacks is empty; name at least one attack")
            object.__setattr__(self, "attacks", names)
        for p in self.norm_values():  # unknown names or unsupported norms fail here, before loading anything
            for name in self.attack_names(p):
                make_attack(name, norm=p, steps=self.steps, seed=self.seed)
        if self.starts is not None and not any("starts" in inspect.signature(get_attack(n).fn).parameters
                                               for p in self.norm_values() for n in self.attack_names(p)
                                               if not n.startswith("foolbox:")):
            raise UserError("--starts is used by the boundary attack; add it to --attacks (e.g. --attacks boundary)")

    def norm_values(self) -> list[float]:
        """The norms as exponents (1.0, 2.0, inf)."""
        return [parse_norm(t) for t in self.norms]

    def attack_names(self, norm: float) -> list[str]:
        """The attacks run under ``norm``: :attr:`attacks`, or the norm's default cascade."""
        return list(self.attacks) if self.attacks is not None else list(DEFAULT_CASCADES[norm])

    def eps_for(self, norm: float) -> tuple[float, ...]:
        """The robust-accuracy radii under ``norm``."""
        return DEFAULT_EPS[norm] if self.eps is None else self.eps

    def to_dict(self) -> dict:
        """Plain JSON types (tuples as lists): what attack records hold as ``config``."""
        return configs.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AttackConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a UserError."""
        return configs.from_dict(cls, d, "attack")


@dataclass
class Target:
    """A loaded model and the split it is attacked on (see :func:`load_target`)."""

    model: nn.Module
    x: torch.Tensor  # (N, ...) the split's inputs
    y: torch.Tensor  # (N,) labels
    out: Path  # folder of the result files
    source: dict  # {"run_dir"} or {"model", "dataset"}: recorded in every result
    pool: torch.Tensor  # the training inputs (the boundary attack's starting points)


def load_target(run_dir: str | os.PathLike | None, split: str, device, *, model: str | None = None,
                state_dict: str | None = None, dataset: str | None = None,
                out: str | os.PathLike | None = None) -> Target:
    """The model to attack and its data: a run directory, or ``model`` (an advrobust checkpoint, a
    TorchScript file or ``file.py:factory`` with an optional ``state_dict``) on data set ``dataset``."""
    if run_dir and model:
        raise UserError("give either a run directory or --model, not both")
    if run_dir:
        run = runs.load_run(run_dir, device=device)
        x, y = split_data(run.data, split)
        return Target(run.model.eval(), x, y, Path(out) if out else run.path, {"run_dir": str(run.path)},
                      split_data(run.data, "train")[0])
    if not model:
        raise UserError("nothing to attack: give a run directory or --model with --dataset")
    if not dataset:
        raise UserError("--model needs --dataset NAME (e.g. --dataset digits)")
    spec = model
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        net = _load_factory(spec, state_dict)
        out_default = Path(spec.split(":", 1)[0]).parent
    else:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"model file not found: {path}")
        if state_dict:
            raise UserError("--state-dict is only for --model file.py:factory")
        if path.suffix in _TS_SUFFIXES:
            try:
                net = torch.jit.load(str(path), map_location="cpu")
            except (RuntimeError, ValueError, OSError) as exc:
                raise UserError(f"cannot load TorchScript model {path}: {str(exc).strip().splitlines()[0][:160]}") from None
            net = _wrap(net)
        else:
            net, _ = runs.load_model(path)
        out_default = path.parent
    data = load_dataset(dataset)
    x, y = split_data(data, split)
    return Target(net.to(device).eval(), x, y, Path(out) if out else out_default, {"model": spec, "dataset": dataset},
                  split_data(data, "train")[0])


def attack_norm(model, x, y, *, norm: float, config: AttackConfig, device, out_dir: Path, source: dict,
                command: list[str], pool=None, starts=None, progress: bool = True) -> dict:
    """Run the cascade for one norm, write the npz/json pair, return the JSON record."""
    names = config.attack_names(norm)
    configured = [(n, make_attack(n, norm=norm, steps=config.steps, seed=config.seed)) for n in names]
    lower = {}
    if config.certify:
        lower[config.certify] = np.asarray(certified_radii(model, x.to(device), y.to(device), norm=norm,
                                                           method=config.certify, progress=progress),
                                           dtype=np.float64)
    result = run_cascade(model, x, y, norm=norm, attacks=configured, batch_size=config.batch_size, device=device,
                         seed=config.seed, progress=progress, lower=lower.get(config.certify),
                         random_checks=config.random_checks, pool=pool, starts=starts)
    exact = None
    if config.exact:
        exact = exact_radii(model, x.to(device), y.to(device), norm=norm, upper=result.best_radius,
                            time_limit=config.exact_time_limit, progress=progress)
        lo = np.asarray(exact["lower"], dtype=np.float64)
        below = np.isfinite(result.best_radius) & (result.best_radius < lo * (1 - 1e-4) - 1e-9)
        if below.any():
            result.flags.append({"name": "radius-below-certified", "count": int(below.sum()),
                                 "message": f"{int(below.sum())} verified attack radii lie below the exact solver's "
                                            "proven lower bound: the solver (or the model encoding) is wrong"})
    summary = summarize(result, config.eps_for(norm))
    if lower:
        summary["certified"] = {k: {"median": median(v)} for k, v in lower.items()}
    if exact is not None:
        summary.update(_exact_summary(exact, result.correct, summary["robust_accuracy"]))

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
        arrays.update(_exact_arrays(exact))
    stem = runs.results_stem(norm_name(norm), config.split)
    record = {
        "norm": norm_name(norm), "split": config.split, "n": int(len(result.labels)), "attacks": names,
        "steps": config.steps, "seed": config.seed, "batch_size": config.batch_size, "summary": summary,
        "flags": result.flags, "wall_time_s": result.wall_time_s, "versions": runs.versions(),
        "device": runs.device_info(device), "command": command, "source": source,
        # this file's config: the run's, with the one norm the file holds
        "format": ATTACK_FORMAT, "config": dataclasses.replace(config, norms=(norm_name(norm),)).to_dict(),
    }
    record = runs.commit_results(out_dir / stem, arrays, record)  # npz, then the json naming its sha256
    record["files"] = [str(out_dir / f"{stem}.npz"), str(out_dir / f"{stem}.json")]
    return record


def _exact_arrays(exact: dict) -> dict:
    return {"exact_radius": np.asarray(exact["radius"], dtype=np.float64),
            "exact_lower": np.asarray(exact["lower"], dtype=np.float64),
            "exact_status": np.asarray(exact["status"], dtype=np.int64)}


def _exact_summary(exact: dict, correct: np.ndarray, eps) -> dict:
    """``exact`` (solver status counts, median) and ``robust_accuracy_exact_lower`` at radii ``eps``."""
    st = np.asarray(exact["status"])
    lo = np.asarray(exact["lower"], dtype=np.float64)
    return {"exact": {"optimal": int((st == 0).sum()), "time_limit": int((st == 1).sum()),
                      "error": int((st == 2).sum()), "median": median(exact["radius"])},
            "robust_accuracy_exact_lower": {e: float((np.where(correct, lo, 0) > float(e)).mean()) for e in eps}}


def command_line(run_dir: str | os.PathLike | None, config: AttackConfig) -> list[str]:
    """A ``python -m advrobust.attack`` command equivalent to ``attack_run(run_dir, config)``: recorded
    in the results when the library is called directly (no command line of its own)."""
    argv = ["python", "-m", "advrobust.attack"] + ([str(run_dir)] if run_dir is not None else [])
    if config.norms != AttackConfig().norms:  # one --norm per norm (the first field: the same order)
        argv += [x for t in config.norms for x in ("--norm", t)]
    return argv + configs.option_flags(config, skip=("norms",))


def attack_run(run_dir: str | os.PathLike | None, config: AttackConfig, *,
               model: str | None = None, state_dict: str | None = None, dataset: str | None = None,
               out: str | os.PathLike | None = None, progress: bool = True,
               command: Sequence[str] | None = None) -> dict:
    """Attack a run's model (or ``model`` on ``dataset``) under every norm of ``config``.

    Parameters
    ----------
    run_dir : path or None
        A run directory written by :func:`advrobust.train.train_run`; None with ``model``.
    config : AttackConfig
    model, state_dict, dataset : str, optional
        Instead of a run: an advrobust checkpoint (.pt), a TorchScript file (.ts/.jit/.torchscript)
        or ``file.py:factory`` (with an optional state dict), attacked on data set ``dataset``.
    out : path, optional
        Folder of the result files (default: the run directory, or the model's folder).
    progress : bool
        Progress bars (and the note when ``config.n`` exceeds the split) on stderr.
    command : list of str, optional
        The command line recorded in the results (default: :func:`command_line` of the call).

    Returns
    -------
    dict
        ``{"results": [record per norm], "wall_time_s"}``; each record is what
        ``attack-<norm>-<split>.json`` holds (format in ``docs/internals.md``) plus ``files``.
    """
    device = select_device(config.device)
    starts = _load_starts(config.starts) if config.starts else None
    target = load_target(run_dir, config.split, device, model=model, state_dict=state_dict, dataset=dataset,
                         out=out)
    x, y = target.x, target.y
    if config.n is not None:  # at most n (a sweep's attack n applies to runs of every data size)
        if config.n > len(x) and progress:
            print(f"note: --n {config.n} is more than the {len(x)} points of the {config.split} split; "
                  f"attacking all {len(x)}", file=sys.stderr)
        x, y = x[: config.n], y[: config.n]
    check_model_output(target.model, x, y, target.source, device)
    if starts is not None:
        if starts.shape[0] > len(x):  # rows are the split's first points, as are the attacked ones
            starts = starts[: len(x)]
        starts = torch.from_numpy(starts)
    x = x.to(device=device, dtype=torch.float32)
    y = y.to(device)
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise UserError("the data lie outside [0, 1]; inputs must be in [0, 1] with normalisation inside the model")
    command = list(command) if command is not None else command_line(run_dir if run_dir else None, config)
    records = []
    t0 = time.perf_counter()
    with runs.run_lock(target.out):  # a second writer of these result files gets an error naming this process
        for p in config.norm_values():
            records.append(attack_norm(target.model, x, y, norm=p, config=config, device=device,
                                       out_dir=target.out, source=target.source, command=command,
                                       pool=target.pool.to(device=device, dtype=torch.float32), starts=starts,
                                       progress=progress))
    return {"results": records, "wall_time_s": time.perf_counter() - t0}


def add_bounds(run_dir: str | os.PathLike | None, config: AttackConfig, *,
               model: str | None = None, state_dict: str | None = None, dataset: str | None = None,
               out: str | os.PathLike | None = None, progress: bool = True,
               command: Sequence[str] | None = None) -> list[dict]:
    """Certified (``config.certify``) and/or exact (``config.exact``) lower bounds for the points of
    existing attack results, added as columns of the same files (``--bounds-only``); the attacks'
    radii, configuration and record stay as they were. Arguments as :func:`attack_run`.

    Returns one ``{"file", "summary", "points", "added"}`` per norm of ``config``.
    """
    if not config.certify and not config.exact:
        raise UserError("--bounds-only adds bounds: give --certify ibp|crown and/or --exact")
    device = select_device(config.device)
    target = load_target(run_dir, config.split, device, model=model, state_dict=state_dict, dataset=dataset,
                         out=out)
    command = list(command) if command is not None else command_line(run_dir, config) + ["--bounds-only"]
    done = []
    for p in config.norm_values():
        stem = runs.results_stem(norm_name(p), config.split)
        f, fj = target.out / f"{stem}.npz", target.out / f"{stem}.json"
        if not f.is_file() or not fj.is_file():
            raise UserError(f"--bounds-only needs existing results {f} (and .json); run python -m advrobust.attack "
                            f"{run_dir or '...'} --norm {norm_name(p)} --split {config.split} first")
        arrays = dict(runs.load_npz(f, what="attack results"))
        record = runs.read_json(fj, what="attack record")
        if "index" not in arrays or "best_radius" not in arrays or not isinstance(record, dict):
            raise UserError(f"{f} lacks its index or best_radius column; rerun the attack on it")
        idx = torch.as_tensor(np.asarray(arrays["index"], dtype=np.int64))
        if idx.numel() and int(idx.max()) >= len(target.x):
            raise UserError(f"{f} indexes point {int(idx.max())} but the {config.split} split has {len(target.x)}: "
                            "the results belong to other data; rerun the attack")
        x = target.x[idx].to(device=device, dtype=torch.float32)
        y = torch.as_tensor(np.asarray(arrays["label"], dtype=np.int64), device=device)
        best = np.asarray(arrays["best_radius"], dtype=np.float64)
        correct = np.asarray(arrays["pred"]) == np.asarray(arrays["label"])
        summary = record.setdefault("summary", {})
        eps = list((summary.get("robust_accuracy") or {}).keys()) or [f"{e:g}" for e in config.eps_for(p)]
        if config.certify:
            lo = np.asarray(certified_radii(target.model, x, y, norm=p, method=config.certify, progress=progress),
                            dtype=np.float64)
            arrays[f"lower__{config.certify}"] = lo
            summary.setdefault("certified", {})[config.certify] = {"median": median(lo)}
            summary["robust_accuracy_certified"] = {e: float((np.where(correct, lo, 0) > float(e)).mean())
                                                    for e in eps}
        if config.exact:
            ex = exact_radii(target.model, x, y, norm=p, upper=best, time_limit=config.exact_time_limit,
                             progress=progress)
            arrays.update(_exact_arrays(ex))
            summary.update(_exact_summary(ex, correct, eps))
        record.setdefault("bounds_commands", []).append(command)
        runs.commit_results(target.out / stem, arrays, record)  # npz, then the json naming its new sha256
        what = " and ".join(w for w, on in ((f"{config.certify} bounds", config.certify),
                                            ("exact radii", config.exact)) if on)
        done.append({"file": str(f), "summary": summary, "points": len(best), "added": what})
    return done


def _wrap(module):
    """A plain nn.Module around ``module`` (TorchScript modules take no Python hooks)."""

    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return Wrapped(module).eval()


def check_model_output(model, x, y, source: dict, device) -> None:
    """Run the model on two points: its output must be logits of shape (batch, classes) covering the
    labels. A user's model returning a 1-D tensor, a tuple, too few classes, or failing on the data's
    input size is a UserError naming the shapes, not a traceback inside an attack."""
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


if __name__ == "__main__":
    from advrobust.cli._common import run_main
    from advrobust.cli.attack import main

    raise SystemExit(run_main(main))
