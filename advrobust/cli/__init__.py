"""The command-line layer: one thin module per command (parse, build a config, call the library,
print). ``python -m advrobust`` lists the commands; ``python -m advrobust CMD ARGS`` runs one (the
same as ``python -m advrobust.CMD ARGS``). Library modules never import this package."""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from ._common import run_main

COMMANDS = (
    ("train", "train one model (or find the minimal interpolating width) into a run directory"),
    ("attack", "minimal adversarial radii per sample, with certified/exact bounds on request"),
    ("lipschitz", "Lipschitz lower and upper estimates of a run"),
    ("compare", "one row per model, the law-of-robustness fit below"),
    ("report", "self-contained HTML + Markdown + PDF figures"),
    ("sweep", "a whole study from a TOML spec: resumable, local or on a Dask cluster"),
    ("intrinsic", "intrinsic dimension of a run's training inputs"),
)

#: the module holding each command's ``main(argv)``
COMMAND_MODULES = {name: f"advrobust.cli.{name}" for name, _ in COMMANDS}


def command_main(name: str):
    """The ``main(argv)`` of command ``name`` (one of :data:`COMMANDS`)."""
    return importlib.import_module(COMMAND_MODULES[name]).main


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advrobust [CMD ARGS]``: the command list, or command ``CMD`` run on ``ARGS``."""
    args = list(sys.argv[1:] if argv is None else argv)
    width = max(len(n) for n, _ in COMMANDS)
    lines = ["usage: python -m advrobust <command> [args] (or python -m advrobust.<command>); "
             "each command has --help", "", "commands:"]
    lines += [f"  {n:{width}s}  {text}" for n, text in COMMANDS]
    lines += ["", "docs: README.md and docs/ (attacks, certify, analysis, report, internals)"]
    if args and args[0] not in ("-h", "--help"):
        if args[0] not in COMMAND_MODULES:
            print(f"error: unknown command {args[0]!r}; known: {', '.join(COMMAND_MODULES)}", file=sys.stderr)
            return 2
        return run_main(command_main(args[0]), args[1:])
    print("\n".join(lines))
    return 0
