"""Training to interpolation (or for a fixed budget), minimal-width search, run directories.

``python -m advrobust.train --dataset digits --model mlp --width 64 --out runs/d64`` trains a
model and writes a run directory (``run.json`` + ``model.pt``, see :mod:`advrobust.runs`).

Python API
----------
:class:`TrainConfig`
    The optimisation settings (a dataclass; its comments say why each default is what it is).
:func:`train`
    ``train(model, data, config) -> record``: fit ``data.x_train, data.y_train``.
:func:`find_min_width`
    The smallest width of a family that interpolates the training set under the budget.
:func:`train_run`
    Load data, build (or search) the model, train it, write the run directory.

Existing run directories. Writing into a run directory that already exists is an error unless

- ``--overwrite`` (``overwrite=True``): the directory is *replaced* as a whole, including any
  attack or Lipschitz results it held (they described the old model). Only directories that are
  empty or look like run directories (hold ``run.json`` or ``model.pt``) are replaced.
- ``--resume`` (``resume=True``): a complete run made with the same request (data options,
  model family/width/depth, training settings other than the device) is reused as it is and
  nothing is trained; a run made with different settings is an error naming what differs.

A new run is assembled in a hidden sibling folder and moved into place only when complete, so an
interrupted command never leaves a half-written run directory behind.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence, TypedDict

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from attacks import ATTACKS

from .errors import UserError
from .norms import NORMS, norm_name, parse_norm

from .models import select_device
from .models import FAMILIES, build_model, describe, make_spec, param_count, width_for_params
from . import configs, intrinsic, runs
from .data import load_dataset

RUN_FORMAT = "advrobust-run/1"
OPTIMIZERS = ("adam", "sgd")
LOSSES = ("ce", "mse")
TARGETS = ("onehot", "pm1")
MODES = ("interpolate", "budget")
ADV_NORMS = tuple(NORMS)
DEFAULT_MAX_WIDTH = 1024
_HISTORY_POINTS = 200  # loss-history entries kept in a record (evenly spaced epochs)
_NAN_CHECK_S = 1.0  # look at the loss for NaN (one device sync) at most this often when not already


@dataclass
class TrainConfig:
    """How to train. Every field is JSON-able; ``run.json["spec"]["train"]`` holds them all.

    The defaults memorise the bundled digits data set with a width-64 MLP in about 200 epochs
    (well under a second of CPU time).
    """

    # Adam adapts per-parameter step sizes, so one learning rate works across widths, depths and
    # input scales: what a sweep over model sizes needs (SGD's good lr shifts with width).
    optimizer: str = "adam"
    # 1e-2 with full-batch Adam fits digits mlp-64 in ~200 epochs; 1e-3 needs ~4x more epochs,
    # 3e-2 is faster still but starts to oscillate on small widths.
    lr: float = 1e-2
    # Used by SGD only (the usual heavy-ball value); Adam has its own moment estimates.
    momentum: float = 0.9
    # None = full batch: the data sets this toolkit studies (n up to a few thousand) fit in
    # memory, full-batch steps are the fastest per epoch on a CPU, gradient descent is
    # deterministic, and the interpolation check reuses the epoch's own forward pass.
    batch_size: int | None = None
    # Cross-entropy is what practitioners train with; "mse" (square loss on the logits) is the
    # setting of much of the interpolation theory.
    loss: str = "ce"
    # Square-loss targets: one-hot (1 / 0) or +-1 (the +-1 convention of the theory papers).
    # Cross-entropy takes class indices; asking for pm1 with it is an error, not a no-op.
    targets: str = "onehot"
    # "interpolate": train until every training point is fitted (accuracy 1 and loss < tol),
    # the regime the law of robustness is about; "budget": exactly `epochs` epochs.
    mode: str = "interpolate"
    # The epoch cap (interpolate) or budget (budget). 3000 full-batch epochs is ~15x what
    # mlp-64 needs on digits, enough for width-8 MLPs to fit, and bounds a failing width's cost
    # in a min-width search to a few seconds.
    epochs: int = 3000
    # Interpolation also requires the mean training loss below tol: accuracy 1 alone can stop
    # at a near-zero margin, which would make radii depend on where training happened to stop.
    # At 1e-2 (CE) every point has probability >= 0.99 of its label on average.
    tol: float = 1e-2
    # Seeds the initialisation (build_model), minibatch order and adversarial-example starts.
    seed: int = 0
    # "auto": CUDA when available, else CPU. Not part of what a run *is* (see --resume).
    device: str = "auto"
    # Adversarial training (Madry et al., ICLR 2018): None trains on clean data. When a norm is
    # given, every minibatch is replaced by PGD examples within adv_eps of it.
    adv_norm: str | None = None
    adv_eps: float | None = None
    # 10 PGD steps: Madry et al.'s CIFAR setting (40 on MNIST); each costs a forward+backward.
    adv_steps: int = 10

    def validated(self) -> "TrainConfig":
        """Return a checked copy (norm names canonical); UserError naming the bad field."""
        c = dataclasses.replace(self)
        if c.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {c.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if c.loss not in LOSSES:
            raise UserError(f"unknown loss {c.loss!r}; use one of {', '.join(LOSSES)}")
        if c.targets not in TARGETS:
            raise UserError(f"unknown targets {c.targets!r}; use one of {', '.join(TARGETS)}")
        if c.loss == "ce" and c.targets != "onehot":
            raise UserError("targets=pm1 applies to the square loss only; add --loss mse or drop --targets")
        if c.mode not in MODES:
            raise UserError(f"unknown mode {c.mode!r}; use one of {', '.join(MODES)}")
        if not _finite_number(c.lr) or c.lr <= 0:
            raise UserError(f"learning rate must be a positive number, got {c.lr!r} (--lr)")
        if not _finite_number(c.momentum) or not 0 <= c.momentum < 1:
            raise UserError(f"momentum must be in [0, 1), got {c.momentum!r} (--momentum)")
        if c.batch_size is not None and (not configs.is_int(c.batch_size) or c.batch_size < 1):
            raise UserError(f"batch size must be a positive integer or None (full batch), got {c.batch_size!r}")
        if not configs.is_int(c.epochs) or c.epochs < 1:
            raise UserError(f"epochs must be a positive integer, got {c.epochs!r} (--epochs)")
        if not _finite_number(c.tol) or c.tol <= 0:
            raise UserError(f"tol must be a positive number, got {c.tol!r} (--tol)")
        if not configs.is_int(c.seed) or c.seed < 0:
            raise UserError(f"seed must be a non-negative integer, got {c.seed!r} (--seed)")
        if not configs.is_int(c.adv_steps) or c.adv_steps < 1:
            raise UserError(f"adv_steps must be a positive integer, got {c.adv_steps!r} (--adv-steps)")
        if c.adv_norm is None:
            if c.adv_eps is not None:
                raise UserError("adv_eps given without adv_norm; add --adv-norm l1|l2|linf or drop --adv-eps")
        else:
            c.adv_norm = norm_name(parse_norm(c.adv_norm))
            if not _finite_number(c.adv_eps) or c.adv_eps <= 0:
                raise UserError(f"adversarial training needs a positive --adv-eps, got {c.adv_eps!r}")
        return c

    def to_dict(self) -> dict:
        return configs.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a UserError."""
        return configs.from_dict(cls, d, "training")


