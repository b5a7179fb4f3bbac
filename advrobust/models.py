"""Model families indexed by a width, with exact parameter counts.

A model is described by a small JSON-able *spec*::

    {"family": "linear" | "mlp" | "cnn", "width": int | None, "depth": int,
     "input_shape": [...], "classes": int}

and built by :func:`build_model` as an ``nn.Sequential`` made only of ``nn.Flatten``,
``nn.Linear``, ``nn.Conv2d`` and ``nn.ReLU``, so that certification code can walk it layer
by layer. Inputs are in [0, 1]; there is no normalisation layer (a constant shift would be
absorbed by the first layer's bias anyway).

Families
--------
``linear``
    Flatten, Linear(classes). No width (``None``), no hidden layers (``depth`` 0).
``mlp``
    Flatten, ``depth`` x (Linear(width), ReLU), Linear(classes).
``cnn``
    Width is the capacity scale ``s`` of Madry et al. (ICLR 2018, section 4 "capacity"):
    Conv(C, 2s, 5x5, stride 2, pad 2), ReLU, Conv(2s, 4s, 5x5, stride 2, pad 2), ReLU,
    Flatten, ``depth`` x (Linear(64s), ReLU), Linear(classes). Stride-2 convolutions replace
    Madry et al.'s max pooling so the network stays a plain ReLU network (certifiable).
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from torch import nn

from .errors import UserError

FAMILIES = ("linear", "mlp", "cnn")
SPEC_KEYS = ("family", "width", "depth", "input_shape", "classes")

# cnn geometry (Madry et al.'s MNIST network with pooling folded into the stride)
_KERNEL, _STRIDE, _PAD = 5, 2, 2
_CONV1, _CONV2, _DENSE = 2, 4, 64  # filters / units per unit of capacity scale


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _conv_out(size: int) -> int:
    """Spatial size after one of the cnn's convolutions."""
    return (size + 2 * _PAD - _KERNEL) // _STRIDE + 1


def make_spec(family: str, width: int | None, *, input_shape: Sequence[int], classes: int,
              depth: int | None = None) -> dict:
    """Build and validate a model spec.

    Parameters
    ----------
    family : {"linear", "mlp", "cnn"}
    width : int or None
        Hidden units per layer (mlp) or capacity scale (cnn); must be ``None`` for linear.
    input_shape : sequence of int
        Shape of one input, e.g. ``[64]`` or ``[1, 8, 8]`` (cnn needs ``[C, H, W]``).
    classes : int
        Number of output logits (>= 2).
    depth : int, optional
        Number of hidden dense layers (mlp, cnn; default 1). Linear models have depth 0.

    Returns
    -------
    dict
        ``{"family", "width", "depth", "input_shape", "classes"}``, JSON-able.

    Raises
    ------
    UserError
        Unknown family, non-positive width or depth, width given for linear, cnn on
        non-image inputs, and similar mistakes.
    """
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    try:
        shape = [int(s) for s in input_shape]
    except (TypeError, ValueError):
        raise UserError(f"input_shape must be a list of positive integers, got {input_shape!r}") from None
    if not shape or any(s <= 0 for s in shape) or any(float(a) != float(b) for a, b in zip(shape, input_shape)):
        raise UserError(f"input_shape must be a non-empty list of positive integers, got {list(input_shape)!r}")
    if not _is_int(classes) or classes < 2:
        raise UserError(f"classes must be an integer >= 2, got {classes!r}")
    if family == "linear":
        if width is not None:
            raise UserError("a linear model has no width; leave --width out (or pass width=None)")
        if depth not in (None, 0):
            raise UserError(f"a linear model has no hidden layers; leave --depth out (got depth={depth!r})")
        return {"family": "linear", "width": None, "depth": 0, "input_shape": shape, "classes": int(classes)}
    if not _is_int(width) or width <= 0:
        raise UserError(f"{family} width must be a positive integer, got {width!r}")
    depth = 1 if depth is None else depth
    if not _is_int(depth) or depth < 1:
        raise UserError(f"{family} depth (number of hidden layers) must be an integer >= 1, got {depth!r}")
    if family == "cnn":
        if len(shape) != 3:
            raise UserError(f"cnn needs image inputs of shape [C, H, W], got input_shape {shape}; "
                            "use --model mlp for vector data")
    return {"family": family, "width": int(width), "depth": int(depth), "input_shape": shape, "classes": int(classes)}


def check_spec(spec) -> dict:
    """Validate a spec (e.g. read back from JSON) and return it normalised; UserError if bad."""
    if not isinstance(spec, dict):
        raise UserError(f"model spec must be a dict with keys {', '.join(SPEC_KEYS)}, got {type(spec).__name__}")
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise UserError(f"model spec is missing {', '.join(missing)}; expected keys {', '.join(SPEC_KEYS)}")
    return make_spec(spec["family"], spec["width"], input_shape=spec["input_shape"], classes=spec["classes"],
                     depth=spec["depth"])


def param_count(spec: dict) -> int:
    """Exact number of parameters of ``build_model(spec)``, in closed form.

    Parameters
    ----------
    spec : dict
        A model spec (see :func:`make_spec`).

    Returns
    -------
    int
        Weights plus biases, equal to ``sum(p.numel() for p in build_model(spec).parameters())``.
    """
    spec = check_spec(spec)
    k, w, depth = spec["classes"], spec["width"], spec["depth"]
    shape = spec["input_shape"]
    if spec["family"] == "linear":
        return (math.prod(shape) + 1) * k
    if spec["family"] == "mlp":
        d = math.prod(shape)
        # first hidden layer, (depth - 1) hidden-to-hidden layers, output layer
        return (d + 1) * w + (depth - 1) * (w + 1) * w + (w + 1) * k
    c, h, wd = shape
    c1, c2, dense = _CONV1 * w, _CONV2 * w, _DENSE * w
    h2, w2 = _conv_out(_conv_out(h)), _conv_out(_conv_out(wd))
    conv = (c * _KERNEL * _KERNEL + 1) * c1 + (c1 * _KERNEL * _KERNEL + 1) * c2
    flat = c2 * h2 * w2
    return conv + (flat + 1) * dense + (depth - 1) * (dense + 1) * dense + (dense + 1) * k


