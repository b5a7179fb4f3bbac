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

import copy
import ctypes
import dataclasses
import itertools
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed as cf_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from .attack import AttackConfig, attack_run
from .compare import collect_rows, format_fits, format_table, law_fits, row_norms
from .data import DATASETS, FASHION_MNIST_DIR, IMAGE_FILES, SYNTHETIC, load_dataset
from .errors import UserError
from .norms import NORMS
from .evaluate import make_attack
from .jsonio import to_json
from .lipschitz import LipschitzConfig, lipschitz_run
from .report import build_report
from .models import FAMILIES
from .runs import (MODEL_FILE, RUN_FILE, DirLock, atomic_write_json, atomic_write_text, disk_error, load_npz,
                   read_json, recover_leftovers, run_lock)
from .train import (ADV_NORMS, LOSSES, MODES, OPTIMIZERS, TARGETS, DataSpec, ModelRequest, TrainConfig,
                    params_target, run_request, train_run)
from .train import command_line as train_command_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The spec's schema: the keys each table may hold and the type each value (or each list item) must
# have. A grid block's keys are the run's data and model (advrobust.train.DataSpec / ModelRequest)
# and its seed; [train] holds TrainConfig fields, [attack] AttackConfig fields (norms and splits are
# axes: one result file per pair) and [lipschitz] LipschitzConfig fields.
_GRID_KEYS: dict[str, type | tuple[type, ...]] = {
    "dataset": str, "model": str, "width": (int, str), "depth": int, "n": int, "n_test": int, "resize": int,
    "label_noise": (float, int), "dim": int, "classes": int, "labels": str, "flip": (float, int),
    "data_dir": str, "seed": int,
}
_TRAIN_KEYS: dict[str, type | tuple[type, ...]] = {
    "optimizer": str, "lr": (float, int), "momentum": (float, int), "batch_size": int, "loss": str,
    "targets": str, "mode": str, "epochs": int, "tol": (float, int), "adv_norm": str, "adv_eps": (float, int),
    "adv_steps": int,
}
_ATTACK_KEYS: dict[str, type | tuple[type, ...]] = {
    "norms": list, "splits": list, "n": int, "steps": int, "attacks": list, "batch_size": int, "certify": str,
    "exact": bool,
}
_LIPSCHITZ_KEYS: dict[str, type | tuple[type, ...]] = {
    "enabled": bool, "norm": str, "ascent_steps": int, "ascent_points": int, "segments": int, "max_points": int,
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
    return {"optimizer": OPTIMIZERS, "loss": LOSSES, "targets": TARGETS, "mode": MODES, "adv_norm": ADV_NORMS,
            "labels": ("random", "teacher"), "certify": ("ibp", "crown"), "norm": tuple(NORMS),
            "norms": tuple(NORMS), "splits": ("train", "test")}


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
    """One run of the sweep: where it lives and the configs of its stages."""

    name: str
    path: str
    data: DataSpec  # load_dataset's arguments
    model: ModelRequest  # family, width (an integer, "min" or "p=N"), depth
    train: TrainConfig
    attacks: tuple[AttackConfig, ...]  # one per (norm, split), each with one norm
    attack_outputs: tuple[str, ...]  # attack-<norm>-<split>.json, aligned with attacks
    lipschitz: LipschitzConfig | None
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
        _check_type(value, allowed[key], key, where)
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
                _check_type(v, _GRID_KEYS[key], key, bw)
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


def _typed(table: dict, cls: type) -> dict:
    """A spec table's values as ``cls``'s fields take them: TOML integers where a field holds a
    float become floats (as the command line's float options made them), lists become tuples."""
    floats = {f.name for f in dataclasses.fields(cls) if "float" in str(f.type)}
    return {k: float(v) if k in floats and isinstance(v, int) else tuple(v) if isinstance(v, list) else v
            for k, v in table.items()}


_DATA_KEYS = ("n", "n_test", "resize", "label_noise", "dim", "classes", "labels", "flip", "data_dir")
_DATA_FLOATS = ("label_noise", "flip")


def _stages(params: dict, train_tbl: dict, attack_tbl: dict, lip_tbl: dict) -> dict:
    """The stage configs of the run with grid values ``params`` (a RunTask's fields but name and path)."""
    seed = params["seed"]
    data: DataSpec = {"name": params.get("dataset", "digits"), "seed": seed}
    for key in _DATA_KEYS:
        if key in params:
            data[key] = float(params[key]) if key in _DATA_FLOATS else params[key]
    model: ModelRequest = {"family": params["model"], "width": params.get("width"), "depth": params.get("depth")}
    train = TrainConfig(**_typed(train_tbl, TrainConfig), seed=seed)
    run_request(train, data_kwargs=data, model_spec=model)  # checks the model request and train settings
    rest = _typed({k: v for k, v in attack_tbl.items() if k not in ("norms", "splits")}, AttackConfig)
    attacks, outputs = [], []
    for norm in attack_tbl.get("norms", ["l2"]):
        for split in attack_tbl.get("splits", ["train"]):
            attacks.append(AttackConfig(norms=(norm,), split=split, seed=seed, **rest))
            outputs.append(f"attack-{norm}-{split}.json")
    lip = None
    if lip_tbl.get("enabled", True):
        lip = LipschitzConfig(seed=seed, **{k: v for k, v in lip_tbl.items() if k != "enabled"})
    return {"data": data, "model": model, "train": train, "attacks": tuple(attacks), "attack_outputs": tuple(outputs),
            "lipschitz": lip}


def expand(spec: dict, out: str | os.PathLike, *, where: str = "the spec") -> list[RunTask]:
    """The grid's runs, in a deterministic order, each with its stages' configs. Building the
    configs checks them: an error names ``where`` (the spec file) and the run, before anything runs."""
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
            params = {k: v for k, v in params.items() if not k.startswith("_")}
            try:
                stages = _stages(params, train_tbl, attack_tbl, spec.get("lipschitz", {}))
            except UserError as exc:
                raise UserError(f"{where}: run {name}: {exc}; nothing was run") from None
            tasks.append(RunTask(name=name, path=str(out / "runs" / name), params=params, **stages))
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
def _legacy_config(cls: type, argv: Any) -> Any:
    """The config that a stage command recorded by an earlier sweep (``sweep_argv``: the run
    directory, then ``--flag value`` pairs and bare ``--flag`` switches, as the attack and lipschitz
    commands take them) ran with; None where it cannot be read. Only reads old records."""
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return None
    options: dict[str, Any] = {}
    rest = argv[1:]  # argv[0]: the run directory
    while rest:
        flag, rest = rest[0], rest[1:]
        if not flag.startswith("--"):
            return None
        if rest and not rest[0].startswith("--"):
            value, rest = rest[0], rest[1:]
            for number in (int, float):
                try:
                    value = number(value)
                    break
                except ValueError:
                    pass
            options[flag[2:].replace("-", "_")] = value
        else:
            options[flag[2:].replace("-", "_")] = True
    options.pop("quiet", None)
    options.pop("json", None)
    if cls is AttackConfig:
        if "norm" in options:
            options["norms"] = (options.pop("norm"),)
        if isinstance(options.get("attacks"), str):
            options["attacks"] = tuple(options["attacks"].split(","))
    try:
        return cls(**options)
    except (TypeError, UserError):
        return None


def _stage_done(path: Path, output: str, config: AttackConfig | LipschitzConfig) -> bool:
    """A stage is done when its output exists and was made with the same config.

    Records of format 2 hold their ``config``. Older ones (no ``format``) hold the stage command an
    earlier sweep ran as ``sweep_argv``, read back by :func:`_legacy_config`; an old record without
    it was made by a command by hand and counts as done, as it did then.
    """
    f = path / output
    if not f.is_file():
        return False
    try:
        rec = read_json(f)
        if output.startswith("attack-"):  # the npz must be the one its summary commits
            load_npz(f.with_suffix(".npz"))
    except UserError:
        return False
    if not isinstance(rec, dict):
        return False
    by_norm = rec.get("by_norm")
    if isinstance(config, LipschitzConfig) and isinstance(by_norm, dict) and "config" in by_norm.get(config.norm, {}):
        rec = by_norm[config.norm]  # lipschitz.json's top level is the norm estimated last
    if "config" in rec:
        return rec["config"] == config.to_dict()
    legacy = rec.get("sweep_argv")
    return legacy is None or _legacy_config(type(config), legacy) == config


def _train_done(path: Path, task: RunTask) -> bool:
    """The run is trained when its run.json (written last) records the request this task makes:
    what ``train --resume`` reuses. Holds for runs of earlier sweeps too (same request)."""
    if not ((path / RUN_FILE).is_file() and (path / MODEL_FILE).is_file()):
        return False
    try:
        meta = read_json(path / RUN_FILE)
    except UserError:
        return False
    return isinstance(meta, dict) and meta.get("request") == run_request(task.train, data_kwargs=task.data,
                                                                         model_spec=task.model)


def _on(config: Any, device: str | None) -> Any:
    """``config`` with its device replaced by the sweep's ``--device``, if one was given."""
    return config if device is None else dataclasses.replace(config, device=device)


def run_task(task: RunTask, *, threads: int | None = None, device: str | None = None, position: int = 1,
             progress: bool = True) -> dict:
    """Train, attack and estimate one run, skipping stages already complete. Returns its status."""
    if threads:
        torch.set_num_threads(int(threads))
    path = Path(task.path)
    stages = 1 + len(task.attacks) + (1 if task.lipschitz else 0)
    t0 = time.perf_counter()
    done_before = []
    with tqdm(total=stages, desc=task.name, position=position, leave=False, disable=not progress) as bar:
        bar.set_description_str(f"{task.name}: train")
        if _train_done(path, task):
            done_before.append("train")
        else:
            # a retrained model invalidates every later stage's output in this run
            for stale in [*path.glob("attack-*.json"), *path.glob("attack-*.npz"), path / "lipschitz.json"]:
                stale.unlink(missing_ok=True)
            config = _on(task.train, device)
            train_run(path, config, data_kwargs=task.data, model_spec=task.model, overwrite=path.exists(),
                      progress=False,
                      command=train_command_line(path, config, data_kwargs=task.data, model_spec=task.model))
        bar.update()
        for config, output in zip(task.attacks, task.attack_outputs):
            config = _on(config, device)
            bar.set_description_str(f"{task.name}: {Path(output).stem.replace('-', ' ', 1)}")
            if _stage_done(path, output, config):
                done_before.append(output)
            else:
                attack_run(path, config, progress=False)
            bar.update()
        if task.lipschitz:
            config = _on(task.lipschitz, device)
            bar.set_description_str(f"{task.name}: lipschitz")
            if _stage_done(path, "lipschitz.json", config):
                done_before.append("lipschitz.json")
            else:
                lipschitz_run(path, config, progress=False)
            bar.update()
    return {"name": task.name, "path": task.path, "skipped": done_before, "wall_time_s": time.perf_counter() - t0}


def _die_with_parent(parent: int) -> None:
    """End this worker process when its parent (the sweep) dies, even by ``kill -9``.

    Linux: the kernel sends SIGKILL on the parent's death (``PR_SET_PDEATHSIG``). Everywhere: a
    daemon thread checks once a second whether the process was re-parented. A worker left running
    would keep writing into run directories that a resumed sweep is also writing.
    """
    if sys.platform.startswith("linux"):
        try:
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
    if parent is not None:
        _die_with_parent(parent)
    torch.set_num_threads(threads)


def _run_task_quiet(task: RunTask, threads: int | None, device: str | None) -> dict:
    return run_task(task, threads=threads, device=device, progress=False)


# --------------------------------------------------------------------------- the sweep
def check_data(tasks: Sequence[RunTask]) -> None:
    """Read every data set the runs need from files once, before any training: a missing or broken
    file is one UserError naming the files and how to get them, not a failure hours into a study."""
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
    tasks = expand(spec, out, where=str(spec_path))
    check_data(tasks)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, out) from None
    with DirLock(out / ".sweep.lock", what=f"sweep folder {out}"):  # one sweep per folder
        return _run_sweep_locked(spec, spec_path, name, out, tasks, workers=workers, scheduler=scheduler,
                                 threads=threads, device=device, report=report, progress=progress, reduced=reduced)


