"""The null distribution of the sketch statistics at a window size, from reference splits.

A window's statistics are compared with the reference's held-out test rows S (n rows, exact)
and are computed from the window's sketches. Their joint null at window size m is simulated
by splitting S itself: replicate b draws a random split of S into a pseudo-window C_b of
m_b = min(m, n // 2) rows and a pseudo-reference R_b of the other n − m_b rows, sketches C_b
through the same KLL sketches the monitor uses (so the null includes the sketch's own error),
and evaluates every statistic. Nothing tested was used to fit the basis (the reference fitted
its PCA, bandwidth and bins on other rows), so under no drift C_b, R_b and a live window are
exchangeable samples of one distribution.

The split uses n − m_b reference rows while the live test uses all n. Each statistic's null
scale follows its asymptotics in (1/n_ref + 1/m): squared distances and divergences (MMD², the
Fréchet distance, KL, JS) scale linearly, distances (W1, KS, mean shift, |log spread ratio|)
as the square root, so replicate scores are multiplied by
``c = (1/n + 1/m) / (1/(n − m_b) + 1/m_b)`` or ``sqrt(c)``. The rescaling is exact for
statistics whose null is a scaled weighted chi-square (mean-embedding and moment statistics
in the large-sample limit) and a first-order approximation otherwise; the accuracy tests
check the false-alarm rate it yields.
"""

from __future__ import annotations

import threading

import numpy as np

from embdrift._validation import check_int
from embdrift.errors import IncompatibleSketchError, InsufficientDataError
from embdrift.reference import Reference
from embdrift.stream.basis import BatchFeatures, StreamBasis
from embdrift.stream.sketches import ProjectionQuantiles
from embdrift.stream.statistics import (
    _GRID,
    STREAM_METRICS,
    ReferenceSide,
    WindowView,
    _exact_quantiles,
    drift_scores,
    sketch_statistics,
)

__all__ = ["SketchNull"]

_LINEAR = np.array([kind == "linear" for _, kind in STREAM_METRICS.values()])