def width_for_params(family: str, target: int, *, input_shape, classes: int, depth: int | None = None) -> int:
    """The width whose parameter count is nearest ``target`` (the smaller width on a tie).

    For arms that hold p fixed while d or n changes: ``train --width p=N`` and a spec's
    ``width = "p=N"`` use it. The count grows strictly with the width, so a bisection finds it.

    Raises
    ------
    UserError
        When ``family`` has no width, or ``target`` is below the count at width 1.
    """
    if family == "linear":
        raise UserError("a linear model has no width to choose; 'p=N' needs --model mlp or cnn")
    if not _is_int(target) or target < 1:
        raise UserError(f"the parameter target must be a positive integer, got {target!r}")

    def count(w: int) -> int:
        return param_count(make_spec(family, w, input_shape=input_shape, classes=classes, depth=depth))

    if count(1) > target:
        raise UserError(f"p={target} is below the {family}'s {count(1)} parameters at width 1; "
                        "ask for a larger p")
    lo, hi = 1, 2
    while count(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: count(lo) <= target <= count(hi)
        mid = (lo + hi) // 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo if target - count(lo) <= count(hi) - target else hi


def _layers(spec: dict) -> list[nn.Module]:
    k, w, depth = spec["classes"], spec["width"], spec["depth"]
    shape = spec["input_shape"]
    if spec["family"] == "linear":
        return [nn.Flatten(), nn.Linear(math.prod(shape), k)]
    if spec["family"] == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(shape)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, w), nn.ReLU()]
            fan_in = w
        return layers + [nn.Linear(fan_in, k)]
    c, h, wd = shape
    c1, c2, dense = _CONV1 * w, _CONV2 * w, _DENSE * w
    layers = [nn.Conv2d(c, c1, _KERNEL, stride=_STRIDE, padding=_PAD), nn.ReLU(),
              nn.Conv2d(c1, c2, _KERNEL, stride=_STRIDE, padding=_PAD), nn.ReLU(),
              nn.Flatten()]
    fan_in = c2 * _conv_out(_conv_out(h)) * _conv_out(_conv_out(wd))  # (B, 4s, H/4, W/4) flattened
    for _ in range(depth):
        layers += [nn.Linear(fan_in, dense), nn.ReLU()]
        fan_in = dense
    return layers + [nn.Linear(fan_in, k)]


# Training holds about four float32 copies of the parameters (weights, gradients, Adam's two moments).
_COPIES = 4


def named_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules of a model in call order, with their dotted names (nested
    ``nn.Sequential`` are unrolled; anything else, the model itself included, is a leaf)."""
    if isinstance(model, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in model.named_children():
            for sub_name, sub in named_leaves(child):
                out.append((f"{name}.{sub_name}" if sub_name else name, sub))
        return out
    return [("", model)]


def memory_bytes() -> int | None:
    """Memory available to this process now (Linux MemAvailable, else physical memory); None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def max_params() -> int | None:
    """The largest parameter count whose training state fits in the memory available now."""
    mem = memory_bytes()
    return None if mem is None else mem // (4 * _COPIES)


def check_size(spec: dict) -> int:
    """Parameter count of ``spec``; UserError, before anything is allocated, when it cannot fit in memory.

    A spec asking for width 10^9 (a typo, or a crafted model.pt) would otherwise make the
    allocator fail with a traceback, or take the machine's memory from everything else.
    """
    p = param_count(spec)
    limit = max_params()
    if limit is not None and p > limit:
        raise UserError(f"model {describe(spec)} has {p:,} parameters ({p * 4 / 2**30:.1f} GiB of float32 weights, "
                        f"about {_COPIES}x that to train), more than the {memory_bytes() / 2**30:.1f} GiB of memory "
                        f"available allow (at most {limit:,}); choose a smaller width")
    return p


def build_model(spec: dict, *, seed: int = 0) -> nn.Sequential:
    """Build the network a spec describes, initialised deterministically from ``seed``.

    Parameters
    ----------
    spec : dict
        A model spec (see :func:`make_spec`); validated first.
    seed : int
        Seed for PyTorch's default initialisation. The global RNG is forked, so the caller's
        random state is left untouched; the same spec and seed give bit-identical weights.

    Returns
    -------
    torch.nn.Sequential
        Made only of ``Flatten``, ``Linear``, ``Conv2d`` and ``ReLU``, on the CPU, in float32.
    """
    spec = check_spec(spec)
    check_size(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return nn.Sequential(*_layers(spec))


def describe(spec: dict) -> str:
    """Short human name, e.g. ``mlp(width=64, depth=1)`` or ``linear``."""
    if spec["family"] == "linear":
        return "linear"
    return f"{spec['family']}(width={spec['width']}, depth={spec['depth']})"


__all__ = ["FAMILIES", "make_spec", "check_spec", "param_count", "check_size", "build_model", "describe",
           "select_device"]


def select_device(name: str | None) -> "torch.device":  # noqa: F821
    """``None``/'auto' -> cuda if available else cpu; otherwise a checked torch.device."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev
