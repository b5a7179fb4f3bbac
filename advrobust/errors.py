"""The exception types of advrobust.

Every library module raises these; only the command-line layer (``advrobust.cli``) turns them
into a one-line ``error: ...`` message and exit status 2.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (a name, a path, a value, a file).

    The message names the problem and how to fix it. Commands report it as one line on stderr,
    ``error: <message>``, and exit with status 2; from Python it is an ordinary exception.
    """
