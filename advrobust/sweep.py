"""``python -m advrobust.sweep SPEC``: a whole study in one command.

Expands an experiment spec (TOML) into runs, and for each run trains the model, attacks it,
estimates its Lipschitz constant (and certifies, when asked); then compares all runs, fits the
law of robustness and writes the report.

Resumable: every stage writes its output atomically, and a stage whose output is already there
(with the same settings) is skipped, so rerunning the same command after an interruption, even
``kill -9``, redoes only what was unfinished. Runs are independent and seeded, so sequential,
``--workers N`` (local processes) and ``--scheduler tcp://host:port`` (an existing Dask
distributed cluster; run directories must then be on a file system every worker sees) give the
same results.

Spec format (see ``experiments/quick.toml`` for a commented example)::

    name = "quick"                # used for the default output folder runs/<name>
    description = "..."
    seeds = 5                     # runs per grid point, seeds 0..4 (default 1); a block may
                                  # override it, or list explicit seeds with seed = [...]

    [train]                       # defaults for every run: flags of python -m advrobust.train
    lr = 0.01
    epochs = 500

    [attack]                      # what to attack: flags of python -m advrobust.attack
    norms = ["l2"]
    splits = ["train", "test"]
    n = 100
    steps = 100

    [lipschitz]
    enabled = true

    [report]
    enabled = true

    [[grid]]                      # each block is a cartesian product; lists are axes
    dataset = "digits"
    model = "mlp"
    width = ["min", 8, 32, 128]
    label_noise = [0.0, 0.1]
    seed = [0]
    train = { epochs = 800 }      # per-block overrides of [train] / [attack]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import UserError
from .jsonio import to_json
from ._cli import argument_parser, print_json, run_main
from .runs import atomic_write_json, atomic_write_text, read_json
from .train import params_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Keys a grid block may hold, the type each value (or each list item) must have, and whether a
# list means "sweep over these values". Everything here is passed to python -m advrobust.train.
_GRID_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "dataset": (str, "--dataset"),
    "model": (str, "--model"),
    "width": ((int, str), "--width"),
    "depth": (int, "--depth"),
    "n": (int, "--n"),
    "n_test": (int, "--n-test"),
    "resize": (int, "--resize"),
    "label_noise": ((float, int), "--label-noise"),
    "dim": (int, "--dim"),
    "classes": (int, "--classes"),
    "labels": (str, "--labels"),
    "flip": ((float, int), "--flip"),
    "data_dir": (str, "--data-dir"),
    "seed": (int, "--seed"),
}
_TRAIN_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "optimizer": (str, "--optimizer"),
    "lr": ((float, int), "--lr"),
    "momentum": ((float, int), "--momentum"),
    "batch_size": (int, "--batch-size"),
    "loss": (str, "--loss"),
    "targets": (str, "--targets"),
    "mode": (str, "--mode"),
    "epochs": (int, "--epochs"),
    "tol": ((float, int), "--tol"),
    "adv_norm": (str, "--adv-norm"),
    "adv_eps": ((float, int), "--adv-eps"),
    "adv_steps": (int, "--adv-steps"),
}
_ATTACK_KEYS: dict[str, tuple[type | tuple[type, ...], str | None]] = {
    "norms": (list, None),
    "splits": (list, None),
    "n": (int, "--n"),
    "steps": (int, "--steps"),
    "attacks": (list, "--attacks"),
    "batch_size": (int, "--batch-size"),
    "certify": (str, "--certify"),
    "exact": (bool, "--exact"),
}
_LIPSCHITZ_KEYS: dict[str, tuple[type | tuple[type, ...], str | None]] = {
    "enabled": (bool, None),
    "norm": (str, "--norm"),
    "ascent_steps": (int, "--ascent-steps"),
    "ascent_points": (int, "--ascent-points"),
    "segments": (int, "--segments"),
    "max_points": (int, "--max-points"),
}
_REPORT_KEYS = {"enabled": bool, "title": str}


def _positive(v: Any) -> bool:
    return v > 0


def _nonneg(v: Any) -> bool:
    return v >= 0


def _width_ok(v: Any) -> bool:
    """A positive integer, "min" or "p=N" (train's width forms)."""
    if not isinstance(v, str):
        return v > 0
    try:
        return v == "min" or params_target(v) is not None
    except UserError:  # a malformed p=N
        return False


def _fraction(v: Any) -> bool:
    return 0 <= v < 1


# Allowed values, checked for the whole spec before the first run (key -> test, what is allowed).
# Names (datasets, models, attacks) and closed sets are checked against the code's own lists.
_VALUE_RULES: dict[str, tuple[Any, str]] = {
    "width": (_width_ok, 'a positive integer, "min" or "p=N" (the width nearest N parameters)'),
    "depth": (_positive, "a positive integer"),
    "n": (_positive, "a positive integer"),
    "n_test": (_positive, "a positive integer"),
    "resize": (_positive, "a positive integer"),
    "dim": (_positive, "a positive integer"),
    "classes": (lambda v: v >= 2, "an integer >= 2"),
    "seed": (_nonneg, "a non-negative integer"),
    "label_noise": (_fraction, "a fraction in [0, 1)"),
    "flip": (_fraction, "a fraction in [0, 1)"),
    "lr": (_positive, "a positive number"),
    "momentum": (_fraction, "a number in [0, 1)"),
    "batch_size": (_positive, "a positive integer"),
    "epochs": (_positive, "a positive integer"),
    "tol": (_positive, "a positive number"),
    "adv_eps": (_positive, "a positive number"),
    "adv_steps": (_positive, "a positive integer"),
    "steps": (_positive, "a positive integer"),
    "ascent_steps": (_nonneg, "a non-negative integer"),
    "ascent_points": (_nonneg, "a non-negative integer"),
    "segments": (_nonneg, "a non-negative integer"),
    "max_points": (_positive, "a positive integer"),
}


def _choices() -> dict[str, tuple[str, ...]]:
    from .train import ADV_NORMS, LOSSES, MODES, OPTIMIZERS, TARGETS

    return {"optimizer": OPTIMIZERS, "loss": LOSSES, "targets": TARGETS, "mode": MODES, "adv_norm": ADV_NORMS,
            "labels": ("random", "teacher"), "certify": ("ibp", "crown"), "norm": ("l1", "l2", "linf"),
            "norms": ("l1", "l2", "linf"), "splits": ("train", "test")}


def _check_values(table: dict, where: str, *, skip: tuple[str, ...] = ()) -> None:
    """Every value of a spec table within its allowed range or set (UserError naming file, key, allowed)."""
    choices = _choices()
    for key, value in table.items():
        if key in skip:
            continue
        for v in (value if isinstance(value, list) else [value]):
            if key in _VALUE_RULES and not isinstance(v, bool) and isinstance(v, (int, float, str)):
                test, allowed = _VALUE_RULES[key]
                try:
                    ok = test(v)
                except TypeError:  # "min" compared with a number, etc.
                    ok = False
                if not ok:
                    raise UserError(f"{where}: key {key!r} is {v!r}; allowed: {allowed}")
            if key in choices and v not in choices[key]:
                raise UserError(f"{where}: key {key!r} has {v!r}; allowed: {', '.join(choices[key])}")


def _check_attacks(table: dict, norms: list, where: str) -> None:
    """Attack names exist and support every norm they will run under."""
    from .evaluate import make_attack

    for name in table.get("attacks", []):
        if not isinstance(name, str):
            raise UserError(f"{where}: key 'attacks' lists {name!r}; allowed: attack names (see docs/attacks.md)")
        for norm in norms:
            try:
                make_attack(name, norm={"l1": 1.0, "l2": 2.0, "linf": float("inf")}[norm], steps=None)
            except UserError as exc:  # its message lists the known names, or the norms the attack supports
                raise UserError(f"{where}: key 'attacks' has {name!r}: {exc}") from None


_TOP_KEYS = {"name", "description", "seeds", "train", "attack", "lipschitz", "report", "grid"}
#: torch threads per run unless --threads says otherwise (see run_sweep)
DEFAULT_THREADS = 1
#: seeds per grid point where neither the spec nor its block says (``seeds = N``, top level or per block)
DEFAULT_SEEDS = 1


@dataclass(frozen=True)
class RunTask:
    """One run of the sweep: where it lives and the exact commands that make it."""

    name: str
    path: str
    train_argv: tuple[str, ...]
    attack_argvs: tuple[tuple[str, ...], ...]  # one per (norm, split)
    attack_outputs: tuple[str, ...]  # attack-<norm>-<split>.json, aligned with attack_argvs
    lipschitz_argv: tuple[str, ...] | None
    params: dict = field(default_factory=dict, compare=False, hash=False)


# --------------------------------------------------------------------------- spec parsing
def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _check_type(value: Any, expected: Any, key: str, where: str) -> None:
    ok = isinstance(value, expected) and not (isinstance(value, bool) and expected in (int, float, (float, int), (int, str)))
    if not ok:
        raise UserError(f"{where}: key {key!r} must be {_type_name(expected)}, got {type(value).__name__} {value!r}")


def _check_table(table: Any, allowed: dict, where: str) -> dict:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table, got {type(table).__name__}")
    for key, value in table.items():
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        expected = allowed[key][0] if isinstance(allowed[key], tuple) else allowed[key]
        _check_type(value, expected, key, where)
    return table


def load_spec(path: str | os.PathLike) -> dict:
    """Read and validate a sweep spec; every problem is a one-line UserError naming key and file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file not found: {path} (shipped specs are in experiments/*.toml)")
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    where = str(path)
    for key in spec:
        if key not in _TOP_KEYS:
            raise UserError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "description"):
        if key in spec:
            _check_type(spec[key], str, key, where)
    _check_seeds(spec, where)
    _check_table(spec.get("train", {}), _TRAIN_KEYS, f"{where} [train]")
    _check_table(spec.get("attack", {}), _ATTACK_KEYS, f"{where} [attack]")
    _check_table(spec.get("lipschitz", {}), _LIPSCHITZ_KEYS, f"{where} [lipschitz]")
    _check_table(spec.get("report", {}), _REPORT_KEYS, f"{where} [report]")
    grid = spec.get("grid")
    if not grid:
        raise UserError(f"{where}: empty grid: add at least one [[grid]] block with a dataset and a model")
    if not isinstance(grid, list):
        raise UserError(f"{where}: 'grid' must be an array of tables ([[grid]] blocks)")
    from .data import DATASETS
    from .models import FAMILIES

    for i, block in enumerate(grid):
        bw = f"{where} [[grid]] #{i + 1}"
        if not isinstance(block, dict):
            raise UserError(f"{bw} must be a table")
        _check_seeds(block, bw)
        if "seeds" in block and "seed" in block:
            raise UserError(f"{bw}: give either 'seed' (explicit seeds) or 'seeds' (how many: 0..N-1), not both")
        for key, value in block.items():
            if key == "seeds":
                continue
            if key in ("train", "attack"):
                _check_table(value, _TRAIN_KEYS if key == "train" else _ATTACK_KEYS, f"{bw} {key}")
                continue
            if key not in _GRID_KEYS:
                raise UserError(f"{bw}: unknown key {key!r}; allowed: "
                                f"{', '.join(sorted(_GRID_KEYS) + ['attack', 'seeds', 'train'])}")
            values = value if isinstance(value, list) else [value]
            if not values:
                raise UserError(f"{bw}: key {key!r} is an empty list, so the grid is empty")
            for v in values:
                _check_type(v, _GRID_KEYS[key][0], key, bw)
                if key == "dataset" and v not in DATASETS:
                    raise UserError(f"{bw}: unknown dataset {v!r} in key 'dataset'; known: {', '.join(DATASETS)}")
                if key == "model" and v not in FAMILIES:
                    raise UserError(f"{bw}: unknown model {v!r} in key 'model'; known: {', '.join(FAMILIES)}")
        if "model" not in block:
            raise UserError(f"{bw}: missing key 'model' (one of {', '.join(FAMILIES)})")
    # values, for the whole spec before anything runs
    for key in ("train", "attack", "lipschitz"):
        _check_values(spec.get(key, {}), f"{where} [{key}]")
    for i, block in enumerate(grid):
        bw = f"{where} [[grid]] #{i + 1}"
        _check_values(block, bw, skip=("train", "attack", "seeds"))
        for key in ("train", "attack"):
            _check_values(block.get(key, {}), f"{bw} {key}")
        norms = {**spec.get("attack", {}), **block.get("attack", {})}.get("norms", ["l2"])
        _check_attacks(spec.get("attack", {}), norms, f"{where} [attack]")
        _check_attacks(block.get("attack", {}), norms, f"{bw} attack")
    return spec


def _check_seeds(table: dict, where: str) -> None:
    if "seeds" in table:
        v = table["seeds"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"{where}: key 'seeds' must be a positive integer (runs per grid point), got {v!r}")


def _axes(spec: dict, block: dict) -> dict:
    """A block's axes (lists of values), with ``seed`` from ``seeds`` where the block names no seed."""
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in block.items() if k not in ("train", "attack", "seeds")}
    if "seed" not in axes:
        axes["seed"] = list(range(block.get("seeds", spec.get("seeds", DEFAULT_SEEDS))))
    return axes


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _run_name(params: dict) -> str:
    """A readable, unique, deterministic folder name from the varying parameters."""
    parts = [params.get("dataset", "digits"), params["model"]]
    order = ["depth", "width", "n", "n_test", "resize", "dim", "classes", "labels", "label_noise", "flip", "seed"]
    short = {"width": "w", "depth": "depth", "n": "n", "n_test": "ntest", "resize": "r", "dim": "d", "classes": "k",
             "labels": "", "label_noise": "noise", "flip": "flip", "seed": "s"}
    for key in order:
        if key in params:
            value = _fmt(params[key])
            # width "p=N" (fixed parameter count) reads p<N> in the name
            parts.append(f"p{value[2:]}" if key == "width" and value.startswith("p=") else f"{short[key]}{value}")
    extra = params.get("_suffix")
    if extra:
        parts.append(extra)
    return "-".join(parts).replace("/", "_")


