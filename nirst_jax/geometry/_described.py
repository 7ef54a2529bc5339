"""Rebuilding a frozen dataclass chosen by the `kind` key of its JSON description."""

from __future__ import annotations


def from_kind_dict(data: dict, kinds: dict, what: str):
    """`kinds[data["kind"]](**rest)`; unknown kinds or keys are a ValueError naming `what`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in kinds:
        raise ValueError(f"{what} kind must be one of {sorted(kinds)}, got {kind!r}")
    try:
        return kinds[kind](**data)
    except TypeError as error:
        raise ValueError(f"bad {kind} {what} description: {error}") from None
