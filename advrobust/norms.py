"""Norm names for the library: :func:`parse_norm` turns a user's name into the exponent.

The vocabulary itself lives in :mod:`attacks.norms`; this module only turns its ValueError into
a :class:`~advrobust.errors.UserError`.
"""
from __future__ import annotations

from attacks.norms import INF, NORMS, dual, lp_norm, norm_name, norm_value, row_norm

from .errors import UserError

__all__ = ["INF", "NORMS", "dual", "lp_norm", "norm_name", "parse_norm", "row_norm"]


def parse_norm(text: str | float | int) -> float:
    """``'l1'|'l2'|'linf'`` (or 1, 2, inf) -> 1.0, 2.0 or float('inf'); UserError otherwise."""
    try:
        return norm_value(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None