def _flag_args(table: dict, keys: dict) -> list[str]:
    argv: list[str] = []
    for key, value in table.items():
        flag = keys[key][1]
        if flag is None:
            continue
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, _fmt(value)]
    return argv


def expand(spec: dict, out: str | os.PathLike) -> list[RunTask]:
    """The grid's runs, in a deterministic order, each with its exact stage commands."""
    out = Path(out)
    tasks: list[RunTask] = []
    seen: dict[str, int] = {}
    # Blocks' [train] overrides enter a run's name only where they are needed to tell runs apart
    # (e.g. natural and adversarial training of the same model), keeping names short otherwise.
    base_names: dict[str, set[int]] = {}
    for bi, block in enumerate(spec["grid"]):
        axes = _axes(spec, block)
        for combo in itertools.product(*axes.values()):
            params = dict(zip(axes, combo))
            base_names.setdefault(_run_name(params), set()).add(bi)
    for bi, block in enumerate(spec["grid"]):
        axes = _axes(spec, block)
        keys = list(axes)
        train_tbl = {**spec.get("train", {}), **block.get("train", {})}
        attack_tbl = {**spec.get("attack", {}), **block.get("attack", {})}
        suffix = None
        if block.get("train"):
            suffix = "-".join(f"{k}{_fmt(v)}" for k, v in sorted(block["train"].items()))
        for combo in itertools.product(*(axes[k] for k in keys)):
            params = dict(zip(keys, combo))
            if suffix and len(base_names[_run_name(params)]) > 1:
                params["_suffix"] = suffix
            name = _run_name(params)
            if name in seen:  # identical parameters twice in the spec: keep one run
                continue
            seen[name] = 1
            path = out / "runs" / name
            train_argv = ["--out", str(path), "--quiet", "--json"]
            for key, value in params.items():
                if key.startswith("_"):
                    continue
                train_argv += [_GRID_KEYS[key][1], _fmt(value)]
            train_argv += _flag_args(train_tbl, _TRAIN_KEYS)
            attack_argvs, outputs = [], []
            rest = {k: v for k, v in attack_tbl.items() if k not in ("norms", "splits")}
            for norm in attack_tbl.get("norms", ["l2"]):
                for split in attack_tbl.get("splits", ["train"]):
                    argv = [str(path), "--norm", norm, "--split", split, "--seed", str(params["seed"]), "--quiet",
                            "--json"] + _flag_args(rest, _ATTACK_KEYS)
                    attack_argvs.append(tuple(argv))
                    outputs.append(f"attack-{norm}-{split}.json")
            lip = spec.get("lipschitz", {})
            lip_argv = None
            if lip.get("enabled", True):
                lip_argv = (str(path), "--seed", str(params["seed"]), "--json") + tuple(_flag_args(lip, _LIPSCHITZ_KEYS))
            tasks.append(RunTask(name=name, path=str(path), train_argv=tuple(train_argv),
                                 attack_argvs=tuple(attack_argvs), attack_outputs=tuple(outputs),
                                 lipschitz_argv=lip_argv, params={k: v for k, v in params.items() if not k.startswith("_")}))
    if not tasks:
        raise UserError("the spec's grid expands to no runs")
    return tasks


