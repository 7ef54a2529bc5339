"""Figures (matplotlib, Agg backend)."""

from ._forward_figure import forward_figure
from ._reconstruction_figure import derived_maps, reconstruction_figure

__all__ = ["derived_maps", "forward_figure", "reconstruction_figure"]