class DataSpec(TypedDict, total=False):
    """The data of a run: keyword arguments of :func:`advrobust.data.load_dataset` (``name`` plus
    any of the others; ``run.json["spec"]["data"]`` holds all of them, defaults filled in)."""

    name: str
    n: int | None
    n_test: int | None
    resize: int | None
    label_noise: float
    seed: int
    data_dir: str | None
    dim: int | None
    classes: int | None
    labels: str
    flip: float


class ModelRequest(TypedDict, total=False):
    """The model of a run as asked for: ``family`` (required), ``width`` (an integer, ``"min"`` or
    ``"p=N"``; not for ``linear``), ``depth``; ``input_shape`` and ``classes`` come from the data
    and must match it when given."""

    family: str
    width: int | str | None
    depth: int | None
    input_shape: list[int]
    classes: int


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- training
def _loss_function(cfg: TrainConfig, y: torch.Tensor, classes: int):
    """``loss(logits, index) -> scalar`` where ``index`` selects the rows (None: all of them)."""
    if cfg.loss == "ce":
        return lambda logits, yb, rows: F.cross_entropy(logits, yb)
    table = torch.eye(classes, device=y.device)
    if cfg.targets == "pm1":
        table = 2 * table - 1
    targets = table[y]  # (n, classes), built once
    return lambda logits, yb, rows: F.mse_loss(logits, targets if rows is None else targets[rows])


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``train`` uses. Adam is the fused implementation where PyTorch has one for
    the parameters' device (CPU and CUDA): one kernel for the whole update instead of a dozen small
    ops per tensor, 1.2 to 1.6 times faster per full-batch digits epoch at widths 8 to 512 on a
    2-core CPU (experiments/bench_train.py measures train against a bare loop using this optimiser)."""
    if cfg.optimizer == "adam":
        params = list(model.parameters())
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
        return torch.optim.Adam(params, lr=cfg.lr, fused=fused or None)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


def _adversary(cfg: TrainConfig):
    """None for natural training, else ``adv(model, x, y, step)`` returning PGD examples."""
    if cfg.adv_norm is None:
        return None
    try:
        pgd = ATTACKS["pgd"].fn
    except ImportError as exc:
        raise UserError(f"adversarial training needs the PGD attack, which failed to import ({exc})") from None
    norm = parse_norm(cfg.adv_norm)

    def adversarial(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, step: int) -> torch.Tensor:
        model.eval()  # the attack contract: a model in eval mode
        try:
            # early_stop=False: the highest-loss point of the ball (Madry et al.'s inner max),
            # not the first adversarial one, for every sample
            adv = pgd(model, xb, yb, norm=norm, eps=cfg.adv_eps, steps=cfg.adv_steps,
                      seed=cfg.seed * 1_000_003 + step, early_stop=False)
        finally:
            model.train()
        return adv.detach()

    return adversarial


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, batch: int):
    """Mean loss, accuracy and predictions on (x, y), in chunks of ``batch``, without autograd."""
    total = torch.zeros((), device=x.device)
    preds = torch.empty_like(y)
    for i in range(0, x.shape[0], batch):
        logits = model(x[i:i + batch])
        rows = torch.arange(i, min(i + batch, x.shape[0]), device=x.device)
        total += loss_fn(logits, y[i:i + batch], rows) * logits.shape[0]
        preds[i:i + batch] = logits.argmax(1)
    n = max(int(y.shape[0]), 1)
    return float(total) / n, float((preds == y).sum()) / n, preds


def _check_model_data(model: nn.Module, x: torch.Tensor, y: torch.Tensor, what: str) -> int:
    """Number of logits; UserError if the model does not accept the data or labels are out of range."""
    if x.shape[0] != y.shape[0]:
        raise UserError(f"{what}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise UserError(f"{what} set is empty; ask for at least one point (--n / --n-test)")
    try:
        with torch.no_grad():
            out = model(x[:1])
    except RuntimeError as exc:
        raise UserError(f"the model does not accept inputs of shape {list(x.shape[1:])} "
                        f"({str(exc).splitlines()[0][:120]}); build it for the data's input_shape") from None
    if out.ndim != 2:
        raise UserError(f"the model must output logits of shape (batch, classes), got {list(out.shape)}")
    classes = int(out.shape[1])
    if y.min() < 0 or y.max() >= classes:
        raise UserError(f"{what} labels lie in [{int(y.min())}, {int(y.max())}] but the model has "
                        f"{classes} outputs; build it with classes={int(y.max()) + 1}")
    return classes


def _subsample(values: list[float], points: int = _HISTORY_POINTS) -> dict:
    if len(values) <= points:
        idx = list(range(len(values)))
    else:
        idx = sorted({round(i * (len(values) - 1) / (points - 1)) for i in range(points)})
    return {"epoch": idx, "loss": [values[i] for i in idx]}


def _diverged(loss: float, epoch: int, cfg: TrainConfig) -> UserError:
    return UserError(f"training diverged: the training loss is {loss} at epoch {epoch}; "
                     f"lower the learning rate (--lr, now {cfg.lr})")


#: epochs between two looks at the misfit count when a search may abandon a width (see train's give_up)
_PLATEAU_EVERY = 10


def _plateaued(misfits: list[int], losses: list[float], window: int) -> bool:
    """Whether the last ``window`` looks brought no new fewest-misfits and cut the loss by under 5%.

    ``misfits`` and ``losses`` are taken every :data:`_PLATEAU_EVERY` epochs. Both conditions:
    a width still memorising its last points lowers the loss even while its misfit count waits.
    """
    if len(misfits) < 2 * window:
        return False
    return min(misfits[-window:]) >= min(misfits[:-window]) and losses[-1] > 0.95 * losses[-window - 1]


def train(model: nn.Module, data: Any, config: TrainConfig, *, progress: bool = True,
          give_up: int | None = None) -> dict:
    """Train ``model`` on ``data.x_train, data.y_train`` in place.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs to logits; moved to ``config.device`` and left there, in eval mode.
    data : Dataset
        Anything with ``x_train, y_train, x_test, y_test`` tensors (``y_train_clean`` is used
        when present); see :func:`advrobust.data.load_dataset`.
    config : TrainConfig
    progress : bool
        Show a tqdm progress bar (on stderr).
    give_up : int, optional
        Full-batch interpolate mode only (the width search uses it): stop early, with ``stopped =
        "plateau"``, once ``give_up`` epochs (and at least as many before them) brought no new
        fewest-misfits and cut the loss by under 5%. Widths far below the interpolation threshold
        stall within a few hundred epochs; without this they run to the epoch cap.

    Returns
    -------
    dict
        ``train_accuracy, train_loss, test_accuracy, test_loss`` (the latter two ``None`` when
        there is no test set), ``train_accuracy_clean`` (against the labels before label noise),
        ``epochs`` (epochs run), ``steps`` (optimiser steps), ``interpolated`` (training accuracy
        1 and training loss < tol at the end), ``stopped`` ("interpolated", "epoch_cap",
        "plateau" or "budget"), ``wall_time_s``, ``device`` and ``loss_history`` (``{"epoch": [...],
        "loss": [...]}``, at most 200 evenly spaced epochs; the mean minibatch loss of that
        epoch, or for full-batch training the loss before its step).

    Notes
    -----
    Interpolation is checked once per epoch. Full batch: from the epoch's own forward pass,
    so the check is exact and free and training stops *before* a further step. Minibatches: when
    the epoch's mean minibatch loss is below ``tol``, one evaluation pass confirms it. With
    adversarial training, interpolation means fitting the *clean* training set (checked by one
    clean pass per epoch); the loss history holds the adversarial training loss.
    """
    # One function on purpose: the epoch loop's regimes (full batch with its free exact check,
    # minibatches, adversarial examples, the width search's plateau exit) share a dozen pieces of
    # state (history, steps, final, stopped, the plateau looks) that helpers would pass back and
    # forth every epoch; the Notes above say what each regime does.
    cfg = config.validated()
    device = select_device(cfg.device)
    model.to(device).train()
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    n = int(y.shape[0])
    classes = _check_model_data(model, x, y, "training")
    loss_fn = _loss_function(cfg, y, classes)
    optimizer = make_optimizer(model, cfg)
    adversary = _adversary(cfg)
    batch = n if cfg.batch_size is None else min(cfg.batch_size, n)
    full_batch = batch == n
    # evaluation chunks no larger than the training batch: a no-grad forward then never needs
    # more memory than a training step did
    eval_batch = batch
    interpolate = cfg.mode == "interpolate"
    # exact per-epoch check for free: full batch, clean data, interpolate mode
    exact_check = interpolate and full_batch and adversary is None
    shuffle = torch.Generator().manual_seed(cfg.seed)
    look = max(1, give_up // _PLATEAU_EVERY) if give_up and exact_check else None
    misfits: list[int] = []
    losses: list[float] = []

    # per-epoch training loss, written in place on the device: no per-step sync, and no small
    # tensors kept alive across steps (those fragment the CPU heap: +10 MiB RSS on digits)
    history = torch.full((cfg.epochs,), math.nan, device=device)
    recorded = 0
    final = None  # (loss, accuracy, preds) on the training set at the final parameters, if known
    stopped = "budget" if not interpolate else "epoch_cap"
    steps = epochs = 0
    last_look = time.monotonic()
    bar = tqdm(total=cfg.epochs, desc="train", unit="epoch", disable=not progress, leave=False,
               dynamic_ncols=True, file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    try:
        for epoch in range(cfg.epochs):
            if full_batch:
                xb = x if adversary is None else adversary(model, x, y, steps)
                logits = model(xb)
                loss = loss_fn(logits, y, None)
                history[epoch] = loss.detach()
                recorded += 1
                if exact_check:
                    # logits are those of the current parameters on the clean training set:
                    # one sync per epoch (the loss); accuracy is computed only once loss < tol
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise _diverged(value, epoch, cfg)
                    if value < cfg.tol:
                        preds = logits.detach().argmax(1)
                        if bool((preds == y).all()):
                            final = (value, 1.0, preds)
                            stopped = "interpolated"
                            break
                    if look is not None and epoch % _PLATEAU_EVERY == 0:
                        misfits.append(int((logits.detach().argmax(1) != y).sum()))
                        losses.append(value)
                        if _plateaued(misfits, losses, look):
                            stopped = "plateau"
                            break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
            else:
                order = torch.randperm(n, generator=shuffle).to(device)
                total = torch.zeros((), device=device)
                for i in range(0, n, batch):
                    rows = order[i:i + batch]
                    xb, yb = x[rows], y[rows]
                    if adversary is not None:
                        xb = adversary(model, xb, yb, steps)
                    loss = loss_fn(model(xb), yb, rows)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach()
                    steps += 1
                history[epoch] = total / math.ceil(n / batch)
                recorded += 1
            epochs += 1
            bar.update()
            if interpolate and not exact_check:
                value = float(history[epoch])
                if not math.isfinite(value):
                    raise _diverged(value, epoch, cfg)
                if adversary is not None or value < cfg.tol:
                    loss_v, acc, preds = _evaluate(model, x, y, loss_fn, eval_batch)
                    if acc == 1.0 and loss_v < cfg.tol:
                        final = (loss_v, acc, preds)
                        stopped = "interpolated"
                        break
            elif time.monotonic() - last_look > _NAN_CHECK_S:
                last_look = time.monotonic()
                value = float(history[epoch])
                if not math.isfinite(value):
                    raise _diverged(value, epoch, cfg)
                bar.set_postfix(loss=f"{value:.3g}", refresh=False)
    finally:
        bar.close()
    model.eval()
    if final is None:
        final = _evaluate(model, x, y, loss_fn, eval_batch)
    train_loss, train_acc, preds = final
    if not math.isfinite(train_loss):
        raise _diverged(train_loss, epochs, cfg)
    test_loss = test_acc = None
    if y_test.shape[0] > 0:
        _check_model_data(model, x_test, y_test, "test")
        test_loss_fn = _loss_function(cfg, y_test, classes)
        test_loss, test_acc, _ = _evaluate(model, x_test, y_test, test_loss_fn, eval_batch)
    clean = getattr(data, "y_train_clean", None)
    clean_acc = float((preds == clean.to(device)).float().mean()) if clean is not None else train_acc
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    values = history[:recorded].tolist()
    return {
        "train_accuracy": train_acc,
        "train_loss": train_loss,
        "train_accuracy_clean": clean_acc,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "epochs": epochs,
        "steps": steps,
        "interpolated": bool(train_acc == 1.0 and train_loss < cfg.tol),
        "stopped": stopped,
        "wall_time_s": wall,
        "device": str(device),
        "loss_history": _subsample(values),
    }


# --------------------------------------------------------------------------- minimal width
def _geometric(max_width: int) -> list[int]:
    out, w = [], 1
    while w < max_width:
        out.append(w)
        w *= 2
    return out + [max_width]


def search_patience(epochs: int) -> int:
    """Epochs without progress after which the width search abandons a width: a fifth of the
    epoch cap, at least 200 (see :func:`train`'s ``give_up``)."""
    return max(200, epochs // 5)


def _min_width_search(family: str, data: Any, config: TrainConfig, *, depth: int | None, widths: Sequence[int] | None,
                      max_width: int, progress: bool, give_up: int | None = -1):
    if family == "linear":
        raise UserError("a linear model has no width to search; use --model mlp or cnn with --width min")
    grid = sorted(set(int(w) for w in widths)) if widths is not None else _geometric(max_width)
    if not grid or grid[0] < 1:
        raise UserError(f"the width grid must hold positive integers, got {list(widths or [])}")
    meta = data.meta
    if give_up == -1:
        give_up = search_patience(config.epochs)
    tried: list[dict] = []
    models: dict[int, tuple[nn.Module, dict]] = {}
    t0 = time.perf_counter()
    bar = tqdm(desc="min width", unit="width", disable=not progress, leave=False, file=sys.stderr)

    def attempt(width: int) -> bool:
        spec = make_spec(family, width, input_shape=meta["input_shape"], classes=meta["classes"], depth=depth)
        model = build_model(spec, seed=config.seed)
        rec = train(model, data, config, progress=False, give_up=give_up)
        tried.append({"width": width, "params": param_count(spec), "interpolated": rec["interpolated"],
                      "train_accuracy": rec["train_accuracy"], "train_loss": rec["train_loss"],
                      "epochs": rec["epochs"], "stopped": rec["stopped"], "wall_time_s": rec["wall_time_s"]})
        bar.update()
        bar.set_postfix(width=width, fits=rec["interpolated"], refresh=True)
        if rec["interpolated"]:
            models[width] = (model, rec)
        return rec["interpolated"]

    try:
        lo, hi = 0, None  # largest failure below the first success, first success
        for w in grid:
            if attempt(w):
                hi = w
                break
            lo = w
        if hi is None:
            raise UserError(f"no {family} width up to {grid[-1]} interpolated the training set within "
                            f"{config.epochs} epochs; raise --epochs or --max-width, or raise --tol")
        while hi - lo > 1:  # bisection: invariant lo fails (or is 0), hi interpolates
            mid = (lo + hi) // 2
            if attempt(mid):
                hi = mid
            else:
                lo = mid
    finally:
        bar.close()
    record = {"width": hi, "largest_failure": lo or None, "grid": grid, "max_width": grid[-1],
              "give_up": give_up, "tried": tried, "wall_time_s": time.perf_counter() - t0}
    model, rec = models[hi]
    return hi, record, model, rec


def find_min_width(family: str, data: Any, config: TrainConfig, *, depth: int | None = None,
                   widths: Sequence[int] | None = None, max_width: int = DEFAULT_MAX_WIDTH,
                   progress: bool = False, give_up: int | None = -1) -> tuple[int, dict]:
    """Smallest width of ``family`` that interpolates ``data`` under ``config``'s epoch budget.

    Tries a grid of widths in increasing order (default 1, 2, 4, ..., ``max_width``) until one
    interpolates, then bisects between the last width that failed and that one. Interpolation
    need not be monotone in width; what is guaranteed is that the returned width interpolates
    and width - 1 was tried and does not (unless the returned width is the grid's first).

    Parameters
    ----------
    family : {"mlp", "cnn"}
    data : Dataset
    config : TrainConfig
        Every candidate is initialised from ``config.seed`` and trained with these settings.
    depth : int, optional
        Hidden layers (default 1).
    widths : sequence of int, optional
        The grid (default powers of two up to ``max_width``).
    max_width : int
        Largest width of the default grid.
    progress : bool
        Show a progress bar over the widths tried.
    give_up : int or None
        Abandon a width (full-batch training only) after this many epochs without progress
        (:func:`train`'s ``give_up``); default :func:`search_patience` of the epoch cap; None
        trains every width to the cap. Widths far below the threshold stall early, so this
        mostly saves the cost of the first failures.

    Returns
    -------
    width : int
    record : dict
        ``width``, ``largest_failure`` (largest tried width below it, None if none), ``grid``,
        ``max_width``, ``give_up``, ``tried`` (every width in the order tried, with params,
        interpolated, train_accuracy, train_loss, epochs, stopped, wall_time_s) and ``wall_time_s``.

    Raises
    ------
    UserError
        When no width in the grid interpolates.
    """
    width, record, _, _ = _min_width_search(family, data, config.validated(), depth=depth, widths=widths,
                                            max_width=max_width, progress=progress, give_up=give_up)
    return width, record


# --------------------------------------------------------------------------- run directories
def _data_spec(data_kwargs: dict) -> dict:
    """All of load_dataset's arguments (defaults filled in), so the spec rebuilds the data."""
    try:
        bound = inspect.signature(load_dataset).bind(**data_kwargs)
    except TypeError as exc:
        raise UserError(f"bad data options {sorted(data_kwargs)}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _request(data_spec: dict, model_req: dict, cfg: TrainConfig, max_width: int | None) -> dict:
    train_req = {k: v for k, v in cfg.to_dict().items() if k != "device"}
    req = {"data": data_spec, "model": model_req, "train": train_req}
    if model_req.get("width") == "min":
        req["max_width"] = max_width
    return req


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _prepare_out(out: Path, *, resume: bool, overwrite: bool, request: dict) -> bool:
    """Check what is at ``out``; True when a complete identical run can be reused."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other; pick one")
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory; choose another --out")
    if not any(out.iterdir()):
        return False
    looks_like_run = (out / runs.RUN_FILE).exists() or (out / runs.MODEL_FILE).exists()
    if overwrite:
        if not looks_like_run:
            raise UserError(f"--out {out} is a non-empty folder that is not a run directory; "
                            "refusing to replace it (choose another --out)")
        return False
    if resume and runs.is_run_dir(out):
        meta = runs.read_json(out / runs.RUN_FILE, what="run record")
        old = meta.get("request") if isinstance(meta, dict) else None
        if old == request:
            runs.load_run(out)  # a corrupt or foreign checkpoint (checksum, format) is not reused
            return True
        what = ", ".join(_diff(old, request)[:6]) if isinstance(old, dict) else "no request recorded"
        raise UserError(f"run directory {out} was made with different settings ({what}); "
                        "use --overwrite to replace it or choose another --out")
    if resume:
        raise UserError(f"{out} exists but is not a complete run directory; use --overwrite to replace it")
    raise UserError(f"run directory {out} already exists; pass --resume to reuse it (same settings) "
                    "or --overwrite to replace it, or choose another --out")


def train_run(out_dir: str | os.PathLike, config: TrainConfig, *, data_kwargs: DataSpec, model_spec: ModelRequest,
              command: str | None = None, resume: bool = False, overwrite: bool = False,
              max_width: int = DEFAULT_MAX_WIDTH, progress: bool = True) -> Path:
    """Load data, build and train a model, and write the run directory ``out_dir``.

    Parameters
    ----------
    out_dir : path
        The run directory to create (see the module docstring for existing directories).
    config : TrainConfig
    data_kwargs : DataSpec
        Arguments of :func:`advrobust.data.load_dataset` (a typed dict).
    model_spec : ModelRequest
        ``{"family", "width", "depth"}`` (``input_shape`` and ``classes`` are taken from the
        data and must match it if given). ``width="min"`` runs :func:`find_min_width`; ``"p=N"``
        the width nearest N parameters.
    command : str, optional
        The command line recorded in run.json (default: this process's argv).
    resume, overwrite : bool
        What to do when ``out_dir`` exists (module docstring).
    max_width : int
        Largest width of the min-width search.
    progress : bool
        Progress bars on stderr.

    Returns
    -------
    pathlib.Path
        The run directory. Its ``run.json`` holds ``spec`` (``data``: every load_dataset
        argument, ``model``: the full model spec, ``train``: the TrainConfig), ``request``,
        seed, params, n, n_test, d, classes, label_noise, noisy, scale, accuracies, losses,
        interpolated, epochs, steps, stopped, wall_time_s, loss_history, data_meta, versions,
        device, command, created, ``files`` (model.pt's sha256 and size, checked on load) and
        (with ``width="min"``) ``min_width_search``.
    """
    out = Path(out_dir)
    cfg = config.validated()
    with runs.run_lock(out):  # a second writer of this run gets an error naming this process
        runs.recover_leftovers(out)  # a killed writer's .partial-/.old- folders
        return _train_run_locked(out, cfg, data_kwargs=data_kwargs, model_spec=model_spec, command=command,
                                 resume=resume, overwrite=overwrite, max_width=max_width, progress=progress)


def run_request(config: TrainConfig, *, data_kwargs: DataSpec, model_spec: ModelRequest,
                max_width: int = DEFAULT_MAX_WIDTH) -> dict:
    """What ``run.json["request"]`` records for :func:`train_run` with these arguments: what the run
    *is* (data, model as asked for, training settings except the device). ``resume=True`` reuses a
    run whose request equals it, and so does the sweep. UserError for a malformed request."""
    family, width, _, _ = _check_model_request(model_spec, max_width)
    return _request(_data_spec(data_kwargs), {"family": family, "width": width, "depth": model_spec.get("depth")},
                    config.validated(), max_width)


def command_line(out_dir: str | os.PathLike, config: TrainConfig, *, data_kwargs: DataSpec,
                 model_spec: ModelRequest, max_width: int = DEFAULT_MAX_WIDTH) -> str:
    """A ``python -m advrobust.train`` command equivalent to this :func:`train_run` call (options at
    their defaults left out): recorded in run.json when a library caller (the sweep) has none.
    The command takes one ``--seed`` for data and training; the data's seed is the config's here."""
    argv = ["python", "-m", "advrobust.train"]
    data, defaults = _data_spec(data_kwargs), _data_spec({})
    for key, value in data.items():
        if key != "seed" and value != defaults[key]:
            argv += ["--dataset" if key == "name" else f"--{key.replace('_', '-')}", str(value)]
    argv += ["--model", str(model_spec["family"])]
    for key in ("width", "depth"):
        if model_spec.get(key) is not None:
            argv += [f"--{key}", str(model_spec[key])]
    if max_width != DEFAULT_MAX_WIDTH:
        argv += ["--max-width", str(max_width)]
    return shlex.join(argv + configs.option_flags(config) + ["--out", str(out_dir)])


def _check_model_request(model_spec: ModelRequest, max_width: int) -> tuple[str, Any, Any, int | None]:
    """(family, width, depth, p=N target) of a model request, checked before any data is loaded."""
    if not isinstance(model_spec, dict) or "family" not in model_spec:
        raise UserError("model_spec must be a dict with at least 'family' (and 'width', 'depth')")
    family, width, depth = model_spec["family"], model_spec.get("width"), model_spec.get("depth")
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    if family != "linear" and width is None:
        raise UserError(f"--width is required for {family}: {WIDTH_FORMS}")
    target = params_target(width)  # a malformed 'p=N' fails before any data is loaded
    if not configs.is_int(max_width) or max_width < 1:
        raise UserError(f"--max-width must be a positive integer, got {max_width!r}")
    return family, width, depth, target


def _train_run_locked(out: Path, cfg: TrainConfig, *, data_kwargs: DataSpec, model_spec: ModelRequest,
                      command: str | None, resume: bool, overwrite: bool, max_width: int, progress: bool) -> Path:
    family, width, depth, target = _check_model_request(model_spec, max_width)
    data_spec = _data_spec(data_kwargs)
    request = _request(data_spec, {"family": family, "width": width, "depth": depth}, cfg, max_width)
    if _prepare_out(out, resume=resume, overwrite=overwrite, request=request):
        return out
    device = select_device(cfg.device)  # fail early on a bad device, before loading data
    data = load_dataset(**data_spec)
    meta = data.meta
    given_shape, given_classes = model_spec.get("input_shape"), model_spec.get("classes")
    if given_shape is not None and list(given_shape) != list(meta["input_shape"]):
        raise UserError(f"model_spec input_shape {list(given_shape)} does not match the data's {meta['input_shape']}")
    if given_classes is not None and given_classes != meta["classes"]:
        raise UserError(f"model_spec classes {given_classes} does not match the data's {meta['classes']}")
    search = None
    if width == "min":
        width, search, model, rec = _min_width_search(family, data, cfg, depth=depth, widths=None,
                                                      max_width=max_width, progress=progress)
        spec = make_spec(family, width, input_shape=meta["input_shape"], classes=meta["classes"], depth=depth)
    else:
        if target is not None:
            width = width_for_params(family, target, input_shape=meta["input_shape"], classes=meta["classes"],
                                     depth=depth)
        elif isinstance(width, str):
            raise UserError(f"width must be {WIDTH_FORMS}, got {width!r}")
        spec = make_spec(family, width, input_shape=meta["input_shape"], classes=meta["classes"], depth=depth)
        model = build_model(spec, seed=cfg.seed)
        rec = train(model, data, cfg, progress=progress)
    record = {
        "format": RUN_FORMAT,
        "spec": {"data": data_spec, "model": spec, "train": cfg.to_dict()},
        "request": request,
        "seed": cfg.seed,
        "params": param_count(spec),
        "model": describe(spec),
        "n": meta["n"], "n_test": meta["n_test"], "d": meta["d"], "classes": meta["classes"],
        "label_noise": meta.get("label_noise"), "noisy": meta.get("noisy"), "scale": meta.get("scale"),
        **{k: v for k, v in rec.items() if k != "device"},
        "data_meta": {k: v for k, v in meta.items() if k != "spec"},
        "intrinsic_dim": intrinsic.run_record(data.x_train, meta),
        "versions": runs.versions(),
        "device": runs.device_info(device),
        "command": command if command is not None else shlex.join(["python", *sys.argv]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if search is not None:
        record["min_width_search"] = search
    if target is not None:
        # an arm at fixed p: compare groups these runs by the target, not by their widths
        record["params_target"] = target
    _write_run(out, model, spec, record)
    return out


def _write_run(out: Path, model: nn.Module, spec: dict, record: dict) -> None:
    """Write model.pt and run.json into a hidden sibling folder, then swap it in at ``out`` whole."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder for --out {out}: {exc.strerror}") from None
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        runs.save_model(tmp / runs.MODEL_FILE, model, spec)
        # run.json, written last, commits the folder: it names model.pt's checksum (verified on load)
        record["files"] = {runs.MODEL_FILE: runs.file_digest(tmp / runs.MODEL_FILE)}
        runs.atomic_write_json(tmp / runs.RUN_FILE, record)
        runs.replace_dir(tmp, out)  # the old run or the new one is at `out` at every instant
    except OSError as exc:
        raise UserError(f"cannot write the run directory {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- widths
WIDTH_FORMS = "a positive integer, 'min' (the smallest width that interpolates) or 'p=N' (the width nearest N parameters)"


def params_target(width: Any) -> int | None:
    """N for a width given as ``"p=N"`` (a fixed parameter count), else None; UserError if malformed."""
    if not isinstance(width, str) or not width.startswith("p="):
        return None
    try:
        target = int(width[2:])
    except ValueError:
        target = 0
    if target < 1:
        raise UserError(f"width {width!r}: N in 'p=N' must be a positive integer, e.g. p=17922")
    return target


if __name__ == "__main__":
    from advrobust.cli._common import run_main
    from advrobust.cli.train import main

    raise SystemExit(run_main(main))