# --------------------------------------------------------------------------- reduced studies
def reduced_spec(spec: dict, *, seeds: int = 2, widths: int = 3, values: int = 2, points: int = 8,
                 steps: int = 10, epochs: int = 300, budget_epochs: int = 5, max_n: int = 500,
                 max_width: int = 1024, attacks: list[str] | None = None) -> dict:
    """A reduced version of a study's spec: the same grid blocks, axes, norms, splits and stages, on
    a few values, for checking a study's pipeline and the structure of its outputs in seconds.

    Each block keeps at most ``widths`` of its numeric widths up to ``max_width`` (the smallest, the
    largest and ones evenly between; ``"min"`` is dropped when a number is there, its search training
    many models),
    at most ``values`` of every other list axis (the first and the last, so a d or n sweep still
    varies), and ``seeds`` seeds (explicit seed lists: their first ``seeds``). A single training-set
    size ``n`` is capped at ``max_n`` (real data sets without ``n`` get ``n = max_n``) and
    ``n_test`` at ``max_n / 2``. Training stops after at most ``epochs`` epochs (``budget_epochs``
    for fixed-budget training; adversarial training after 2 PGD steps); attacks use ``points`` points and
    ``steps`` steps without exact radii (and only ``attacks``, when given, instead of the spec's
    attacks or the default cascade); the Lipschitz search is shortened. The name gets
    ``-reduced``. Nothing it gives is a result of the study.
    """
    import copy

    def pick(vals: list, k: int) -> list:
        if len(vals) <= k:
            return list(vals)
        if k == 1:
            return [vals[0]]
        idx = sorted({round(i * (len(vals) - 1) / (k - 1)) for i in range(k)})
        return [vals[i] for i in idx]

    out = copy.deepcopy(spec)
    out["name"] = f"{spec.get('name', 'study')}-reduced"
    out["seeds"] = seeds
    blocks = []
    for block in out["grid"]:
        block = dict(block)
        block.pop("seeds", None)
        for key, value in list(block.items()):
            if key in ("train", "attack"):
                continue
            if key == "seed":
                block[key] = (value if isinstance(value, list) else [value])[:seeds]
            elif key == "width" and isinstance(value, list):
                numeric = sorted(v for v in value if not isinstance(v, str) and v <= max_width) or \
                    sorted(v for v in value if not isinstance(v, str))[:1]
                block[key] = pick(numeric, widths) if numeric else value[:1]
            elif isinstance(value, list):
                block[key] = pick(value, values)
            elif key == "n" and value > max_n:
                block[key] = max_n
            elif key == "n_test" and value > max_n // 2:
                block[key] = max_n // 2
        from .data import SYNTHETIC

        datasets = block.get("dataset", "digits")
        if "n" not in block and not set(datasets if isinstance(datasets, list) else [datasets]) & set(SYNTHETIC):
            block["n"] = max_n
        mode = {**spec.get("train", {}), **block.get("train", {})}.get("mode")
        cap = budget_epochs if mode == "budget" else epochs
        for key in ("train", "attack"):
            if key in block:
                block[key] = _reduce_stage(block[key], key, points=points, steps=steps, epochs=cap)
        if "epochs" not in block.get("train", {}) and mode == "budget":
            block["train"] = {**block.get("train", {}), "epochs": cap}
        blocks.append(block)
    out["grid"] = blocks
    for key in ("train", "attack"):
        out[key] = _reduce_stage(out.get(key, {}), key, points=points, steps=steps, epochs=epochs)
        if key == "train":
            out[key]["epochs"] = min(out[key].get("epochs", epochs), epochs)
        else:
            out[key].update(n=min(out[key].get("n", points), points), steps=min(out[key].get("steps", steps), steps))
            if attacks:
                out[key]["attacks"] = list(attacks)
                for block in blocks:
                    block.get("attack", {}).pop("attacks", None)
    lip = out.setdefault("lipschitz", {})
    for key, value in (("ascent_steps", 5), ("ascent_points", 4), ("segments", 16), ("max_points", 50)):
        lip[key] = min(lip.get(key, value), value)
    return out


