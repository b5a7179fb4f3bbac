"""Shared command-line plumbing: one-line errors for user mistakes, JSON output, parsers."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ..errors import UserError
from ..jsonio import to_json


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


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (what every command's ``--json`` does)."""
    sys.stdout.write(to_json(obj) + "\n")
    sys.stdout.flush()


def argument_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ``argparse.ArgumentParser`` whose usage errors raise :class:`UserError`.

    Plain argparse prints the usage plus a message and exits 2; through ``run_main`` this one
    gives the project's single ``error: ...`` line (still exit status 2). Keyword arguments go
    to ``argparse.ArgumentParser``.
    """

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # noqa: D401 - argparse hook
            raise UserError(f"{message} (see {self.prog} --help)")

    return _Parser(**kwargs)
