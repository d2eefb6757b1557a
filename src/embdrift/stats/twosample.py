"""Two-sample statistics evaluated for many group assignments at once.

Each statistic is prepared once on the pooled sample (reference rows first, then current rows)
and then evaluated for a batch of assignments ``masks`` of shape (B, N): ``masks[b, i] == 1``
puts pooled row ``i`` on the reference side of assignment ``b``. The observed split is one
such row, and a permutation test is B random ones, so the observed value and its null come
from the very same arithmetic. Pairwise matrices (kernel, distances) are computed once and
reused by every assignment: one (B, N) x (N, N) product gives all within/between sums.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = [
    "EnergyStatistic",
    "HistogramDivergence",
    "KernelMMD",
    "MeanShift",
    "SpreadRatio",
    "TwoSampleStatistic",
    "Wasserstein1D",
    "pairwise_sq_distances",
]


class TwoSampleStatistic(Protocol):
    """What the permutation engine needs from a statistic."""

    def values(self, masks: np.ndarray) -> np.ndarray:
        """The statistic (B,) for each assignment in ``masks`` (B, N)."""
        ...

    def test_statistic(self, values: np.ndarray) -> np.ndarray:
        """Map values to a score where larger means more drift (identity for most)."""
        ...


def pairwise_sq_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between rows, float64, clipped at 0.

    Uses ``||a||^2 + ||b||^2 - 2 a b^T`` (one BLAS product); rounding can make tiny
    negative values, hence the clip, and the diagonal of ``a`` against itself is set to 0.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = a64 if b is None else np.asarray(b, dtype=np.float64)
    sq = (
        np.einsum("ij,ij->i", a64, a64)[:, None]
        + np.einsum("ij,ij->i", b64, b64)[None, :]
        - 2.0 * (a64 @ b64.T)
    )
    np.maximum(sq, 0.0, out=sq)
    if b is None:
        np.fill_diagonal(sq, 0.0)
    return sq


def _group_sums(matrix: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Within-reference, between and within-current sums of a symmetric matrix per assignment."""
    weighted = masks @ matrix  # (B, N): row b holds sum over reference-side rows j of M[j, i]
    s_xx = np.einsum("bi,bi->b", weighted, masks)
    s_xy = weighted.sum(axis=1) - s_xx
    s_yy = matrix.sum() - s_xx - 2.0 * s_xy
    return s_xx, s_xy, s_yy


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _sides(masks: np.ndarray) -> tuple[float, float]:
    n = float(masks[0].sum())
    return n, float(masks.shape[1]) - n


class KernelMMD:
    """Unbiased MMD² (U-statistic) with the Gaussian RBF kernel ``exp(-||x-y||² / (2 h²))``.

    Gretton et al. (2012), "A Kernel Two-Sample Test", JMLR 13, Eq. (3):
    MMD²_u = 1/(n(n-1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i,y_j) − 2/(nm) Σ k(x_i,y_j).
    The diagonal of an RBF kernel is 1, so the i≠j sums are the full sums minus n (or m).
    """

    def __init__(self, pooled: np.ndarray, *, bandwidth: float) -> None:
        self.kernel = np.exp(-pairwise_sq_distances(pooled) / (2.0 * bandwidth**2))

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        s_xx, s_xy, s_yy = _group_sums(self.kernel, masks)
        return (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m)

    test_statistic = staticmethod(_identity)


