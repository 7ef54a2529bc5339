"""Rebuilding frozen config dataclasses from their JSON-ready `asdict` form."""

from __future__ import annotations

from dataclasses import fields
from typing import Callable


def config_from_dict(cls, data: dict, what: str, nested: dict[str, Callable] | None = None):
    """`cls(**data)` with nested configs rebuilt; unknown keys are an error.

    Arguments:
        cls: the dataclass.
        data: its `asdict` form (e.g. read back from JSON).
        what: name for the error message (e.g. "phantom config").
        nested: field name → function rebuilding that field from its dict.

    Returns:
        The instance (validated by its own `__post_init__`).
    """
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} keys: {sorted(unknown)}")
    data = dict(data)
    for name, rebuild in (nested or {}).items():
        if name in data:
            data[name] = rebuild(data[name])
    return cls(**data)
