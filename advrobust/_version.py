"""The version of advrobust: one place, read by the package, by run records and by setup.cfg."""

__version__ = "0.1.0"
