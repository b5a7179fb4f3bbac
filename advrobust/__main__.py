"""``python -m advrobust``: the commands, one line each; ``python -m advrobust CMD ARGS`` runs one
(the same as ``python -m advrobust.CMD ARGS``)."""
from __future__ import annotations

import importlib
import importlib.util
import sys

COMMANDS = (
    ("train", "train one model (or find the minimal interpolating width) into a run directory"),
    ("attack", "minimal adversarial radii per sample, with certified/exact bounds on request"),
    ("lipschitz", "Lipschitz lower and upper estimates of a run"),
    ("compare", "one row per model, the law-of-robustness fit below"),
    ("report", "self-contained HTML + Markdown + PDF figures"),
    ("sweep", "a whole study from a TOML spec: resumable, local or on a Dask cluster"),
    ("intrinsic", "intrinsic dimension of a run's training inputs"),
)


def command_module(name: str):
    """The module holding command ``name``'s ``main``: ``advrobust.cli.<name>`` for the commands whose
    command line has moved there, else ``advrobust.<name>``."""
    moved = importlib.util.find_spec(f"advrobust.cli.{name}") is not None
    return importlib.import_module(f"advrobust.cli.{name}" if moved else f"advrobust.{name}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    width = max(len(n) for n, _ in COMMANDS)
    lines = ["usage: python -m advrobust <command> [args] (or python -m advrobust.<command>); "
             "each command has --help", "", "commands:"]
    lines += [f"  {n:{width}s}  {text}" for n, text in COMMANDS]
    lines += ["", "docs: README.md and docs/ (attacks, certify, analysis, report, internals)"]
    if args and args[0] not in ("-h", "--help"):
        known = [n for n, _ in COMMANDS]
        if args[0] not in known:
            print(f"error: unknown command {args[0]!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
        from ._cli import run_main

        return run_main(command_module(args[0]).main, args[1:])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
