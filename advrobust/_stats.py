"""The one quantile definition every summary, table, report and JSON record uses.

Quantiles are taken without interpolation (the inverted empirical CDF, numpy's ``method="inverted_cdf"``):
the q-quantile of n sorted values is the ``ceil(q n)``-th smallest. So a median is always an observed value,
the lower of the two middle values when n is even, never their mean. Two reasons: a median radius is then
the radius of an actual point (an exact radius and an attack's upper bound on the same points compare
point for point), and ``inf`` (an unbroken point) stays ``inf`` instead of turning an average into ``nan``.
NaN entries (not attacked) are dropped first; an empty input gives NaN.
"""

from __future__ import annotations

import math

import numpy as np


def quantile(values, q: float) -> float:
    """The ``ceil(q n)``-th smallest of the non-NaN values (NaN when there are none)."""
    s = np.sort(np.asarray(values, dtype=np.float64).ravel())
    s = s[~np.isnan(s)]
    if s.size == 0:
        return math.nan
    return float(s[min(s.size - 1, max(0, math.ceil(q * s.size) - 1))])


def median(values) -> float:
    """The lower median: :func:`quantile` at 1/2 (an observed value; NaN when empty)."""
    return quantile(values, 0.5)


__all__ = ["median", "quantile"]
