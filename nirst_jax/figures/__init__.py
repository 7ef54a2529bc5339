"""Figures: `matplotlib.figure.Figure`s built outside pyplot (no backend is selected, so
notebooks keep theirs); `save_figure` writes them."""

from ._box_plots import box_plots
from ._comparison_figure import comparison_figure
from ._forward_figure import forward_figure
from ._reconstruction_figure import reconstruction_figure

__all__ = ["box_plots", "comparison_figure", "forward_figure", "reconstruction_figure"]
