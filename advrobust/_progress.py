"""The one way a stage shows progress: a tqdm bar on stderr that names the stage.

Bars appear only once a stage has run for ``DELAY_S`` seconds, so short stages stay silent and every
stage longer than that shows what it is doing. ``enabled=False`` (the commands' ``--quiet``) turns
them off.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

#: seconds a stage runs before its bar appears
DELAY_S = 2.0


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        enabled: bool = True, leave: bool = False, **kwargs: Any):
    """A tqdm bar named ``desc`` (e.g. ``"certify crown"``); a no-op bar when ``enabled`` is False."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, leave=leave,
                delay=DELAY_S, file=sys.stderr, dynamic_ncols=True, **kwargs)


__all__ = ["DELAY_S", "bar"]
