"""Matplotlib figures of drift on the frozen reference projection.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend).
``save_figure`` writes byte-identical SVGs for identical inputs: no date in the metadata and a
fixed id salt.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Polygon
from scipy.spatial import ConvexHull, QhullError

__all__ = [
    "HEXBIN_ABOVE",
    "OutlinedRegion",
    "drift_over_time_figure",
    "figure_svg",
    "pc1_histogram_figures",
    "pca_scatter_figure",
    "save_figure",
]

#: A region to outline on the scatter: its label and the (k, 2) coordinates of its members.
OutlinedRegion = tuple[str, np.ndarray]

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


def figure_svg(fig: Figure) -> str:
    """``fig`` as an ``<svg>`` element for inlining in HTML, deterministically.

    The XML prolog, DOCTYPE, ``<metadata>`` block, comments (matplotlib writes each text as a
    comment) and the namespace declarations are dropped: inline SVG in HTML needs none of
    them, and the report then holds no URL at all.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "embdrift", "svg.fonttype": "path"}):
        fig.savefig(
            buffer,
            format="svg",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    return text.strip()


def pca_scatter_figure(
    reference_xy: np.ndarray,
    current_xy: np.ndarray,
    *,
    labels: tuple[str, str] = ("reference", "current"),
    title: str = "Embeddings on the reference PCA",
    regions: Sequence[OutlinedRegion] = (),
    shift_arrow: bool = False,
    spread_ellipses: bool = False,
) -> Figure:
    """Reference vs current on the first two frozen principal components (standardized).

    ``regions`` are outlined (convex hull of their members, or a circle around fewer than
    three distinct points) and labelled; ``shift_arrow`` draws the mean-shift arrow from the
    reference mean to the current mean; ``spread_ellipses`` draws each side's 2-standard-
    deviation covariance ellipse (the ellipse {z : (z − μ)ᵀ Σ⁻¹ (z − μ) = 4}).
    """
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
        if spread_ellipses and len(xy) > 2:
            _add_ellipse(ax, xy, color)
    if shift_arrow:
        start, end = reference_xy.mean(axis=0), current_xy.mean(axis=0)
        ax.annotate(
            "",
            xy=(float(end[0]), float(end[1])),
            xytext=(float(start[0]), float(start[1])),
            arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.8},
        )
        ax.plot([], [], color="black", label=f"mean shift ({np.linalg.norm(end - start):.2f})")
    for label, xy in regions:
        _outline(ax, label, np.asarray(xy, dtype=np.float64))
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


def _add_ellipse(ax: Axes, xy: np.ndarray, color: str) -> None:
    """The 2-sigma covariance ellipse of ``xy``: axes 2·2·sqrt(eigenvalues) along the
    eigenvectors of the sample covariance."""
    cov = np.cov(xy, rowvar=False)
    eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.maximum(eigval, 0.0)
    angle = float(np.degrees(np.arctan2(eigvec[1, 1], eigvec[0, 1])))
    mean = xy.mean(axis=0)
    ax.add_patch(
        Ellipse(
            (float(mean[0]), float(mean[1])),
            width=4.0 * float(np.sqrt(eigval[1])),
            height=4.0 * float(np.sqrt(eigval[0])),
            angle=angle,
            fill=False,
            edgecolor=color,
            linewidth=1.6,
            linestyle="--",
        )
    )


def _outline(ax: Axes, label: str, xy: np.ndarray) -> None:
    centre = xy.mean(axis=0)
    ax.scatter(xy[:, 0], xy[:, 1], s=10, marker="x", color="black", linewidths=0.8)
    hull = None
    if len(np.unique(xy, axis=0)) >= 3:
        try:
            hull = ConvexHull(xy)
        except QhullError:  # all points on a line
            hull = None
    if hull is not None:
        ax.add_patch(
            Polygon(xy[hull.vertices], closed=True, fill=False, edgecolor="black", linewidth=1.4)
        )
        top = float(xy[:, 1].max())
    else:
        radius = max(float(np.max(np.linalg.norm(xy - centre, axis=1))), 0.3)
        ax.add_patch(
            Ellipse(
                (float(centre[0]), float(centre[1])),
                2 * radius,
                2 * radius,
                fill=False,
                edgecolor="black",
                linewidth=1.4,
            )
        )
        top = float(centre[1]) + radius
    ax.annotate(
        label,
        xy=(float(centre[0]), top),
        xytext=(0, 4),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=9,
        fontweight="bold",
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85},
    )


def drift_over_time_figure(
    series: Sequence[tuple[datetime, float, float | None, bool]],
    *,
    metric: str = "mmd",
    title: str | None = None,
) -> Figure:
    """A metric over time from the store (``Store.drift_series``): its value, its threshold,
    and each drifted check shaded from the previous check to it (alerts)."""
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    times = [row[0] for row in series]
    values = np.array([row[1] for row in series], dtype=np.float64)
    thresholds = np.array(
        [np.nan if row[2] is None else row[2] for row in series], dtype=np.float64
    )
    drifted = [bool(row[3]) for row in series]
    x = np.arange(len(series))
    ax.plot(x, values, marker="o", color=CURRENT_COLOR, label=metric)
    if np.isfinite(thresholds).any():
        ax.step(x, thresholds, where="mid", color="black", linestyle="--", label="threshold")
    shaded = False
    for i, hit in enumerate(drifted):
        if hit:
            ax.axvspan(
                i - 0.5,
                i + 0.5,
                color=CURRENT_COLOR,
                alpha=0.15,
                linewidth=0,
                label=None if shaded else "drift alert",
            )
            shaded = True
    ax.set_xticks(x)
    ax.set_xticklabels([t.strftime("%m-%d %H:%M") for t in times], rotation=30, fontsize=7)
    ax.set_xlim(-0.6, max(len(series) - 0.4, 0.6))
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} over time ({len(series)} checks)")
    ax.grid(alpha=0.25)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
