"""Shared command-line plumbing: one-line errors for user mistakes, JSON output, seeding."""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable, Sequence


class UserError(Exception):
    """A mistake in the user's input (a name, a path, a value, a file).

    Commands report it as one line on stderr, ``error: <message>``, and exit with status 2.
    The message names the problem and how to fix it.
    """


EXIT_USER_ERROR = 2


def run_main(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; turn :class:`UserError` into a one-line message and exit status 2."""
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _jsonable(obj: Any) -> Any:
    """Convert numpy / torch scalars and non-finite floats into strict-JSON values."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if np is not None and isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if np is not None and isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return _jsonable(obj.item())
    return obj


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON (no NaN/Infinity tokens): NaN becomes null, +-inf the strings "inf"/"-inf"."""
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (what every command's ``--json`` does)."""
    sys.stdout.write(to_json(obj) + "\n")
    sys.stdout.flush()


def parse_norm(text: str | float | int) -> float:
    """``'l1'|'l2'|'linf'`` (or 1, 2, inf) -> 1.0, 2.0 or float('inf'); UserError otherwise."""
    names = {"l1": 1.0, "1": 1.0, "l2": 2.0, "2": 2.0, "linf": math.inf, "inf": math.inf}
    key = str(text).strip().lower().replace("-", "")
    if isinstance(text, (int, float)) and float(text) in (1.0, 2.0, math.inf):
        return float(text)
    if key not in names:
        raise UserError(f"unknown norm {text!r}; use one of l1, l2, linf")
    return names[key]


def norm_name(norm: float) -> str:
    """1 -> 'l1', 2 -> 'l2', inf -> 'linf'."""
    return {1.0: "l1", 2.0: "l2", math.inf: "linf"}[float(norm)]


def select_device(name: str | None) -> "torch.device":  # noqa: F821
    """``None``/'auto' -> cuda if available else cpu; otherwise a checked torch.device."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def argument_parser(**kwargs: Any) -> "argparse.ArgumentParser":  # noqa: F821
    """An ``argparse.ArgumentParser`` whose usage errors raise :class:`UserError`.

    Plain argparse prints the usage plus a message and exits 2; through ``run_main`` this one
    gives the project's single ``error: ...`` line (still exit status 2). Keyword arguments go
    to ``argparse.ArgumentParser``.
    """
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # noqa: D401 - argparse hook
            raise UserError(f"{message} (see {self.prog} --help)")

    return _Parser(**kwargs)
