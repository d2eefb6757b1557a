"""Two-sample statistics evaluated for many group assignments at once.

Each statistic is prepared once on the pooled sample (reference rows first, then current rows)
and then evaluated for a batch of assignments ``masks`` of shape (B, N): ``masks[b, i] == 1``
puts pooled row ``i`` on the reference side of assignment ``b``. The observed split is one
such row, and a permutation test is B random ones, so the observed value and its null come
from the very same arithmetic. Pairwise matrices (kernel, distances) are computed once and
reused by every assignment: one (B, N) x (N, N) product gives all within/between sums.

Statistics that depend on an assignment only through column sums of per-row quantities (the
moment, histogram, novelty and random-feature statistics) also expose their formula as
``from_sums``, so a caller can compute the sums ``masks @ Z`` once for several of them, in row
chunks and in float32 (:func:`column_sums`), without ever holding all of ``Z`` in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from embdrift.errors import InvalidParameterError

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
    "column_sums",
    "fourier_angles",
    "fourier_features",
    "nearest_anchors",
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

    Uses ``||a||^2 + ||b||^2 - 2 a b^T`` (one BLAS product, then in place: one matrix of
    memory); rounding can make tiny negative values, hence the clip, and the diagonal of ``a``
    against itself is set to 0.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = a64 if b is None else np.asarray(b, dtype=np.float64)
    sq = a64 @ b64.T
    sq *= -2.0
    sq += np.einsum("ij,ij->i", a64, a64)[:, None]
    sq += np.einsum("ij,ij->i", b64, b64)[None, :]
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
    ``sq_distances`` (the pooled squared distances, when a caller already has them, e.g. to
    share them with :class:`EnergyStatistic`) saves recomputing them.
    """

    def __init__(
        self, pooled: np.ndarray, *, bandwidth: float, sq_distances: np.ndarray | None = None
    ) -> None:
        sq = pairwise_sq_distances(pooled) if sq_distances is None else sq_distances
        self.kernel = np.multiply(sq, -1.0 / (2.0 * bandwidth**2))
        np.exp(self.kernel, out=self.kernel)

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
        return self.from_sums(s_x, self._total, n, m)

    @staticmethod
    def from_sums(s_x: np.ndarray, total: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
        """MMD²_u (B,) from the reference-side feature sums ``s_x`` (B, D) and ``total`` (D,)."""
        s_y = total - s_x
        xx = np.einsum("bd,bd->b", s_x, s_x)
        yy = np.einsum("bd,bd->b", s_y, s_y)
        xy = np.einsum("bd,bd->b", s_x, s_y)
        return (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)

    test_statistic = staticmethod(_identity)


def fourier_angles(
    x: np.ndarray, frequencies: np.ndarray, *, center: np.ndarray | None = None
) -> np.ndarray:
    """The angles x'W (n, J) of random Fourier features for frequencies W (d, J), float32.

    ``x' = x − center`` when ``center`` is given: the RBF kernel is shift invariant and so is
    φ(x)·φ(y), while centred rows keep the float32 angles small and accurate.
    """
    rows = np.asarray(x, dtype=np.float32)
    if center is not None:
        rows = rows - np.asarray(center, dtype=np.float32)
    return rows @ np.asarray(frequencies, dtype=np.float32)


def fourier_features(angles: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """[cos(s·A), sin(s·A)] / sqrt(J) for angles A (n, J), float32 (n, 2J).

    Frequencies drawn from N(0, h⁻² I) for bandwidth h serve any other bandwidth h′ with
    s = h / h′: the angles of W·h/h′ are the angles of W times s.
    """
    half = angles.shape[1]
    out = np.empty((angles.shape[0], 2 * half), dtype=np.float32)
    np.multiply(angles, np.float32(scale), out=out[:, :half])
    np.sin(out[:, :half], out=out[:, half:])
    np.cos(out[:, :half], out=out[:, :half])
    out *= np.float32(1.0 / np.sqrt(half))
    return out


def random_fourier_features(
    x: np.ndarray, frequencies: np.ndarray, *, center: np.ndarray | None = None
) -> np.ndarray:
    """[cos(x'W), sin(x'W)] / sqrt(J) for frequencies W (d, J), float32 (n, 2J)
    (:func:`fourier_angles`, then :func:`fourier_features`)."""
    return fourier_features(fourier_angles(x, frequencies, center=center))


def column_sums(
    masks: np.ndarray, chunks: Iterable[tuple[int, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Reference-side sums Σ_i masks[b, i] Z[i] (B, c) and totals Σ_i Z[i] (c,), float64.

    ``Z`` arrives in row chunks ``(start, Z[start:start + r])`` in pooled row order, so it is
    never held whole. Each chunk costs one BLAS product in the chunk's dtype (float32 chunks
    give float32 products, exact for 0/1 masks times counts, relative error ~1e-7 otherwise),
    accumulated over chunks in float64.
    """
    sums: np.ndarray | None = None
    totals: np.ndarray | None = None
    for start, z in chunks:
        part = masks[:, start : start + z.shape[0]]
        if part.dtype != z.dtype:
            part = part.astype(z.dtype)
        product = np.asarray(part @ z, dtype=np.float64)
        total = z.sum(axis=0, dtype=np.float64)
        if sums is None or totals is None:
            sums, totals = product, total
        else:
            sums += product
            totals += total
    if sums is None or totals is None:
        raise ValueError("column_sums needs at least one chunk of rows.")
    return sums, totals


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
    in one dimension. ``parts`` also gives 2E‖X−Y‖, the denominator of the energy coefficient
    H = E / (2E‖X−Y‖) in [0, 1]. ``sq_distances`` as in :class:`KernelMMD`.
    """

    def __init__(self, pooled: np.ndarray, *, sq_distances: np.ndarray | None = None) -> None:
        if sq_distances is None:
            sq = pairwise_sq_distances(pooled)
            self.distances = np.sqrt(sq, out=sq)  # in place: the matrix is this object's
        else:
            self.distances = np.sqrt(sq_distances)

    def parts(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(E-statistic, 2E‖X−Y‖) per assignment; both NaN (undefined) for an assignment that
        leaves a side empty, which a subsample of the pooled rows can."""
        n, m = _sides(masks)
        s_xx, s_xy, s_yy = _group_sums(self.distances, masks)
        with np.errstate(divide="ignore", invalid="ignore"):
            between = 2.0 * s_xy / (n * m)
            energy = between - s_xx / n**2 - s_yy / m**2
        empty = (n == 0) | (m == 0)
        energy[empty] = between[empty] = np.nan
        return energy, between

    def values(self, masks: np.ndarray) -> np.ndarray:
        return self.parts(masks)[0]

    test_statistic = staticmethod(_identity)


#: Rows per block of the blocked prefix sum in :func:`_scan_blocks`.
_SCAN_BLOCK = 128
#: Bytes of the working buffer of one batch of assignments in :meth:`Wasserstein1D.per_column`:
#: small enough to stay in cache on common CPUs, large enough for long vector operations.
_W1_BUFFER_BYTES = 16 * 2**20
#: Rows per partial dot product of the float32 kernel (partial sums are added in float64).
_W1_SEGMENT = 1024
#: Above this many mask entries (B x N) the 1-D Wasserstein kernel runs in float32.
_W1_FLOAT32_ENTRIES = 4_000_000


class Wasserstein1D:
    """Mean over columns of the 1-D Wasserstein-1 distance between the two sides.

    W1(u, v) = ∫ |U(t) − V(t)| dt over the empirical CDFs (Ramdas, García Trillos & Cuturi
    (2017), "On Wasserstein two-sample testing", Entropy 19, Eq. 2). The pooled values are
    sorted once; an assignment only changes which sorted positions are counted in which CDF.
    With c_i the number of reference-side values among the i smallest pooled values and
    g_i the gap between the i-th and (i+1)-th smallest,

        W1 = Σ_i g_i |c_i / n − (i − c_i) / m| = N / (n m) · Σ_i g_i |c_i − i n / N|,

    so each assignment costs one prefix sum over its mask in sorted order, O(B N) per column.

    Notes
    -----
    When every assignment has the same group sizes (permutations do), ``i n / N`` is split
    into its integer part f_i and fraction r_i: the prefix sum runs over mask − (f_i − f_{i−1})
    (values in {−1, 0, 1}) and gives c_i − f_i exactly even in float32, and only the final
    subtraction of r_i ∈ [0, 1) rounds. Large batches (more than 4e6 mask entries) run in float32
    with that scheme (relative error ~1e-6, from the float32 dot product with the gaps; half
    the memory traffic of float64); small ones in float64 (matching scipy to ~1e-14). The
    prefix sum is blocked (:func:`_scan_blocks`), since numpy's cumulative sum is a scalar
    loop, and assignments are processed in batches whose working buffer stays near 16 MB.
    """

    def __init__(self, values: np.ndarray) -> None:
        cols = np.asarray(values, dtype=np.float64)
        self._cols = cols[:, None] if cols.ndim == 1 else cols
        # Any order among tied values gives the same W1 (the gaps between them are 0), so
        # the faster unstable sort will do.
        self._order = np.argsort(self._cols, axis=0)
        self._gaps = np.diff(np.take_along_axis(self._cols, self._order, axis=0), axis=0)

    def values(self, masks: np.ndarray) -> np.ndarray:
        return self.per_column(masks).mean(axis=1)

    def per_column(self, masks: np.ndarray) -> np.ndarray:
        """W1 of every column (B, c) for each assignment in ``masks`` (B, N) of 0/1."""
        n, m = _sides(masks)
        n_rows, n_pooled = masks.shape
        n_cols = self._cols.shape[1]
        out = np.zeros((n_rows, n_cols))
        if n_pooled < 2:
            return out
        constant = bool(np.all(n == n[0])) and 0 < n[0] < n_pooled
        dtype = np.float32 if constant and masks.size > _W1_FLOAT32_ENTRIES else np.float64
        length = n_pooled - 1
        block = min(_SCAN_BLOCK, length)
        n_blocks = -(-length // block)
        padded = n_blocks * block
        # The working buffer holds sorted position i = k * block + t at slot t * n_blocks + k
        # (the layout of _scan_blocks); slots past the last position repeat it with a zero gap.
        slot = np.arange(padded)
        position = (slot % n_blocks) * block + slot // n_blocks  # 0-based sorted position
        valid = position < length
        position = np.minimum(position, length - 1)
        order = self._order[position]  # (padded, c): slot -> pooled row, per column
        gaps = np.zeros((n_cols, 1, padded), dtype=dtype)
        gaps[:, 0, valid] = self._gaps[position[valid]].T
        rank = position.astype(np.int64) + 1  # i, the count of values at or below the slot
        if constant:
            # i n / N = f_i + r_i: subtract the steps of f_i before the prefix sum (exact
            # integers), the fraction r_i after it.
            n_ref = int(round(n[0]))
            floor = rank * n_ref // n_pooled
            steps = np.where(valid, floor - (rank - 1) * n_ref // n_pooled, 0)
            steps = steps.astype(dtype)[:, None, None]
            fraction = np.where(valid, (rank * n_ref - floor * n_pooled) / n_pooled, 0.0)
            fraction = fraction.astype(dtype)[:, None, None]
        entry = np.dtype(dtype).itemsize
        batch = max(1, min(n_rows, _W1_BUFFER_BYTES // (n_cols * padded * entry)))
        # Buffers reused by every batch: the masks gathered in sorted order as bytes (the
        # masks are 0/1; a quarter of float32's memory traffic in the random-access gather)
        # and the working values.
        gathered_buffer = np.empty(padded * n_cols * batch, dtype=np.uint8)
        work_buffer = np.empty(padded * n_cols * batch, dtype=dtype)
        for b0 in range(0, n_rows, batch):
            b1 = min(n_rows, b0 + batch)
            shape = (padded, n_cols, b1 - b0)
            size = padded * n_cols * (b1 - b0)
            by_row = np.ascontiguousarray(masks[b0:b1].T, dtype=np.uint8)  # (N, w)
            # gathered[slot, j, b]: mask of assignment b at the slot's sorted position in
            # column j. mode="clip" avoids the buffered copy of mode="raise" (in range).
            gathered = gathered_buffer[:size].reshape(shape)
            np.take(by_row, order, axis=0, out=gathered, mode="clip")
            work = work_buffer[:size].reshape(shape)
            if constant:
                np.subtract(gathered, steps, out=work)
                _scan_blocks(work.reshape(block, n_blocks, -1))
                work -= fraction
            else:
                np.copyto(work, gathered)
                _scan_blocks(work.reshape(block, n_blocks, -1))
                # c_i (1/n + 1/m) − i/m per assignment
                work *= (1.0 / n[b0:b1] + 1.0 / m[b0:b1])[None, None, :]
                work -= (rank[:, None] / m[None, b0:b1])[:, None, :]
            np.abs(work, out=work)
            # Σ_i g_i |.|, in segments of slots summed in float64: a float32 dot product over
            # all N slots would lose ~sqrt(N) ulps.
            for s0 in range(0, padded, _W1_SEGMENT):
                rows = work[s0 : s0 + _W1_SEGMENT].transpose(1, 0, 2)  # (c, slots, w)
                out[b0:b1] += np.matmul(gaps[:, :, s0 : s0 + _W1_SEGMENT], rows)[:, 0, :].T
        if constant:
            out *= n_pooled / (n[0] * m[0])
        return out

    test_statistic = staticmethod(_identity)


def _scan_blocks(work: np.ndarray) -> None:
    """In-place inclusive prefix sum over the positions of ``work`` (block, n_blocks, k), which
    holds position ``k_ * block + t`` at ``work[t, k_]``: the prefix sums inside all blocks at
    once as ``block`` additions of contiguous (n_blocks, k) slices (numpy's cumulative sum is
    a scalar loop), then the running block totals added to the blocks after them."""
    for t in range(1, work.shape[0]):
        np.add(work[t], work[t - 1], out=work[t])
    if work.shape[1] > 1:
        carry = np.cumsum(work[-1, :-1], axis=0)
        work[:, 1:] += carry[None]


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
        return self.from_counts(
            ref_counts, self._onehot.sum(axis=0), n, m, kind=self.kind, smoothing=self.smoothing
        )

    @staticmethod
    def from_counts(
        ref_counts: np.ndarray,
        total_counts: np.ndarray,
        n: np.ndarray,
        m: np.ndarray,
        *,
        kind: str,
        smoothing: float,
    ) -> np.ndarray:
        """The divergence (B,) from reference-side bin counts (B, n_bins) and pooled totals."""
        n, m = n[:, None], m[:, None]
        cur_counts = total_counts - ref_counts
        n_bins = ref_counts.shape[1]
        p = (ref_counts + smoothing) / (n + n_bins * smoothing)
        q = (cur_counts + smoothing) / (m + n_bins * smoothing)
        if kind == "kl":
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
        return self.from_sums(masks @ self._scores, self._total, n, m)

    @staticmethod
    def from_sums(ref_sum: np.ndarray, total: float, n: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Current mean minus reference mean (B,) from reference-side sums (B,) and the total."""
        return (total - ref_sum) / m - ref_sum / n

    test_statistic = staticmethod(_identity)


def nearest_anchors(
    rows: np.ndarray,
    anchors: np.ndarray,
    *,
    k: int,
    exclude_self: bool = False,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances (n, k) from each row to its ``k`` nearest ``anchors``, float64, and
    those anchors' indices (n, k), both in no particular order within a row.

    Exact brute force in row chunks (memory O(chunk x anchors)); ``exclude_self`` drops the
    distance of row i to anchor i (leave-one-out, when ``rows`` are the anchors). The nearest
    anchors are chosen on ‖a‖² − 2 r·a, which orders the anchors of row r as ‖r − a‖² does;
    ‖r‖² is added to the k chosen only. Ties go to either anchor.
    """
    candidates = anchors.shape[0] - int(exclude_self)
    if not 1 <= k <= candidates:
        raise InvalidParameterError(
            f"k={k} nearest anchors asked of {candidates} candidate anchors per row; use"
            f" 1 <= k <= {candidates}."
        )
    distances = np.empty((rows.shape[0], k))
    indices = np.empty((rows.shape[0], k), dtype=np.intp)
    a32 = np.asarray(anchors, dtype=np.float32)
    a_sq = np.einsum("ij,ij->i", a32, a32)
    for start in range(0, rows.shape[0], chunk):
        r32 = np.asarray(rows[start : start + chunk], dtype=np.float32)
        # float32 BLAS: distances to the nearest anchors need ~1e-4 relative accuracy only.
        block = r32 @ a32.T
        block *= np.float32(-2.0)
        block += a_sq[None, :]
        if exclude_self:
            idx = np.arange(block.shape[0])
            block[idx, start + idx] = np.inf
        nearest, chosen = _smallest_per_row(block, k)
        nearest += np.einsum("ij,ij->i", r32, r32)[:, None]
        np.maximum(nearest, 0.0, out=nearest)
        distances[start : start + chunk] = np.sqrt(nearest)
        indices[start : start + chunk] = chosen
    return distances, indices


#: Up to this many neighbours, :func:`_smallest_per_row` takes k passes of row minima; above
#: it, one introselect (``np.argpartition``). With 500 anchors per row the passes are the
#: faster up to about k = 8 on numpy 2, and several times faster at k = 5 on numpy 1.26, whose
#: partition is not vectorised (the peers environment of ``benchmarks/run.py``).
_MINIMA_PASSES_K = 8


def _smallest_per_row(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest values of each row of ``block`` (r, c) and their column indices
    (r, k), in no particular order; ``block`` may be overwritten."""
    if k > _MINIMA_PASSES_K:
        chosen = np.argpartition(block, k - 1, axis=1)[:, :k]
        return np.take_along_axis(block, chosen, axis=1), chosen
    rows = np.arange(block.shape[0])
    out = np.empty((block.shape[0], k), dtype=block.dtype)
    chosen = np.empty((block.shape[0], k), dtype=np.intp)
    for j in range(k):
        first = np.argmin(block, axis=1)
        out[:, j] = block[rows, first]
        chosen[:, j] = first
        block[rows, first] = np.inf
    return out, chosen


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
        return self.from_sums(masks @ self._scores, self._total, n, m)

    @staticmethod
    def from_sums(
        ref_sum: np.ndarray, total: np.ndarray, n: np.ndarray, m: np.ndarray
    ) -> np.ndarray:
        """‖mean_cur − mean_ref‖ (B,) from reference-side column sums (B, k) and totals (k,)."""
        diff = (total - ref_sum) / m[:, None] - ref_sum / n[:, None]
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
        return self.from_sums(ref_sum, self._total, ref_sq, self._total_sq, n, m)

    @staticmethod
    def from_sums(
        ref_sum: np.ndarray,
        total: np.ndarray,
        ref_sq: np.ndarray,
        total_sq: np.ndarray,
        n: np.ndarray,
        m: np.ndarray,
    ) -> np.ndarray:
        """The ratio (B,) from reference-side sums and sums of squares (B, k) and totals (k,)."""
        n, m = n[:, None], m[:, None]
        cur_sum = total - ref_sum
        cur_sq = total_sq - ref_sq
        ref_var = ((ref_sq - ref_sum**2 / n) / (n - 1)).sum(axis=1)
        cur_var = ((cur_sq - cur_sum**2 / m) / (m - 1)).sum(axis=1)
        tiny = np.finfo(np.float64).tiny
        return np.maximum(cur_var, tiny) / np.maximum(ref_var, tiny)

    @staticmethod
    def test_statistic(values: np.ndarray) -> np.ndarray:
        return np.abs(np.log(values))
