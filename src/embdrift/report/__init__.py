"""Figures and reports: matplotlib figures of a frozen projection, written deterministically,
and the self-contained HTML report (``embdrift.report.html``, imported on use because it pulls
in the explanation service)."""

from __future__ import annotations

from embdrift.report.plots import (
    drift_over_time_figure,
    figure_svg,
    pc1_histogram_figures,
    pca_scatter_figure,
    save_figure,
)

__all__ = [
    "drift_over_time_figure",
    "figure_svg",
    "pc1_histogram_figures",
    "pca_scatter_figure",
    "save_figure",
]
