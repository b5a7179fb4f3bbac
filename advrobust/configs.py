"""What the config dataclasses share (:class:`advrobust.train.TrainConfig`,
:class:`advrobust.attack.AttackConfig`, :class:`advrobust.lipschitz.LipschitzConfig`): plain-JSON
dicts both ways, and the fields where a config departs from the defaults."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from .errors import UserError

C = TypeVar("C")


def is_int(v: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, not a count to a user)."""
    return isinstance(v, int) and not isinstance(v, bool)


def to_dict(config: Any) -> dict:
    """A config's fields as plain JSON types (tuples as lists): what result files record as ``config``."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_dict(cls: type[C], d: Mapping[str, Any], what: str) -> C:
    """``cls(**d)`` (checked by the class), with unknown keys a UserError naming the known ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return cls(**d)


def changed(config: Any) -> list[tuple[str, Any]]:
    """``(field, value)`` of each field not at its default, in field order: what a command line
    recorded for a library call needs to say."""
    default = type(config)()
    return [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name)]