def _reduce_stage(table: dict, kind: str, *, points: int, steps: int, epochs: int) -> dict:
    table = dict(table)
    if kind == "train":
        if "epochs" in table:
            table["epochs"] = min(table["epochs"], epochs)
        if "adv_steps" in table:
            table["adv_steps"] = min(table["adv_steps"], 2)
    else:
        if "n" in table:
            table["n"] = min(table["n"], points)
        if "steps" in table:
            table["steps"] = min(table["steps"], steps)
        table.pop("exact", None)
    return table


# --------------------------------------------------------------------------- running one run
def _call(main, argv: Sequence[str]) -> str:
    """Run a command's ``main(argv)`` in-process, capturing its stdout; UserError propagates."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    if code:
        raise RuntimeError(f"{main.__module__} {' '.join(argv)} exited with {code}")
    return buf.getvalue()


def _stage_done(path: Path, output: str, argv: Sequence[str]) -> bool:
    """A stage is done when its output exists and was made by the same command."""
    f = path / output
    if not f.is_file():
        return False
    try:
        rec = read_json(f)
        if output.startswith("attack-"):  # the npz must be the one its summary commits
            from .runs import load_npz

            load_npz(f.with_suffix(".npz"))
    except UserError:
        return False
    return rec.get("sweep_argv") in (None, list(argv)) if isinstance(rec, dict) else False


def _train_done(path: Path, argv: Sequence[str]) -> bool:
    if not ((path / "run.json").is_file() and (path / "model.pt").is_file()):
        return False
    marker = path / "sweep-train.json"
    if not marker.is_file():
        return False
    try:
        return read_json(marker).get("argv") == list(argv)
    except UserError:
        return False


def run_task(task: RunTask, *, threads: int | None = None, device: str | None = None, position: int = 1,
             progress: bool = True) -> dict:
    """Train, attack and estimate one run, skipping stages already complete. Returns its status."""
    import torch
    from tqdm.auto import tqdm

    from . import attack as attack_cmd
    from . import lipschitz as lipschitz_cmd
    from . import train as train_cmd

    if threads:
        torch.set_num_threads(int(threads))
    path = Path(task.path)
    dev = ["--device", device] if device else []
    stages = 1 + len(task.attack_argvs) + (1 if task.lipschitz_argv else 0)
    t0 = time.perf_counter()
    done_before = []
    with tqdm(total=stages, desc=task.name, position=position, leave=False, disable=not progress) as bar:
        train_argv = list(task.train_argv) + dev
        bar.set_description_str(f"{task.name}: train")
        if _train_done(path, train_argv):
            done_before.append("train")
        else:
            overwrite = ["--overwrite"] if path.exists() else []
            # a retrained model invalidates every later stage's output in this run
            for stale in [*path.glob("attack-*.json"), *path.glob("attack-*.npz"), path / "lipschitz.json"]:
                stale.unlink(missing_ok=True)
            _call(train_cmd.main, train_argv + overwrite)
            atomic_write_json(path / "sweep-train.json", {"argv": train_argv})
        bar.update()
        for argv, output in zip(task.attack_argvs, task.attack_outputs):
            argv = list(argv) + dev
            bar.set_description_str(f"{task.name}: {Path(output).stem.replace('-', ' ', 1)}")
            if _stage_done(path, output, argv):
                done_before.append(output)
            else:
                _call(attack_cmd.main, argv)
                rec = read_json(path / output)
                rec["sweep_argv"] = argv
                atomic_write_json(path / output, rec)
            bar.update()
        if task.lipschitz_argv:
            argv = list(task.lipschitz_argv) + dev
            bar.set_description_str(f"{task.name}: lipschitz")
            if _stage_done(path, "lipschitz.json", argv):
                done_before.append("lipschitz.json")
            else:
                _call(lipschitz_cmd.main, argv)
                rec = read_json(path / "lipschitz.json")
                rec["sweep_argv"] = argv
                atomic_write_json(path / "lipschitz.json", rec)
            bar.update()
    return {"name": task.name, "path": task.path, "skipped": done_before, "wall_time_s": time.perf_counter() - t0}


def _die_with_parent(parent: int) -> None:
    """End this worker process when its parent (the sweep) dies, even by ``kill -9``.

    Linux: the kernel sends SIGKILL on the parent's death (``PR_SET_PDEATHSIG``). Everywhere: a
    daemon thread checks once a second whether the process was re-parented. A worker left running
    would keep writing into run directories that a resumed sweep is also writing.
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="advrobust-parent-watch", daemon=True).start()