class SketchNull:
    """Calibrated null of the sketch statistics for one basis, cached per window size.

    Parameters
    ----------
    basis : StreamBasis
        Frozen basis of ``reference``.
    reference : Reference
        The reference of ``basis``: its held-out test rows (:attr:`Reference.sample`) are split
        for the null. Only their features are kept, not the Reference.
    n_calibration : int
        Replicates per window size (default 500); p-values are multiples of
        1 / (n_calibration + 1).
    quantile_k : int
        KLL k of the window sketches (must equal the monitor's).
    seed : int
        Seeds the splits; each window size m uses the stream ``[seed, m_b]``, so results do not
        depend on the order in which sizes are requested.
    """

    def __init__(
        self,
        basis: StreamBasis,
        reference: Reference,
        *,
        n_calibration: int = 500,
        quantile_k: int = 200,
        seed: int = 0,
    ) -> None:
        if not isinstance(reference, Reference):
            raise TypeError(
                f"The 'reference' parameter must be an embdrift Reference; got"
                f" {type(reference).__name__}."
            )
        if reference.reference_id != basis.reference_id:
            raise IncompatibleSketchError(
                f"SketchNull needs the reference of its basis: the basis belongs to reference"
                f" {basis.reference_id!r}, the reference given is {reference.reference_id!r}."
                " Pass the Reference the StreamBasis was built from."
            )
        self.basis = basis
        self.n_calibration = check_int(n_calibration, name="n_calibration", low=19)
        self.quantile_k = check_int(quantile_k, name="quantile_k", low=8, high=65535)
        self.seed = check_int(seed, name="seed", low=0)
        sample = reference.sample
        if sample.shape[0] < 40:
            raise InsufficientDataError(
                f"Streaming calibration splits the reference's held-out rows and needs at"
                f" least 40; this reference holds {sample.shape[0]}. Fit the reference on more"
                " rows."
            )
        feats = basis.exact_features(sample)
        scale = 1.0 / np.sqrt(basis.n_frequencies)
        self._phi = np.hstack([np.cos(feats.angles), np.sin(feats.angles)]) * scale
        self._z = np.asarray(feats.projections, dtype=np.float64)
        self._res = np.asarray(feats.residuals, dtype=np.float64)
        self._z32 = self._z.astype(np.float32)
        self._res32 = self._res.astype(np.float32)
        self._feats = feats
        centred = np.asarray(sample, dtype=np.float64) - basis._mean64
        # Rows outside the outer subspace, in residual RMS norms: their means feed
        # residual_mean_shift (StreamBasis.residual_mean applied row by row).
        self._outer = basis.residual_mean(centred.T, 1).T
        self.reference_side = ReferenceSide.from_features(feats, self._outer.mean(axis=0))
        self._cache: dict[int, tuple[int, int, np.ndarray]] = {}
        # Monitors of several streams may share this null (StreamMonitor): one simulation per
        # window size, with a lock per size, so that a stream that needs another size (or a
        # cached one) never waits for it.
        self._size_locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def n_reference(self) -> int:
        return int(self._z.shape[0])

    def split_size(self, m: int) -> int:
        """The pseudo-window size m_b used to calibrate windows of m rows.

        ``min(m, n // 2)``, rounded down to a grid of 8 sizes per doubling below that, so time
        windows of varying size share a few calibrations.
        """
        half = self.n_reference // 2
        if m >= half:
            return half
        grid = int(np.floor(2.0 ** (np.floor(8 * np.log2(max(m, 2))) / 8)))
        return max(2, min(grid, m))

    def raw_null(self, m: int) -> tuple[int, int, np.ndarray]:
        """(n_ref_b, m_b, unscaled scores (B, J)) for windows of m rows (cached)."""
        m_b = self.split_size(check_int(m, name="m", low=2))
        cached = self._cache.get(m_b)
        if cached is not None:  # read without the lock: entries are only ever added
            return cached
        with self._locks_guard:
            lock = self._size_locks.setdefault(m_b, threading.Lock())
        with lock:
            if m_b not in self._cache:
                self._cache[m_b] = self._simulate(m_b)
            return self._cache[m_b]

    def null_scores(self, m: int) -> np.ndarray:
        """Replicate scores (B, J) rescaled to a live test of n reference rows vs m rows."""
        n_r, m_b, raw = self.raw_null(m)
        n = self.n_reference
        factor = (1.0 / n + 1.0 / m) / (1.0 / n_r + 1.0 / m_b)
        scale = np.where(_LINEAR, factor, np.sqrt(factor))
        return raw * scale

    def _simulate(self, m_b: int) -> tuple[int, int, np.ndarray]:
        rng = np.random.default_rng([self.seed, m_b])
        n, big_b = self.n_reference, self.n_calibration
        edges = self.basis.pc1_edges
        smoothing = self.basis.smoothing
        perms = np.argsort(rng.random((big_b, n)), axis=1)
        cur_rows, ref_rows = perms[:, :m_b], perms[:, m_b:]
        # Reference sides of every replicate at once: sums, moments, sorted columns.
        cols = np.vstack([self._z.T, self._res[None, :]])  # (p + 1, n)
        ref_sorted = np.sort(cols[:, ref_rows], axis=2)  # (p + 1, B, n - m_b)
        ref_quant = _exact_quantiles(ref_sorted.reshape(-1, n - m_b), _GRID).reshape(
            cols.shape[0], big_b, -1
        )
        phi_all = self._phi.sum(axis=0)
        outer_all = self._outer.sum(axis=0)
        out = np.empty((big_b, len(STREAM_METRICS)))
        for b in range(big_b):
            cur = cur_rows[b]
            phi_cur = self._phi[cur].sum(axis=0)
            outer_cur = self._outer[cur].sum(axis=0)
            z_cur, z_ref = self._z[cur], self._z[ref_rows[b]]
            ref_side = ReferenceSide(
                count=n - m_b,
                rff_sum=phi_all - phi_cur,
                mean=z_ref.mean(axis=0),
                cov=_cov(z_ref),
                sorted_values=ref_sorted[:, b],
                quantiles=ref_quant[:, b],
                residual_mean=(outer_all - outer_cur) / (n - m_b),
            )
            quant = ProjectionQuantiles(self.basis, self.quantile_k)
            quant._update(
                BatchFeatures(
                    angles=self._feats.angles[:0],
                    projections=self._z32[cur],
                    residuals=self._res32[cur],
                )
            )
            sketches = quant.projections + [quant.residual]
            grid = np.vstack([sk.quantiles(_GRID) for sk in sketches])
            points = np.unique(
                np.concatenate([ref_side.sorted_values[0], grid[0]]).astype(np.float32)
            )
            view = WindowView(
                count=m_b,
                rff_sum=phi_cur,
                mean=z_cur.mean(axis=0),
                cov=_cov(z_cur),
                quantiles=grid,
                pc1_cdf_points=points.astype(np.float64),
                pc1_cdf=quant.projections[0].cdf(points),
                pc1_edge_cdf=quant.projections[0].cdf(edges) if len(edges) else np.empty(0),
                residual_mean=outer_cur / m_b,
            )
            out[b] = sketch_statistics(ref_side, view, pc1_edges=edges, smoothing=smoothing)
        return n - m_b, m_b, drift_scores(out)


def _cov(z: np.ndarray) -> np.ndarray:
    centred = z - z.mean(axis=0)
    return np.asarray(centred.T @ centred / max(z.shape[0] - 1, 1))
