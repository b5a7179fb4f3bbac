"""advrobust: measure how robust neural networks are, and how that depends on their size.

Stages (each reads and writes plain files in a run directory):
``data`` -> ``models`` -> ``train`` -> ``runs`` -> attacks (package ``attacks``) ->
``certify`` / ``lipschitz`` -> ``law`` -> ``compare`` / ``report`` / ``sweep``.
"""

__version__ = "0.1.0"