def _worker_init(threads: int, parent: int | None = None) -> None:
    import torch

    if parent is not None:
        _die_with_parent(parent)
    torch.set_num_threads(threads)


def _run_task_quiet(task: RunTask, threads: int | None, device: str | None) -> dict:
    return run_task(task, threads=threads, device=device, progress=False)


# --------------------------------------------------------------------------- the sweep
def check_data(tasks: Sequence[RunTask]) -> None:
    """Read every data set the runs need from files once, before any training: a missing or broken
    file is one UserError naming the files and how to get them, not a failure hours into a study."""
    from .data import FASHION_MNIST_DIR, IMAGE_FILES, load_dataset

    seen = set()
    for t in tasks:
        name, folder = t.params.get("dataset", "digits"), t.params.get("data_dir")
        if name not in IMAGE_FILES or (name, folder) in seen:
            continue
        seen.add((name, folder))
        try:
            load_dataset(name, data_dir=folder, n=None, n_test=None)
        except UserError as exc:
            how = (" (Debian: apt-get install dataset-fashion-mnist, which installs them in "
                   f"{FASHION_MNIST_DIR}; or set data_dir in the spec's [[grid]] block)") if name == "fashion-mnist" \
                else " (set data_dir in the spec's [[grid]] block to the folder holding them)"
            raise UserError(f"run {t.name} needs {name}, which cannot be read, so nothing was trained: {exc}{how}") \
                from None


