"""Drift statistics computed from sketches: a window's sketches against the reference side.

The reference side is exact (its rows are few and known: the reference's held-out test rows);
the window side is seen only through its sketches. Every function here is used both by the
monitor and by the null calibration (:mod:`embdrift.stream.calibration`), so the null is the
null of the statistic exactly as the sketches compute it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from embdrift.stream.basis import BatchFeatures
from embdrift.stream.sketches import (
    MeanSketch,
    MomentSketch,
    ProjectionQuantiles,
    RFFMeanSketch,
    _rff_terms,
    frechet_distance,
)

__all__ = [
    "GRID_SIZE",
    "STREAM_DECISION_METRICS",
    "STREAM_METRICS",
    "ReferenceSide",
    "WindowView",
    "effect_size",
    "sketch_statistics",
    "drift_scores",
]

#: Number of midpoint ranks (i + 0.5) / G at which quantile functions are compared.
GRID_SIZE = 256

#: Streaming metric name -> meaning, and how its null scales with 1/n + 1/m ("linear" for
#: squared distances and divergences, "sqrt" for distances).
STREAM_METRICS: Mapping[str, tuple[str, str]] = {
    "mmd": ("unbiased MMD² with random Fourier features of the frozen RBF kernel", "linear"),
    "mean_shift": ("norm of the mean shift of the standardised projections", "sqrt"),
    "spread_ratio": ("total variance of the projections, window / reference", "sqrt"),
    "frechet": ("Gaussian Fréchet distance of the standardised projections", "linear"),
    "wasserstein_pc1": ("1-D Wasserstein-1 on PC1 from quantiles, reference stds", "sqrt"),
    "sliced_wasserstein": ("mean 1-D Wasserstein-1 over all projections, reference stds", "sqrt"),
    "ks_pc1": ("Kolmogorov-Smirnov statistic on PC1", "sqrt"),
    "kl_pc1": ("KL(window ‖ reference) of PC1 histograms, nats, smoothed", "linear"),
    "js_pc1": ("Jensen-Shannon divergence of PC1 histograms, nats", "linear"),
    "reconstruction_error": (
        "1-D Wasserstein-1 of the residual norm outside the outer PCA subspace, reference stds",
        "sqrt",
    ),
    "residual_mean_shift": (
        "norm of the mean shift outside the outer PCA subspace, reference residual RMS norms",
        "sqrt",
    ),
}

#: The metrics whose min-p makes a window's verdict, as ``DECISION_METRICS`` in the batch
#: check (the batch's ``energy``, ``novelty`` and ``local_reconstruction_error`` have no
#: sketch, the last two needing each row's nearest anchors; the plain
#: ``reconstruction_error`` stands in): every metric added to the min-p costs power, the
#: others keep their own p-values.
STREAM_DECISION_METRICS = ("mmd", "reconstruction_error", "residual_mean_shift")

_GRID = (np.arange(GRID_SIZE) + 0.5) / GRID_SIZE


@dataclass(frozen=True, slots=True)
class ReferenceSide:
    """Exact summaries of reference rows: RFF sum, moments, sorted projections and residuals."""

    count: int
    rff_sum: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    sorted_values: np.ndarray  # (p + 1, n): projections then residual, each sorted
    quantiles: np.ndarray  # (p + 1, G) at the midpoint grid
    residual_mean: np.ndarray  # (d,) mean outside the outer subspace (StreamBasis.residual_mean)

    @classmethod
    def from_features(cls, features: BatchFeatures, residual_mean: np.ndarray) -> ReferenceSide:
        n = features.n_rows
        d2 = features.angles.shape[1]
        scale = 1.0 / np.sqrt(d2)
        angles = np.asarray(features.angles, dtype=np.float64)
        rff_sum = np.concatenate([np.cos(angles).sum(axis=0), np.sin(angles).sum(axis=0)]) * scale
        z = np.asarray(features.projections, dtype=np.float64)
        cols = np.vstack([z.T, np.asarray(features.residuals, dtype=np.float64)[None, :]])
        ordered = np.sort(cols, axis=1)
        return cls(
            count=n,
            rff_sum=rff_sum,
            mean=z.mean(axis=0),
            cov=np.cov(z, rowvar=False, ddof=1).reshape(z.shape[1], z.shape[1]),
            sorted_values=ordered,
            quantiles=_exact_quantiles(ordered, _GRID),
            residual_mean=residual_mean,
        )


def _exact_quantiles(ordered: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Inverse empirical CDF (the smallest value with CDF >= u) of each sorted row."""
    n = ordered.shape[1]
    idx = np.clip(np.ceil(ranks * n).astype(int) - 1, 0, n - 1)
    return ordered[:, idx]


