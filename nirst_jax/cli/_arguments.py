"""Argument types shared by the `nirst` subcommands."""

from __future__ import annotations

import argparse


def float_list(count: int | None = None):
    """An argparse type: comma-separated floats (exactly `count` of them if given)."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or (count is not None and len(values) != count):
            raise argparse.ArgumentTypeError(f"expected {count or 'some'} comma-separated numbers, got {text!r}")
        return values

    return parse
