"""Figures (matplotlib, Agg backend)."""

from ._box_plots import box_plots
from ._comparison_figure import comparison_figure
from ._forward_figure import forward_figure
from ._reconstruction_figure import reconstruction_figure

__all__ = ["box_plots", "comparison_figure", "forward_figure", "reconstruction_figure"]