class EnergyStatistic:
    """Energy distance as the E-statistic 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (V-statistic means).

    Székely & Rizzo (2013), "Energy statistics: A class of statistics based on distances",
    J. Stat. Planning and Inference 143, Eq. (2.1), with sample means over all pairs; this is
    the convention of ``dcor.energy_distance`` and the square of ``scipy.stats.energy_distance``
    in one dimension. ``coefficient`` gives the energy coefficient H = E / (2E‖X−Y‖) in [0, 1].
    """

    def __init__(self, pooled: np.ndarray) -> None:
        self.distances = np.sqrt(pairwise_sq_distances(pooled))

    def parts(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(E-statistic, 2E‖X−Y‖) per assignment."""
        n, m = _sides(masks)
        s_xx, s_xy, s_yy = _group_sums(self.distances, masks)
        between = 2.0 * s_xy / (n * m)
        return between - s_xx / n**2 - s_yy / m**2, between

    def values(self, masks: np.ndarray) -> np.ndarray:
        return self.parts(masks)[0]

    test_statistic = staticmethod(_identity)


class Wasserstein1D:
    """Mean over columns of the 1-D Wasserstein-1 distance between the two sides.

    W1(u, v) = ∫ |U(t) − V(t)| dt over the empirical CDFs (Ramdas, García Trillos & Cuturi
    (2017), "On Wasserstein two-sample testing", Entropy 19, Eq. 2). The pooled values are
    sorted once; an assignment only changes which sorted positions are counted in which CDF,
    so each assignment costs one cumulative sum, O(B N) per column.
    """

    def __init__(self, values: np.ndarray) -> None:
        cols = np.asarray(values, dtype=np.float64)
        self._cols = cols[:, None] if cols.ndim == 1 else cols
        self._order = np.argsort(self._cols, axis=0, kind="stable")
        self._gaps = np.diff(np.take_along_axis(self._cols, self._order, axis=0), axis=0)

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        total = np.zeros(masks.shape[0])
        positions = np.arange(1, masks.shape[1])
        for j in range(self._cols.shape[1]):
            ref_count = np.cumsum(masks[:, self._order[:, j]], axis=1)[:, :-1]
            cdf_gap = np.abs(ref_count / n - (positions - ref_count) / m)
            total += cdf_gap @ self._gaps[:, j]
        return total / self._cols.shape[1]

    test_statistic = staticmethod(_identity)


class HistogramDivergence:
    """KL(current ‖ reference) or Jensen–Shannon divergence of binned 1-D values, in nats.

    Bin probabilities use additive (Lidstone) smoothing, p_b = (c_b + s) / (n + B s), so that
    an empty reference bin gives a finite KL instead of infinity. The smoothing biases the
    estimate towards 0 (a documented trade-off; s = 0.5 is the Krichevsky–Trofimov choice).
    The plug-in KL is biased upwards by about (B − 1) / (2 m) nats even with no drift, which is
    why decisions come from its permutation null rather than from a fixed threshold.
    """

    def __init__(self, bin_index: np.ndarray, *, n_bins: int, kind: str, smoothing: float) -> None:
        self.kind = kind
        self.smoothing = smoothing
        self._onehot = np.zeros((bin_index.size, n_bins))
        self._onehot[np.arange(bin_index.size), bin_index] = 1.0

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        ref_counts = masks @ self._onehot
        cur_counts = self._onehot.sum(axis=0) - ref_counts
        n_bins = self._onehot.shape[1]
        p = (ref_counts + self.smoothing) / (n + n_bins * self.smoothing)
        q = (cur_counts + self.smoothing) / (m + n_bins * self.smoothing)
        if self.kind == "kl":
            return _kl_rows(q, p)
        mid = 0.5 * (p + q)
        return 0.5 * _kl_rows(q, mid) + 0.5 * _kl_rows(p, mid)

    test_statistic = staticmethod(_identity)


def _kl_rows(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Σ_b q_b log(q_b / p_b) per row, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * np.log(q / p), 0.0)
    return terms.sum(axis=1)


class MeanShift:
    """Euclidean norm of the difference of side means of standardized PCA scores.

    With scores in units of the reference standard deviation per component, this is the
    Mahalanobis distance of the mean shift under the frozen diagonal covariance.
    """

    def __init__(self, scores: np.ndarray) -> None:
        self._scores = np.asarray(scores, dtype=np.float64)
        self._total = self._scores.sum(axis=0)

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        ref_sum = masks @ self._scores
        diff = (self._total - ref_sum) / m - ref_sum / n
        return np.sqrt(np.einsum("bk,bk->b", diff, diff))

    test_statistic = staticmethod(_identity)


class SpreadRatio:
    """Ratio of total variance (sum of unbiased per-component variances) current / reference.

    Tested two-sided through |log ratio|: a spread that grows or shrinks by the same factor is
    the same evidence.
    """

    def __init__(self, scores: np.ndarray) -> None:
        self._scores = np.asarray(scores, dtype=np.float64)
        self._squares = self._scores**2
        self._total = self._scores.sum(axis=0)
        self._total_sq = self._squares.sum(axis=0)

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        ref_sum = masks @ self._scores
        ref_sq = masks @ self._squares
        cur_sum = self._total - ref_sum
        cur_sq = self._total_sq - ref_sq
        ref_var = ((ref_sq - ref_sum**2 / n) / (n - 1)).sum(axis=1)
        cur_var = ((cur_sq - cur_sum**2 / m) / (m - 1)).sum(axis=1)
        tiny = np.finfo(np.float64).tiny
        return np.maximum(cur_var, tiny) / np.maximum(ref_var, tiny)

    @staticmethod
    def test_statistic(values: np.ndarray) -> np.ndarray:
        return np.abs(np.log(values))
