"""Box plots of per-phantom metrics (the study's Fig. 2 / Fig. S2)."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..evaluation import CHROMOPHORE_LABELS, METRIC_LABELS, METRICS  # noqa: E402


def box_plots(scores, title: str = ""):
    """One panel per metric (rows) and chromophore (columns), one box per method.

    Arguments:
        scores: `nirst_jax.evaluation.Scores`.
        title: figure title.

    Returns:
        The matplotlib figure.
    """
    methods = scores.methods
    figure = Figure(figsize=(4.2 * 3, 3.2 * len(METRICS)))
    axes = figure.subplots(len(METRICS), 3, squeeze=False)
    for i, metric in enumerate(METRICS):
        for c, chromophore in enumerate(CHROMOPHORE_LABELS):
            axis = axes[i, c]
            axis.boxplot([scores.values[m][metric][:, c] for m in methods], showfliers=True)
            axis.set_xticks(range(1, len(methods) + 1), methods, rotation=20)
            axis.set_title(f"{chromophore}: {METRIC_LABELS[metric]}")
            if metric == "mse":
                axis.set_yscale("log")
            axis.grid(axis="y", alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