def _run_sweep_locked(spec: dict, spec_path, name: str, out: Path, tasks: list[RunTask], *, workers: int,
                      scheduler: str | None, threads: int | None, device: str | None, report: bool | None,
                      progress: bool, reduced: bool) -> dict:
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

    def finished(status: dict) -> None:
        statuses[status["name"]] = status
        record()
        bar.update()

    try:
        _run_tasks(tasks, finished, name=name, workers=workers, scheduler=scheduler, threads=threads, device=device,
                   progress=progress)
    finally:
        bar.close()

    run_dirs = [t.path for t in tasks]
    table, compare_json = _compare(run_dirs)
    atomic_write_text(out / "compare.md", table)
    atomic_write_text(out / "compare.json", compare_json)
    do_report = spec.get("report", {}).get("enabled", True) if report is None else report
    report_dir, figures = None, None
    if do_report:
        res = build_report(run_dirs, out / "report", title=spec.get("report", {}).get("title"), progress=progress)
        report_dir, figures = str(out / "report"), res["figures"]
    rec = record(final=True)
    rec["compare"] = str(out / "compare.md")
    rec["report"] = report_dir
    rec["report_figures"] = figures
    rec["table"] = table
    return rec


def _run_tasks(tasks: Sequence[RunTask], finished, *, name: str, workers: int, scheduler: str | None,
               threads: int | None, device: str | None, progress: bool) -> None:
    """Run every task on a Dask cluster (``scheduler``), ``workers`` local processes or in this
    process, calling ``finished(status)`` as each completes."""
    if scheduler:
        try:  # dask is optional (pip install 'advrobust[dask]'): imported only for --scheduler
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
                finished(fut.result())
        finally:
            client.close()
    elif workers > 1:
        per = threads or DEFAULT_THREADS
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(per, os.getpid())) as pool:
            futs = [pool.submit(_run_task_quiet, t, per, device) for t in tasks]
            for fut in cf_completed(futs):
                finished(fut.result())
    else:
        for t in tasks:
            finished(run_task(t, threads=threads or DEFAULT_THREADS, device=device, progress=progress))


def _compare(run_dirs: Sequence[str]) -> tuple[str, str]:
    """compare.md and compare.json of the study: what ``python -m advrobust.compare RUNS --format
    markdown`` and ``... --json`` print (rows, and the law fits of every attacked norm)."""
    rows = collect_rows(run_dirs)
    fits = law_fits(rows, norms=row_norms(rows)) if rows else []
    table = format_table(rows, fmt="markdown") + format_fits(fits)
    return table, to_json({"rows": rows, "fits": fits, "paired": None}) + "\n"


if __name__ == "__main__":
    from advrobust.cli._common import run_main
    from advrobust.cli.sweep import main

    raise SystemExit(run_main(main))