def run_sweep(spec_path: str | os.PathLike | dict, *, out: str | os.PathLike | None = None, workers: int = 1,
              scheduler: str | None = None, threads: int | None = None, device: str | None = None,
              report: bool | None = None, progress: bool = True, reduced: bool = False) -> dict:
    """Run every run of a spec (resumably), then compare and report. Returns the sweep record.

    ``threads``: torch threads per run, default :data:`DEFAULT_THREADS` (1) whatever ``workers``
    is. With more, torch's OpenMP threads spin whenever another process holds a core: the quick
    spec took 5.0 times its quiet time beside two busy processes with one process of 2 threads, 1.55
    times with 1 thread, 1.96 times with 2 processes of 1 thread (``experiments/bench_threads.py``).

    ``spec_path``: a spec file, or a spec already read (a dict from :func:`load_spec`, e.g. passed
    through :func:`reduced_spec` with settings of one's own). ``reduced``: run :func:`reduced_spec`
    of the spec instead (default output ``runs/<name>-reduced``).
    """
    spec = dict(spec_path) if isinstance(spec_path, dict) else load_spec(spec_path)
    if isinstance(spec_path, dict):
        spec_path = f"<spec {spec.get('name', 'unnamed')}>"
    if reduced:
        spec = reduced_spec(spec)
    name = spec.get("name") or Path(spec_path).stem
    # absolute before any task leaves this process: a Dask worker's working directory is its own
    out = Path(os.path.abspath(out if out else Path("runs") / name))
    tasks = expand(spec, out)
    check_tasks(tasks, str(spec_path))
    check_data(tasks)
    from .runs import DirLock, disk_error

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, out) from None
    with DirLock(out / ".sweep.lock", what=f"sweep folder {out}"):  # one sweep per folder
        return _run_sweep_locked(spec, spec_path, name, out, tasks, workers=workers, scheduler=scheduler,
                                 threads=threads, device=device, report=report, progress=progress, reduced=reduced)


