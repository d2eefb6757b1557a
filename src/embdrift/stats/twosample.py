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
    "FeatureMMD",
    "HistogramDivergence",
    "KernelMMD",
    "MeanDifference",
    "MeanShift",
    "OnRows",
    "SpreadRatio",
    "TwoSampleStatistic",
    "Wasserstein1D",
    "knn_mean_distance",
    "pairwise_sq_distances",
    "random_fourier_features",
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


def _sides(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current group sizes (B,) of each assignment (float64)."""
    n = masks.sum(axis=1, dtype=np.float64)
    return n, masks.shape[1] - n


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


class FeatureMMD:
    """Unbiased MMD² from explicit features with unit norm, e.g. random Fourier features.

    With φ(x) = [cos(Wᵀx), sin(Wᵀx)] / sqrt(J) (Rahimi & Recht (2007), "Random Features for
    Large-Scale Kernel Machines", NIPS, Sec. 3; W with columns drawn from N(0, h⁻² I)),
    φ(x)·φ(y) is an unbiased estimate of the RBF kernel and ‖φ(x)‖² = 1 exactly. The U-statistic
    of Gretton et al. (2012) Eq. (3) then follows from the feature sums S_x, S_y alone:
    MMD²_u = (‖S_x‖² − n)/(n(n−1)) + (‖S_y‖² − m)/(m(m−1)) − 2 S_x·S_y/(nm).
    Each assignment costs one (B, N) x (N, D) product: linear in N, no N x N matrix.
    """

    def __init__(self, features: np.ndarray) -> None:
        self._features = np.ascontiguousarray(features, dtype=np.float32)
        self._total = self._features.sum(axis=0, dtype=np.float64)

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        s_x = (masks.astype(np.float32, copy=False) @ self._features).astype(np.float64)
        s_y = self._total - s_x
        xx = np.einsum("bd,bd->b", s_x, s_x)
        yy = np.einsum("bd,bd->b", s_y, s_y)
        xy = np.einsum("bd,bd->b", s_x, s_y)
        return (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)

    test_statistic = staticmethod(_identity)


def random_fourier_features(x: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """[cos(xW), sin(xW)] / sqrt(J) for frequencies W (d, J), float32 (n, 2J)."""
    proj = np.asarray(x, dtype=np.float32) @ np.asarray(frequencies, dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(frequencies.shape[1]))
    return np.hstack([np.cos(proj), np.sin(proj)]) * scale


class OnRows:
    """A statistic evaluated on a fixed, label-independent subset of the pooled rows.

    The subset is chosen without looking at the labels, so permuting the labels of all rows
    permutes those of the subset too and the permutation test stays exact; the group sizes
    inside the subset then vary between assignments, which every statistic here handles.
    """

    def __init__(self, statistic: TwoSampleStatistic, rows: np.ndarray) -> None:
        self.statistic = statistic
        self.rows = rows

    def values(self, masks: np.ndarray) -> np.ndarray:
        return self.statistic.values(masks[:, self.rows])

    def test_statistic(self, values: np.ndarray) -> np.ndarray:
        return self.statistic.test_statistic(values)


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
        # Work on the transposed assignments (N, B): gathering whole rows in sorted order is
        # contiguous in memory, where gathering columns of (B, N) is not.
        # Large batches run in float32 (relative error ~1e-6, half the memory traffic);
        # small ones in float64, matching scipy to rounding.
        dtype = np.float32 if masks.size > 4_000_000 else np.float64
        by_row: np.ndarray = np.ascontiguousarray(masks.T, dtype=dtype)
        scale: np.ndarray = (1.0 / n + 1.0 / m).astype(dtype)[None, :]
        positions: np.ndarray = np.arange(1, masks.shape[1], dtype=dtype)[:, None]
        positions = positions / m.astype(dtype)[None, :]
        total = np.zeros(masks.shape[0])
        for j in range(self._cols.shape[1]):
            counts: np.ndarray = by_row[self._order[:-1, j]]
            np.cumsum(counts, axis=0, out=counts)
            # F_ref - F_cur at each sorted position: c/n - (i - c)/m = c (1/n + 1/m) - i/m
            counts *= scale
            counts -= positions
            np.abs(counts, out=counts)
            total += self._gaps[:, j] @ counts
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
        n, m = (side[:, None] for side in _sides(masks))
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


class MeanDifference:
    """Mean of a per-row score on the current side minus its mean on the reference side.

    One-sided: only an increase counts as drift (the test statistic is the signed value).
    Used with the novelty score (distance to the nearest reference fit rows), where mass in
    regions the reference never covered raises the current mean.
    """

    def __init__(self, scores: np.ndarray) -> None:
        self._scores = np.asarray(scores, dtype=np.float64)
        self._total = float(self._scores.sum())

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = _sides(masks)
        ref_sum = masks @ self._scores
        return (self._total - ref_sum) / m - ref_sum / n

    test_statistic = staticmethod(_identity)


def knn_mean_distance(
    rows: np.ndarray,
    anchors: np.ndarray,
    *,
    k: int,
    exclude_self: bool = False,
    chunk: int = 4096,
) -> np.ndarray:
    """Mean Euclidean distance (n,) from each row to its ``k`` nearest ``anchors``.

    Exact brute force in row chunks (memory O(chunk x anchors)); ``exclude_self`` drops the
    distance of row i to anchor i (leave-one-out, when ``rows`` are the anchors).
    """
    out = np.empty(rows.shape[0])
    a32 = np.asarray(anchors, dtype=np.float32)
    a_sq = np.einsum("ij,ij->i", a32, a32)
    for start in range(0, rows.shape[0], chunk):
        r32 = np.asarray(rows[start : start + chunk], dtype=np.float32)
        # float32 BLAS: distances to the nearest anchors need ~1e-4 relative accuracy only.
        block = np.einsum("ij,ij->i", r32, r32)[:, None] + a_sq[None, :] - 2.0 * (r32 @ a32.T)
        np.maximum(block, 0.0, out=block)
        if exclude_self:
            idx = np.arange(block.shape[0])
            block[idx, start + idx] = np.inf
        nearest = np.partition(block, k - 1, axis=1)[:, :k]
        out[start : start + chunk] = np.sqrt(nearest).mean(axis=1)
    return out


class MeanShift:
    """Euclidean norm of the difference of side means of standardized PCA scores.

    With scores in units of the reference standard deviation per component, this is the
    Mahalanobis distance of the mean shift under the frozen diagonal covariance.
    """

    def __init__(self, scores: np.ndarray) -> None:
        self._scores = np.asarray(scores, dtype=np.float64)
        self._total = self._scores.sum(axis=0)

    def values(self, masks: np.ndarray) -> np.ndarray:
        n, m = (side[:, None] for side in _sides(masks))
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
        n, m = (side[:, None] for side in _sides(masks))
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
