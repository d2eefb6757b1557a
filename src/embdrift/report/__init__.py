"""Figures and reports: matplotlib figures of a frozen projection, written deterministically."""

from __future__ import annotations

from embdrift.report.plots import (
    pc1_histogram_figures,
    pca_scatter_figure,
    save_figure,
)

__all__ = ["pc1_histogram_figures", "pca_scatter_figure", "save_figure"]