def check_tasks(tasks: Sequence[RunTask], where: str) -> None:
    """Parse every stage command of every run with its command's own parser and checks, before the
    first run starts: a value the spec checks let through is still an error naming the spec and run,
    not a failure after earlier runs have trained."""
    from . import attack as attack_cmd
    from . import lipschitz as lipschitz_cmd
    from . import train as train_cmd

    for t in tasks:
        try:
            a = train_cmd._parser().parse_args(list(t.train_argv))
            train_cmd.TrainConfig(optimizer=a.optimizer, lr=a.lr, momentum=a.momentum, batch_size=a.batch_size,
                                  loss=a.loss, targets=a.targets, mode=a.mode, epochs=a.epochs, tol=a.tol,
                                  seed=a.seed, device="cpu", adv_norm=a.adv_norm, adv_eps=a.adv_eps,
                                  adv_steps=a.adv_steps).validated()
            for argv in t.attack_argvs:
                attack_cmd.build_parser().parse_args(list(argv))
            if t.lipschitz_argv:
                lipschitz_cmd._parser().parse_args(list(t.lipschitz_argv))
        except UserError as exc:
            raise UserError(f"{where}: run {t.name}: {exc}; nothing was run") from None


def _run_sweep_locked(spec: dict, spec_path, name: str, out: Path, tasks: list[RunTask], *, workers: int,
                      scheduler: str | None, threads: int | None, device: str | None, report: bool | None,
                      progress: bool, reduced: bool) -> dict:
    from tqdm.auto import tqdm

    from .runs import recover_leftovers, run_lock

    for t in tasks:  # what a killed earlier sweep left beside its run directories
        try:
            with run_lock(t.path):
                recover_leftovers(t.path)
        except UserError:  # a writer (e.g. a stray worker) is still at work there: it cleans up after itself
            pass
    t0 = time.perf_counter()
    statuses: dict[str, dict] = {}
    record_path = out / "sweep.json"

    def record(final: bool = False) -> dict:
        rec = {"spec": str(spec_path), "name": name, "reduced": reduced, "out": str(out), "runs": [t.name for t in tasks],
               "completed": sorted(statuses), "status": {k: statuses[k] for k in sorted(statuses)},
               "workers": workers, "scheduler": scheduler, "finished": final,
               "wall_time_s": time.perf_counter() - t0}
        atomic_write_json(record_path, rec)
        return rec

    bar = tqdm(total=len(tasks), desc=f"sweep {name}", position=0, disable=not progress)
    try:
        if scheduler:
            try:
                from dask.distributed import Client, as_completed
            except ImportError:
                raise UserError("--scheduler needs dask distributed: pip install 'advrobust[dask]'") from None
            try:
                client = Client(scheduler, timeout="5s")
            except ValueError as exc:  # a malformed address (no port, unknown protocol)
                raise UserError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}); "
                                "give one like tcp://host:8786") from None
            except (OSError, TimeoutError) as exc:
                raise UserError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                                "`dask scheduler` and workers with `dask worker ADDRESS`") from None
            try:
                futures = [client.submit(_run_task_quiet, t, threads, device, pure=False, key=f"advrobust-{name}-{t.name}")
                           for t in tasks]
                for fut in as_completed(futures):
                    st = fut.result()
                    statuses[st["name"]] = st
                    record()
                    bar.update()
            finally:
                client.close()
        elif workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed as cf_completed

            per = threads or DEFAULT_THREADS
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                     initargs=(per, os.getpid())) as pool:
                futs = [pool.submit(_run_task_quiet, t, per, device) for t in tasks]
                for fut in cf_completed(futs):
                    st = fut.result()
                    statuses[st["name"]] = st
                    record()
                    bar.update()
        else:
            for t in tasks:
                st = run_task(t, threads=threads or DEFAULT_THREADS, device=device, progress=progress)
                statuses[st["name"]] = st
                record()
                bar.update()
    finally:
        bar.close()

    run_dirs = [t.path for t in tasks]
    from . import compare as compare_lib

    # what `python -m advrobust.compare RUNS --format markdown` and `... --json` print
    rows = compare_lib.collect_rows(run_dirs)
    fits = compare_lib.law_fits(rows, norms=compare_lib.row_norms(rows)) if rows else []
    table = compare_lib.format_table(rows, fmt="markdown") + compare_lib.format_fits(fits)
    atomic_write_text(out / "compare.md", table)
    compare_json = to_json({"rows": rows, "fits": fits, "paired": None}) + "\n"
    atomic_write_text(out / "compare.json", compare_json)
    do_report = spec.get("report", {}).get("enabled", True) if report is None else report
    report_dir, figures = None, None
    if do_report:
        from .report import build_report

        res = build_report(run_dirs, out / "report", title=spec.get("report", {}).get("title"), progress=progress)
        report_dir, figures = str(out / "report"), res["figures"]
    rec = record(final=True)
    rec["compare"] = str(out / "compare.md")
    rec["report"] = report_dir
    rec["report_figures"] = figures
    rec["table"] = table
    return rec


def main(argv: Sequence[str] | None = None) -> int:
    ap = argument_parser(prog="python -m advrobust.sweep", description=__doc__.split("\n\n")[0],
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
    args = ap.parse_args(argv)
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
    sys.exit(run_main(main))
