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


def option_flags(config: Any, *, skip: tuple[str, ...] = ()) -> list[str]:
    """The options of a command line for the fields of ``config`` not at their default (but those
    in ``skip``), in field order: ``--name value``; a bare ``--name`` for True; tuples
    comma-joined. What the commands record for a library call (``train``, ``attack``, ``lipschitz``)."""
    argv: list[str] = []
    for name, value in changed(config):
        flag = f"--{name.replace('_', '-')}"
        if name in skip or value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, tuple):
            argv += [flag, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def changed(config: Any) -> list[tuple[str, Any]]:
    """``(field, value)`` of each field not at its default, in field order: what a command line
    recorded for a library call needs to say."""
    default = type(config)()
    return [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name)]
