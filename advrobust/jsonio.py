"""Strict JSON for every file and ``--json`` output: NaN becomes null, infinities the strings
"inf"/"-inf", numpy and torch scalars plain numbers."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """Convert numpy / torch scalars and non-finite floats into strict-JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return jsonable(obj.item())
    return obj


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON (no NaN/Infinity tokens): NaN becomes null, +-inf the strings "inf"/"-inf"."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)
