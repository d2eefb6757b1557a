"""Matplotlib figures of drift on the frozen reference projection.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend).
``save_figure`` writes byte-identical SVGs for identical inputs: no date in the metadata and a
fixed id salt.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = ["HEXBIN_ABOVE", "pc1_histogram_figures", "pca_scatter_figure", "save_figure"]

#: Above this many points per side the scatter is drawn as density (hexbin), so that every
#: point counts instead of a silent subsample.
HEXBIN_ABOVE = 5000
REFERENCE_COLOR = "#1f77b4"
CURRENT_COLOR = "#d62728"


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as SVG or PNG (by suffix), deterministically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = target.suffix.lower().lstrip(".")
    with matplotlib.rc_context({"svg.hashsalt": "embdrift", "svg.fonttype": "path"}):
        if fmt == "svg":
            fig.savefig(target, format="svg", metadata={"Date": None})
        else:
            fig.savefig(target, format=fmt, dpi=120, metadata={"Software": None})
    return target


def pca_scatter_figure(
    reference_xy: np.ndarray,
    current_xy: np.ndarray,
    *,
    labels: tuple[str, str] = ("reference", "current"),
    title: str = "Embeddings on the reference PCA",
) -> Figure:
    """Reference vs current on the first two frozen principal components (standardized)."""
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    dense = max(len(reference_xy), len(current_xy)) > HEXBIN_ABOVE
    for xy, label, color in (
        (reference_xy, labels[0], REFERENCE_COLOR),
        (current_xy, labels[1], CURRENT_COLOR),
    ):
        if dense:
            ax.hexbin(
                xy[:, 0],
                xy[:, 1],
                gridsize=60,
                mincnt=1,
                bins="log",
                alpha=0.5,
                cmap="Blues" if color == REFERENCE_COLOR else "Reds",
            )
            ax.plot([], [], "s", color=color, label=f"{label} (n={len(xy)}, density)")
        else:
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=6,
                alpha=0.45,
                color=color,
                linewidths=0,
                label=f"{label} (n={len(xy)})",
            )
    for xy, color in ((reference_xy, REFERENCE_COLOR), (current_xy, CURRENT_COLOR)):
        ax.plot(*xy.mean(axis=0), marker="X", markersize=11, color=color, markeredgecolor="black")
    ax.set_xlabel("PC1 (reference standard deviations)")
    ax.set_ylabel("PC2 (reference standard deviations)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig


def pc1_histogram_figures(
    reference_pc1: np.ndarray,
    current_pc1: np.ndarray,
    *,
    labels: tuple[str, str] = ("reference", "current"),
    n_bins: int = 40,
) -> tuple[Figure, Figure]:
    """Two PC1 histograms with the same bins, x-range and y-scale, so they compare by eye."""
    lo = float(min(reference_pc1.min(), current_pc1.min()))
    hi = float(max(reference_pc1.max(), current_pc1.max()))
    edges = np.linspace(lo, hi, n_bins + 1)
    densities = [np.histogram(v, bins=edges, density=True)[0] for v in (reference_pc1, current_pc1)]
    top = 1.08 * max(float(d.max()) for d in densities)
    figures = []
    for values, label, color in (
        (reference_pc1, labels[0], REFERENCE_COLOR),
        (current_pc1, labels[1], CURRENT_COLOR),
    ):
        fig = Figure(figsize=(6.4, 3.2))
        ax = fig.add_subplot()
        ax.hist(values, bins=list(edges), density=True, color=color, alpha=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, top)
        ax.set_xlabel("PC1 (reference standard deviations)")
        ax.set_ylabel("density")
        ax.set_title(f"PC1, {label} (n={len(values)})")
        ax.grid(alpha=0.25)
        fig.tight_layout()
        figures.append(fig)
    return figures[0], figures[1]