@dataclass(frozen=True, slots=True)
class WindowView:
    """What the statistics read from a window's sketches."""

    count: int
    rff_sum: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    quantiles: np.ndarray  # (p + 1, G)
    pc1_cdf_points: np.ndarray  # points where the PC1 CDF was read
    pc1_cdf: np.ndarray  # F_window at those points
    pc1_edge_cdf: np.ndarray  # F_window at the reference PC1 bin edges
    residual_mean: np.ndarray  # (d,) mean outside the outer subspace (StreamBasis.residual_mean)

    @classmethod
    def from_sketches(
        cls,
        rff: RFFMeanSketch,
        moments: MomentSketch,
        quantiles: ProjectionQuantiles,
        means: MeanSketch,
        *,
        reference: ReferenceSide,
        pc1_edges: np.ndarray,
    ) -> WindowView:
        sketches = quantiles.projections + [quantiles.residual]
        grid = np.vstack([s.quantiles(_GRID) for s in sketches])
        pc1 = quantiles.projections[0]
        points = np.unique(np.concatenate([reference.sorted_values[0], grid[0]]))
        points = np.unique(points.astype(np.float32))
        return cls(
            count=rff.count,
            rff_sum=rff._sum,
            mean=moments._mean,
            cov=moments.covariance,
            quantiles=grid,
            pc1_cdf_points=points.astype(np.float64),
            pc1_cdf=pc1.cdf(points),
            pc1_edge_cdf=pc1.cdf(pc1_edges) if len(pc1_edges) else np.empty(0),
            residual_mean=means.basis.residual_mean(means._sum, means.count),
        )


def sketch_statistics(
    ref: ReferenceSide,
    win: WindowView,
    *,
    pc1_edges: np.ndarray,
    smoothing: float,
) -> np.ndarray:
    """The values (J,) of every metric in :data:`STREAM_METRICS`, in that order.

    Notes
    -----
    Quantile statistics use the midpoint grid u_i = (i + 0.5) / G, G = :data:`GRID_SIZE`:
    W1 ≈ (1/G) Σ_i |Q_ref(u_i) − Q_win(u_i)| (the quantile form of W1, Ramdas et al. (2017),
    Entropy 19, Eq. 2). With the KLL rank error ε, the window quantile at u is an exact
    quantile at some u' with |u' − u| ≤ ε, so the sketch value differs from the exact W1 of the
    same rows by at most (ε + 2/G) × (max − min of the pooled values) (the grid term bounds the
    midpoint rule for monotone quantile functions). KS is read at the reference values and at
    the window's grid quantiles: error ≤ ε + 1/G. PC1 bin masses are differences of two CDF
    reads: each within 2ε. ``sliced_wasserstein`` averages W1 over all projections (the
    top-k PCs and the random orthogonal directions).
    """
    n, m = ref.count, win.count
    mmd = float(_rff_terms(ref.rff_sum, n, win.rff_sum, m).sum())
    diff = win.mean - ref.mean
    mean_shift = float(np.sqrt(diff @ diff))
    tiny = np.finfo(np.float64).tiny
    spread = max(float(np.trace(win.cov)), tiny) / max(float(np.trace(ref.cov)), tiny)
    frechet = frechet_distance(ref.mean, ref.cov, win.mean, win.cov)
    w1 = np.abs(ref.quantiles - win.quantiles).mean(axis=1)
    p = ref.quantiles.shape[0] - 1
    # KS on PC1: exact reference ECDF against the sketch CDF at the shared points.
    f_ref = np.searchsorted(ref.sorted_values[0], win.pc1_cdf_points, side="right") / n
    ks = float(np.max(np.abs(f_ref - win.pc1_cdf)))
    # PC1 histograms with additive smoothing (as embdrift.stats.twosample.HistogramDivergence).
    n_bins = len(pc1_edges) + 1
    ref_counts = np.diff(
        np.concatenate([[0], np.searchsorted(ref.sorted_values[0], pc1_edges, "right"), [n]])
    )
    win_mass = np.diff(np.concatenate([[0.0], win.pc1_edge_cdf, [1.0]]))
    p_ref = (ref_counts + smoothing) / (n + n_bins * smoothing)
    q_win = (np.clip(win_mass, 0.0, 1.0) * m + smoothing) / (m + n_bins * smoothing)
    q_win = q_win / q_win.sum()
    kl = float(np.sum(q_win * np.log(q_win / p_ref)))
    mid = 0.5 * (p_ref + q_win)
    js = float(
        0.5 * np.sum(q_win * np.log(q_win / mid)) + 0.5 * np.sum(p_ref * np.log(p_ref / mid))
    )
    residual_diff = win.residual_mean - ref.residual_mean
    return np.array(
        [
            mmd,
            mean_shift,
            spread,
            frechet,
            float(w1[0]),
            float(w1[:p].mean()),
            ks,
            kl,
            js,
            float(w1[p]),
            float(np.sqrt(residual_diff @ residual_diff)),
        ]
    )


def drift_scores(values: np.ndarray) -> np.ndarray:
    """Map metric values (..., J) to scores where larger means more drift."""
    scores = np.array(values, dtype=np.float64, copy=True)
    j = list(STREAM_METRICS).index("spread_ratio")
    scores[..., j] = np.abs(np.log(scores[..., j]))
    return scores


def effect_size(name: str, value: float) -> float:
    """Scale-free size per metric (as in the batch check): sqrt(MMD²), JS / ln 2, ratio − 1."""
    if name == "mmd":
        return float(np.sqrt(max(value, 0.0)))
    if name == "js_pc1":
        return value / float(np.log(2.0))
    if name == "spread_ratio":
        return value - 1.0
    return value
