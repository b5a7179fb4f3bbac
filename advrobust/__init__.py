"""advrobust: measure how robust neural networks are, and how that depends on their size.

Stages (each reads and writes plain files in a run directory):
``data`` -> ``models`` -> ``train`` -> ``runs`` -> attacks (package ``attacks``) ->
``certify`` / ``lipschitz`` -> ``law`` -> ``compare`` / ``report`` / ``sweep``.
"""

from ._version import __version__

__all__ = ["__version__", "radii", "Radii"]


def __getattr__(name):
    # advrobust.radii / advrobust.Radii without importing torch at package import (the CLIs import
    # only what they use)
    if name in ("radii", "Radii"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'advrobust' has no attribute {name!r}")
