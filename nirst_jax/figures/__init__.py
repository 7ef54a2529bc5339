"""Figures (matplotlib, Agg backend)."""

from ._forward_figure import forward_figure

__all__ = ["forward_figure"]
