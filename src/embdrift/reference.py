"""The frozen reference and the batch drift check.

``Reference.fit`` splits the reference window in two: a *fit* part that learns everything
(PCA, kernel bandwidth, PC1 bins, residual scale) and a *test* part that is only ever compared.
A projection fitted on the rows it is then tested against over-states their variance along its
own top components, and projection metrics then alarm with no drift at all (DESIGN.md, "Fit on
one part, test on the other"). With the split, the test rows and a current window drawn from
the same distribution are exchangeable, and permutation p-values are exact.

The kernel statistics (``KERNEL_METRICS``) learn nothing from the fit rows, so they compare
the whole reference window: in a permutation check the anchors (fit rows) and the held-out rows
are permuted with the current rows, with an RBF bandwidth chosen on the pooled rows, and the
test is exact without conditioning on anything. Their p-values come from other permutations
than the projection metrics', so the verdict combines the two families by a weighted Bonferroni.
Where all metrics share one set of permutations (a group permutation, which keeps the anchors on
the reference side, exact conditional on them; a stored null) the verdict is one min-p.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embdrift._validation import (
    as_embeddings,
    as_group_labels,
    check_choice,
    check_int,
    check_probability,
    check_rng,
)
from embdrift.errors import InsufficientDataError, InvalidParameterError, ReferenceFormatError
from embdrift.projection import FrozenPCA
from embdrift.results import DriftResult, MetricResult
from embdrift.stats.metrics import median_bandwidth
from embdrift.stats.permutation import (
    combine_min_p,
    group_permutation_masks,
    permutation_masks,
    weighted_bonferroni,
    whole_groups,
)
from embdrift.stats.stored_null import NullTable, rescaled, split_masks
from embdrift.stats.twosample import (
    EnergyStatistic,
    FeatureMMD,
    HistogramDivergence,
    KernelMMD,
    MeanDifference,
    MeanShift,
    SpreadRatio,
    Wasserstein1D,
    column_sums,
    fourier_angles,
    fourier_features,
    nearest_anchors,
    pairwise_sq_distances,
)

__all__ = [
    "CALIBRATIONS",
    "DECISION_METRICS",
    "KERNEL_METRICS",
    "MAX_REFERENCE_BYTES",
    "METRICS",
    "PATHS",
    "Reference",
    "ReferenceParams",
]

FORMAT_NAME = "embdrift.reference"
FORMAT_VERSION = 1
#: Default cap on the bytes a reference file's arrays may unpack to (``Reference.load``).
MAX_REFERENCE_BYTES = 4 * 1024**3

#: Metric name -> what its value means. Effect sizes are listed in ``_effect_size``.
METRICS: Mapping[str, str] = {
    "mmd": "unbiased MMD² with an RBF kernel (bandwidth in DriftResult.bandwidth; full"
    " dimension; reference side: held-out rows and, in a permutation check, the anchors)",
    "energy": "energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (full dimension; reference side:"
    " held-out rows and, in a permutation check, the anchors)",
    "wasserstein_pc1": "1-D Wasserstein-1 on PC1, in reference PC1 standard deviations",
    "sliced_wasserstein": "mean 1-D Wasserstein-1 over the top-k PCs, in reference stds",
    "kl_pc1": "KL(current ‖ reference) of PC1 histograms, nats, smoothed",
    "js_pc1": "Jensen–Shannon divergence of PC1 histograms, nats (≤ ln 2)",
    "mean_shift": "norm of the mean shift in standardized top-k PCA space",
    "spread_ratio": "total top-k variance, current / reference",
    "reconstruction_error": "Wasserstein-1 of the residual norm outside the reference's top"
    " outer_components PCs, in reference residual stds",
    "local_reconstruction_error": "Wasserstein-1 of the log ratio of each row's residual norm"
    " outside the top outer_components PCs to the mean residual norm of its novelty_k nearest"
    " reference fit rows (the anchors): a change of spread, seen against the row's own"
    " neighbourhood (log units, ~ relative change)",
    "novelty": "mean distance to the k nearest reference fit rows, current minus reference,"
    " in units of the reference's own nearest-neighbour distance (one-sided)",
    "residual_mean_shift": "norm of the mean shift outside the reference's top outer_components"
    " PCs (full dimension), in units of the reference residual RMS norm",
}

#: The metrics combined into the verdict by default: complementary views
#: (full-dimension kernel and distance, new regions, out-of-subspace drift and spread). Every added
#: metric costs the combined test some power (the min-p pays for each look), so the
#: projection metrics are reported with their own p-values but left out of the verdict.
#: Chosen on seeded synthetic scenarios (benchmarks/RESULTS.md has the measured powers).
DECISION_METRICS = (
    "mmd",
    "energy",
    "novelty",
    "local_reconstruction_error",
    "residual_mean_shift",
)

#: The metrics that learn nothing from the fit rows (energy distance is the MMD of the
#: distance kernel; Sejdinovic et al. (2013), Ann. Statist. 41(5)). In a row-level permutation
#: check they see every reference row (the held-out rows and the anchors, the fit rows the
#: reference keeps, at most ``max_anchors``), all of them permuted with the current rows, and
#: ``mmd`` takes the median-heuristic bandwidth of a label-free subsample of the pooled rows:
#: exact without conditioning, as a two-sample test of the whole windows is. The other metrics
#: use the projection fitted on the fit rows and permute only the held-out rows, so the verdict
#: takes a min-p within each family and a weighted Bonferroni across the two (each family
#: weighted by its share of the decision metrics). On the real-text section mix (300 seeds)
#: this raised the power of mmd from 0.81 (anchors held on the reference side) to 0.85, of
#: energy from 0.81 to 0.87 and of the verdict from 0.69 to 0.80, false alarms staying near
#: 0.05 (benchmarks/RESULTS.md).
KERNEL_METRICS = ("mmd", "energy")

#: Pooled rows the permutation check's median-heuristic bandwidth is computed on (drawn
#: without regard to the sides, so the bandwidth is the same for every permutation).
_BANDWIDTH_ROWS = 1000

#: The two ways a comparison runs; the result says which one ran.
PATHS = ("exact", "large_n")

#: Where p-values come from: "permutation" (B random splits of the pooled rows per check,
#: exact) or "stored" (the null stored at fit for the window size, one statistic per check).
CALIBRATIONS = ("permutation", "stored")


@dataclass(frozen=True, slots=True)
class ReferenceParams:
    """The options a reference was fitted with (stored in the saved file)."""

    seed: int
    fit_fraction: float
    n_components: int
    n_bins: int
    smoothing: float
    max_rows: int
    exact_rows: int
    n_random_features: int
    novelty_k: int
    max_anchors: int
    energy_rows: int
    outer_components: int


@dataclass(frozen=True, slots=True)
class _KernelSides:
    """How the kernel statistics (``KERNEL_METRICS``) see one check: their assignments
    (B + 1, n_anchors + N) over the pooled rows [anchors, test rows, current], the number of
    anchors in front, and the RBF bandwidth of ``mmd``."""

    masks: np.ndarray
    n_anchors: int
    bandwidth: float


@dataclass(frozen=True, slots=True)
class _Rows:
    """Per-row quantities of a block of rows, in the units the statistics read them."""

    scores: np.ndarray  # (r, k) float64 PCA scores in reference standard deviations
    residuals: np.ndarray  # (r,) float64 norm outside the outer PCs, in reference stds
    local_residuals: np.ndarray  # (r,) float64 log residual over the nearest anchors' mean
    novelty: np.ndarray  # (r,) float64 mean distance to the nearest anchors, in reference units
    bins: np.ndarray  # (r,) int PC1 histogram bin

    @staticmethod
    def join(first: _Rows, second: _Rows) -> _Rows:
        return _Rows(
            scores=np.vstack([first.scores, second.scores]),
            residuals=np.concatenate([first.residuals, second.residuals]),
            local_residuals=np.concatenate([first.local_residuals, second.local_residuals]),
            novelty=np.concatenate([first.novelty, second.novelty]),
            bins=np.concatenate([first.bins, second.bins]),
        )


#: Fewest held-out groups a grouped reference needs for a stored null: the null's spread is
#: estimated from the groups (a plug-in estimate), and with a few dozen groups it is too narrow
#: and the check alarms above alpha; the group permutation has no such limit.
_MIN_NULL_GROUPS = 100

#: The large-n energy needs this many rows of each side in its subsample on average (else it
#: is left out of the check: NaN, p-value 1); a side can still come out empty by chance, which
#: makes that assignment's energy undefined (NaN), scored as no evidence.
_MIN_ENERGY_SIDE_ROWS = 10

#: Added to both residual norms (in reference residual stds) of ``local_reconstruction_error``'s
#: log ratio, so that it stays finite where a residual norm is 0 (a row inside the outer
#: subspace). Far below a residual norm's typical size (its mean over its std, several units)
#: on references with many more fit rows than ``outer_components``; on a reference with no
#: more than ``outer_components`` + 1 fit rows the fit rows (the anchors) lie inside their own
#: subspace up to rounding, the floor dominates their level, and the metric is the residual
#: norm on a log scale.
_RESIDUAL_FLOOR = 0.01

#: Rows per chunk when the large-n path computes random features or centred rows of the
#: current window (bounds the temporaries to chunk x (2J + d) float32, ~24 MB by default).
_CHUNK_ROWS = 4096


class Reference:
    """A reference window, fitted once and frozen; compares current windows against it.

    Build it with :meth:`Reference.fit` or :meth:`Reference.load`, not with the constructor.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> week0 = rng.normal(size=(400, 16))
    >>> ref = Reference.fit(week0, seed=0)
    >>> ref.compare(rng.normal(size=(300, 16)), n_permutations=99).drifted
    False
    >>> ref.compare(rng.normal(size=(300, 16)) + 0.5, n_permutations=99).drifted
    True
    """

    def __init__(
        self,
        *,
        params: ReferenceParams,
        projection: FrozenPCA,
        bandwidth: float,
        pc1_edges: np.ndarray,
        residual_scale: float,
        sample: np.ndarray,
        anchors: np.ndarray,
        novelty_scale: float,
        rff_frequencies: np.ndarray,
        outer_projection: FrozenPCA,
        outer_scale: float,
        n_fit: int,
        n_total: int,
        sample_groups: np.ndarray | None = None,
        nulls: Mapping[int, NullTable] | None = None,
    ) -> None:
        self.params = params
        self.projection = projection
        self.bandwidth = float(bandwidth)
        self.pc1_edges = np.asarray(pc1_edges, dtype=np.float64)
        self.residual_scale = float(residual_scale)
        self._sample = _frozen(sample)
        self.anchors = _frozen(anchors)
        self.novelty_scale = float(novelty_scale)
        self.rff_frequencies = _frozen(rff_frequencies)
        self.outer_projection = outer_projection
        self.outer_scale = float(outer_scale)
        self.n_fit = int(n_fit)
        self.n_total = int(n_total)
        self._sample_groups = None
        if sample_groups is not None:
            self._sample_groups = np.array(sample_groups, dtype=str)
            self._sample_groups.setflags(write=False)
        self.reference_id = self._digest()
        # Stored nulls are derived from the test rows and saved beside them, under their own
        # checksum: the reference_id names what a permutation check compares against.
        self._nulls: dict[int, NullTable] = dict(nulls or {})
        # The test rows never change: their per-row quantities and random-feature angles (of
        # the anchors too) are computed once here (at fit and at load), not at every
        # comparison. Derived state, not saved and not part of the reference_id.
        _, anchor_norms = self.projection.scores_and_residuals(
            self.anchors, outside=self.outer_projection
        )
        self._anchor_residuals = anchor_norms / self.residual_scale
        self._anchor_residuals.setflags(write=False)
        self._test_rows = self._rows(self._sample)
        self._test_angles = fourier_angles(
            self._sample, self.rff_frequencies, center=self.projection.mean_
        )
        self._test_angles.setflags(write=False)
        self._anchor_angles = fourier_angles(
            self.anchors, self.rff_frequencies, center=self.projection.mean_
        )
        self._anchor_angles.setflags(write=False)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        embeddings: npt.ArrayLike,
        *,
        seed: int = 0,
        fit_fraction: float = 0.5,
        n_components: int = 10,
        n_bins: int = 20,
        smoothing: float = 0.5,
        max_rows: int = 100_000,
        exact_rows: int = 2000,
        n_random_features: int = 1024,
        novelty_k: int = 5,
        max_anchors: int = 500,
        energy_rows: int = 2000,
        outer_components: int = 50,
        align_to: Reference | None = None,
        groups: npt.ArrayLike | None = None,
        window_sizes: Sequence[int] = (),
        n_calibration: int = 500,
    ) -> Reference:
        """Fit and freeze a reference on the reference window ``embeddings`` (n, d).

        Parameters
        ----------
        embeddings : array-like (n, d)
            The reference window; at least 20 rows.
        seed : int
            Seeds the fit/test split and every random choice of the fit.
        fit_fraction : float in (0, 1)
            Share of rows used to fit the PCA, bandwidth and bins; the rest are the test rows
            every comparison uses.
        n_components : int
            Top-k PCA components for the projection metrics.
        n_bins : int
            Number of PC1 histogram bins (equal-mass on the fit rows) for ``kl_pc1``/``js_pc1``.
        smoothing : float
            Additive count per histogram bin.
        max_rows : int
            Most rows per side in one comparison (held-out reference rows kept, current rows
            used); larger windows are subsampled without replacement, seeded.
        exact_rows : int
            Up to this many rows per side, comparisons take the exact path (kernel and
            distance matrices of at most 2 * exact_rows rows, anchors included, O(N²)
            memory); above it, the large-n path (see ``compare``).
        n_random_features : int
            Random Fourier features (half cosines, half sines) of the RBF kernel, drawn
            once here at the fitted bandwidth (rescaled to a check's bandwidth); used by
            ``mmd`` on the large-n path.
        novelty_k : int
            Neighbours averaged by the ``novelty`` score, and whose residual norms make the
            local level of ``local_reconstruction_error``.
        max_anchors : int
            Most fit rows kept as anchors: the reference points of the ``novelty`` and
            ``local_reconstruction_error`` scores, and extra reference rows of ``mmd`` and
            ``energy`` in a permutation check.
        energy_rows : int
            Most pooled rows the energy distance uses on the large-n path (a seeded,
            label-independent subsample, so its permutation test stays exact).
        outer_components : int
            Leading PCs that make the reference's "outer" subspace. ``residual_mean_shift``
            compares means and ``reconstruction_error`` and ``local_reconstruction_error``
            compare the residual norms outside it: the directions where the reference itself
            varies most hide a small shift or a change of spread in their own variance, the
            rest of the space does not. (On the benchmark's 15% spread change
            ``reconstruction_error`` alone detects it in 96% of runs outside 50 PCs and
            ``local_reconstruction_error``, each row's residual against its nearest anchors'
            own, in 99.7%; more PCs cost a larger real-text reference's new section:
            ``benchmarks/study_outer.py``, docs/benchmarks.md.)
        align_to : Reference, optional
            The previous reference when refitting: its PCA orientation is kept, so PC1 does
            not flip from one reference to the next.
        groups : array-like (n,), optional
            A label per row (source document, product family, user...) when rows come in
            groups of near-duplicates. The fit/test split then keeps every group whole on one
            side (a test row whose near-duplicate was fitted looks closer to the reference than
            any new row, and novelty and the kernel tests alarm with no drift), the test rows'
            labels are kept, and ``compare(..., groups=...)`` permutes whole groups.
        window_sizes : sequence of int
            Window sizes (rows) to store a null distribution for, so that
            ``compare(..., calibration="stored")`` on a window of about that size costs one
            statistic instead of B (:mod:`embdrift.stats.stored_null`). Simulated from
            ``n_calibration`` splits of the held-out rows (whole groups with ``groups``).
        n_calibration : int
            Replicates per stored window size; stored p-values are multiples of
            1 / (n_calibration + 1).
        """
        rng = check_rng(seed)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InvalidParameterError(f"The 'seed' parameter must be an int. Got {seed!r}.")
        check_probability(fit_fraction, name="fit_fraction")
        check_int(n_components, name="n_components", low=1)
        check_int(n_bins, name="n_bins", low=2)
        check_int(max_rows, name="max_rows", low=10)
        check_int(exact_rows, name="exact_rows", low=10)
        check_int(n_random_features, name="n_random_features", low=2)
        check_int(novelty_k, name="novelty_k", low=1)
        check_int(max_anchors, name="max_anchors", low=2)
        check_int(energy_rows, name="energy_rows", low=20)
        check_int(outer_components, name="outer_components", low=1)
        check_int(n_calibration, name="n_calibration", low=19)
        sizes = [check_int(w, name="window_sizes", low=2) for w in window_sizes]
        if not (isinstance(smoothing, int | float) and smoothing > 0):
            raise InvalidParameterError(
                f"The 'smoothing' parameter must be a positive float. Got {smoothing!r}."
            )
        x = as_embeddings(embeddings, name="embeddings", min_rows=20)
        n = x.shape[0]
        n_fit = int(round(fit_fraction * n))
        if n_fit < 10 or n - n_fit < 10:
            raise InsufficientDataError(
                f"fit_fraction={fit_fraction} splits {n} rows into {n_fit} fit and {n - n_fit}"
                " test rows; each part needs at least 10. Use more rows or a fraction nearer 0.5."
            )
        if groups is None:
            in_fit = np.zeros(n, dtype=bool)
            in_fit[rng.permutation(n)[:n_fit]] = True
            labels = None
        else:
            labels = as_group_labels(groups, n=n)
            in_fit = whole_groups(labels, n_fit, rng)
            n_fit = int(in_fit.sum())
            if n_fit < 10 or n - n_fit < 10:
                raise InsufficientDataError(
                    f"Whole groups split {n} rows into {n_fit} fit and {n - n_fit} test rows;"
                    " each part needs at least 10. Use more rows or smaller groups."
                )
        fit_rows = x[in_fit]
        test_index = np.flatnonzero(~in_fit)
        if test_index.size > max_rows and labels is not None:
            test_index = test_index[whole_groups(labels[test_index], max_rows, rng)]
        elif test_index.size > max_rows:
            test_index = np.sort(rng.choice(test_index, max_rows, replace=False))
        test_rows = x[test_index]

        # One covariance decomposition serves the top-k projection and the outer one.
        outer_k = max(1, min(outer_components, x.shape[1] - 1))
        base = FrozenPCA(n_components=max(n_components, outer_k)).fit(fit_rows)
        projection = base.truncated(
            n_components, align_to=None if align_to is None else align_to.projection
        )
        # At most d - 1 components, so something is left outside them on full-rank data.
        outer = base.truncated(outer_k)
        bandwidth = median_bandwidth(fit_rows, seed=rng)
        fit_scores, outer_norm = projection.scores_and_residuals(fit_rows, outside=outer)
        pc1_fit = fit_scores[:, 0] / projection.scale_[0]
        edges = np.quantile(pc1_fit, np.linspace(0, 1, n_bins + 1)[1:-1])
        anchors = fit_rows
        if n_fit > max_anchors:
            anchors = fit_rows[np.sort(rng.choice(n_fit, max_anchors, replace=False))]
        k = min(novelty_k, anchors.shape[0] - 1)
        loo = nearest_anchors(anchors, anchors, k=k, exclude_self=True)[0].mean(axis=1)
        residual_scale = float(np.std(outer_norm, ddof=1))
        n_freq = max(n_random_features // 2, 1)
        frequencies = rng.normal(scale=1.0 / bandwidth, size=(x.shape[1], n_freq))
        params = ReferenceParams(
            seed=seed,
            fit_fraction=float(fit_fraction),
            n_components=n_components,
            n_bins=n_bins,
            smoothing=float(smoothing),
            max_rows=max_rows,
            exact_rows=exact_rows,
            n_random_features=2 * n_freq,
            novelty_k=k,
            max_anchors=max_anchors,
            energy_rows=energy_rows,
            outer_components=outer.n_components_,
        )
        tiny = np.finfo(np.float64).tiny
        reference = cls(
            params=params,
            projection=projection,
            bandwidth=bandwidth,
            pc1_edges=edges,
            residual_scale=max(residual_scale, tiny),
            sample=test_rows,
            anchors=anchors,
            novelty_scale=max(float(np.median(loo)), tiny),
            rff_frequencies=frequencies.astype(np.float32),
            outer_projection=outer,
            # floor far below any embedding's scale, and representable in float32
            outer_scale=max(float(np.sqrt(np.mean(outer_norm**2))), 1e-12),
            n_fit=n_fit,
            n_total=n,
            sample_groups=None if labels is None else labels[test_index],
        )
        if sizes and labels is not None:
            n_groups = np.unique(labels[test_index]).size
            if n_groups < _MIN_NULL_GROUPS:
                raise InsufficientDataError(
                    f"A stored null splits the held-out rows by group, and this reference holds"
                    f" {n_groups} held-out groups; with fewer than {_MIN_NULL_GROUPS} the"
                    " simulated null is too narrow (false alarms above alpha). Fit on more"
                    " groups, or drop window_sizes and compare with groups= (the group"
                    " permutation is exact with any number of groups)."
                )
        for window in sorted(set(sizes)):
            reference._nulls[window] = reference._simulate_null(window, n_calibration, rng)
        return reference

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.projection.dim

    @property
    def sample_groups(self) -> np.ndarray | None:
        """Group labels of the held-out test rows (read-only), or None without groups."""
        return self._sample_groups

    @property
    def window_sizes(self) -> tuple[int, ...]:
        """Window sizes with a stored null (``Reference.fit(..., window_sizes=...)``)."""
        return tuple(sorted(self._nulls))

    @property
    def sample(self) -> np.ndarray:
        """The held-out reference test rows (read-only float32 array)."""
        return self._sample

    def __repr__(self) -> str:
        return (
            f"Reference(id={self.reference_id!r}, d={self.dim}, n_fit={self.n_fit},"
            f" n_test={self._sample.shape[0]}, k={self.projection.n_components_})"
        )

    # ------------------------------------------------------------------ comparing
    def compare(
        self,
        current: npt.ArrayLike,
        *,
        alpha: float = 0.05,
        n_permutations: int | None = None,
        seed: int | np.random.Generator | None = 0,
        metrics: Sequence[str] | None = None,
        decision_metrics: Sequence[str] | None = None,
        min_effect: Mapping[str, float] | None = None,
        groups: npt.ArrayLike | None = None,
        calibration: str = "permutation",
    ) -> DriftResult:
        """Compare a current window with the reference; p-values by permutation or from the
        null stored at fit.

        Parameters
        ----------
        current : array-like (m, d)
            The current window; at least 2 rows (unbiased MMD² and variances need two).
        alpha : float in (0, 1)
            Level of every decision, per metric and combined.
        n_permutations : int, optional
            Random splits of the pooled rows; per-metric p-values are multiples of
            1/(n_permutations + 1), the verdict's of 1/((n_permutations + 1) w) for a family
            weight w below. Default: 500 on the exact path, 200 on the large-n path, raised
            when alpha or a family's weight w is small so that (B + 1) alpha w >= 4, at most
            to 999 (999 at alpha = 0.01 in a row-level check with the default decision
            metrics). Memory: each set of assignments is (B + 1) x N float32, N the pooled
            rows (two sets in a row-level check: the kernel family's and the others'). A count
            with which some family of decision metrics could never move the verdict
            (1 / ((B + 1) w) > alpha) raises ``InvalidParameterError`` naming the smallest
            that can (49 with the default decision metrics at alpha = 0.05); so does a stored
            null of too few replicates (``Reference.fit``'s ``n_calibration``).
        seed : int, Generator or None
            Seeds the permutations and any subsampling.
        metrics : sequence of str, optional
            Subset of ``METRICS`` to compute (default: all).
        decision_metrics : sequence of str, optional
            The metrics that make the combined decision (default: those of
            ``DECISION_METRICS`` that are computed, or all computed metrics when none is):
            in a row-level permutation check a min-p within the kernel family
            (``KERNEL_METRICS``) and within the projection family (the others), then a
            weighted Bonferroni across the two, each family weighted by its share of these
            metrics (a family whose decision metrics are all left out of the check, such as
            the large-n ``energy`` of small windows, gives its weight to the other; with none
            left, ``InsufficientDataError``); with groups or a stored null (one set of
            permutations for all) one min-p. Every metric keeps its own p-value and decision
            at level alpha.
        min_effect : mapping of metric name to float, optional
            Alert on effect size too: a metric then calls drift only when its p-value is at
            most alpha *and* its effect size is at least this value, and the combined
            decision needs the combined p-value at most alpha and at least one metric that
            calls drift among ``decision_metrics``. At n = 1M a tiny shift is significant; this
            keeps it from alerting.
        groups : array-like (m,), optional
            A label per current row when rows come in groups of near-duplicates; the
            reference must have been fitted with ``groups`` too. The permutations then move
            whole groups (rows sharing a label on one side) between the sides
            (:func:`~embdrift.stats.permutation.group_permutation_masks`): rows of one group
            are not exchangeable one by one, and the row-level null is too narrow for them
            (it alarms in 16% of no-drift runs on the real-text benchmark at 2,000 rows).
            ``DriftResult.method`` is then ``"group_permutation"``.
        calibration : {"permutation", "stored"}
            ``"permutation"`` (default): B random splits of the pooled rows, exact for ad-hoc
            comparisons. ``"stored"``: the null stored at fit for the nearest window size
            (within a factor 2 and on the same path; ``Reference.fit(..., window_sizes=...)``),
            rescaled to this window's size, so the check computes each statistic once; for
            monitoring a fixed window size. ``DriftResult.method`` is then ``"stored_null"``.
            A metric the stored null does not hold (a reference saved by an embdrift before
            that metric existed, e.g. without ``local_reconstruction_error``) gets p-value 1
            and no say in the verdict; refit the reference to test it.

        Notes
        -----
        ``mmd`` and ``energy`` (``KERNEL_METRICS``) compare the anchors, the fit rows the
        reference keeps (``max_anchors`` at most), and the held-out rows with the current
        window, all of them permuted, with ``mmd``'s bandwidth the median heuristic on a
        label-free subsample of the pooled rows (``DriftResult.bandwidth``). With ``groups``
        the anchors stay on the reference side of every permutation (the anchors' groups are
        not kept) and ``mmd`` keeps the fitted bandwidth; with ``calibration="stored"`` both
        compare the held-out rows alone with the fitted bandwidth, as their stored null does.
        ``n_reference`` counts the held-out rows.

        Exact path (both sides at most ``exact_rows``): kernel and distance matrices on all
        rows and as many anchors as fit in 2 * ``exact_rows`` rows (a prefix of them, fixed at
        fit), O(N²) memory with N at most 2 * ``exact_rows``, float64. Large-n path: ``mmd``
        from random Fourier features (the (B, N) x (N, D) product of all permutations, in
        float32 and in chunks of rows, anchors included), ``energy`` on a label-independent
        subsample of ``energy_rows`` pooled rows and anchors (left out, NaN with p-value 1,
        when fewer than 10 rows of a side would land in it on average), and the sort-based
        1-D, histogram, moment and novelty statistics on all rows; memory O(B N + n_ref D):
        the reference side's per-row quantities and random-feature angles are computed once at
        fit (and at load), their features at the check's bandwidth and the current window's
        angles chunk by chunk, summed into the permutation sums and never held whole. Float32
        sums and the float32 1-D Wasserstein kernel keep every statistic within ~1e-6
        relative of its float64 value (tested against the exact path). The two families'
        permutations are drawn the same way on both paths. ``DriftResult.path`` says which
        ran.

        Cost: at 20,000 rows per side (d = 384, B = 200) a comparison is ~36 GFLOP of float32
        products: the current window's random-feature angles (m x d x J) and anchor distances
        (m x d x ``max_anchors``), and the permutation sums of the random features and the
        centred rows (B x N x (2J + d)); plus O(B N) per 1-D column, the reference side's
        cosines and sines at the check's bandwidth ((n_ref + anchors) x J) and the
        median-heuristic bandwidth of 1,000 pooled rows.
        """
        t0 = time.perf_counter()
        alpha = check_probability(alpha, name="alpha")
        names = self._metric_names(metrics)
        deciding = self._decision_names(decision_metrics, names)
        gates = self._effect_gates(min_effect, names)
        rng = check_rng(seed)
        cur = as_embeddings(current, name="current", min_rows=2, dim=self.dim)
        stored = check_choice(calibration, name="calibration", choices=CALIBRATIONS) == "stored"
        if stored and (groups is not None or n_permutations is not None):
            raise InvalidParameterError(
                "calibration='stored' takes its null from the reference (simulated at fit, with"
                " the reference's groups); drop 'groups' and 'n_permutations', or use"
                " calibration='permutation'."
            )
        cur_groups = None
        ref_groups = self._sample_groups
        if groups is not None:
            if ref_groups is None:
                raise InvalidParameterError(
                    "'groups' of the current rows need the reference's groups: fit the"
                    " reference with Reference.fit(..., groups=...), or compare without groups."
                )
            cur_groups = as_group_labels(groups, n=cur.shape[0])
        elif ref_groups is not None and not stored:
            raise InvalidParameterError(
                "This reference was fitted with groups: pass the current rows' groups"
                " (compare(..., groups=...)) so the permutations move whole groups, or use"
                " calibration='stored'. Rows of one group compared row by row alarm far above"
                " alpha."
            )
        if cur.shape[0] > self.params.max_rows:
            if cur_groups is not None:
                keep = whole_groups(cur_groups, self.params.max_rows, rng)
                cur, cur_groups = cur[keep], cur_groups[keep]
            else:
                rows = np.sort(rng.choice(cur.shape[0], self.params.max_rows, replace=False))
                cur = cur[rows]
        ref = self._sample
        n_ref, n_cur = ref.shape[0], cur.shape[0]
        table = self._stored_null(n_cur) if stored else None
        exact = max(n_ref, n_cur) <= self.params.exact_rows
        # The kernel statistics take their own permutations (of every reference row) only in a
        # row-level permutation check; otherwise every metric shares ``masks``.
        own_kernel_sides = (
            table is None and cur_groups is None and any(n in KERNEL_METRICS for n in names)
        )
        voting = _voting_families(names, deciding, separate=own_kernel_sides)
        if table is not None:
            # A stored null's replicates were drawn at fit (Reference.fit's n_calibration).
            replicates = table.scores.shape[0]
            _check_verdict_reachable(replicates, alpha, voting, names, parameter="n_calibration")
            masks = np.zeros((1, n_ref + n_cur), dtype=np.float32)
            masks[0, :n_ref] = 1.0
        else:
            replicates = (
                _default_permutations(alpha, voting, exact=exact)
                if n_permutations is None
                else check_int(n_permutations, name="n_permutations", low=19)
            )
            if ref_groups is not None and cur_groups is not None:
                _check_group_count(ref_groups, cur_groups, alpha)
            _check_verdict_reachable(replicates, alpha, voting, names)
            if ref_groups is None or cur_groups is None:
                masks = permutation_masks(n_ref, n_cur, replicates, rng)
            else:
                masks = group_permutation_masks(ref_groups, cur_groups, replicates, rng)
        if own_kernel_sides:
            kernel = self._permuted_sides(cur, replicates, exact=exact, rng=rng)
        elif cur_groups is not None:
            kernel = self._anchored_sides(masks, exact=exact)
        else:
            kernel = _KernelSides(masks=masks, n_anchors=0, bandwidth=self.bandwidth)
        per_row = _Rows.join(self._test_rows, self._rows(cur))
        t1 = time.perf_counter()
        values, between = self._evaluate(names, cur, per_row, masks, kernel, exact=exact, rng=rng)
        t2 = time.perf_counter()
        scores = np.column_stack([_test_statistic(n, values[n]) for n in names])
        if table is not None:
            null = rescaled(
                table,
                names,
                n_ref,
                n_cur,
                energy_rows=self.params.energy_rows,
                n_bins=self.params.n_bins,
                smoothing=self.params.smoothing,
            )
            # A metric the stored null left out (every replicate -inf: the energy subsample of
            # its window size was too small, or the file predates the metric) is left out of
            # this check as well.
            scores[:, np.isneginf(null).all(axis=0)] = -np.inf
            scores = np.vstack([scores, null])
        p_values, critical_values, combined_p = _combine_families(
            scores, _families(names, separate=own_kernel_sides), voting, alpha=alpha
        )
        t3 = time.perf_counter()
        results: dict[str, MetricResult] = {}
        for j, name in enumerate(names):
            observed = float(values[name][0])
            p = float(p_values[j])
            critical = float(critical_values[j])
            effect = _effect_size(name, observed, between)
            results[name] = MetricResult(
                value=observed,
                p_value=p,
                threshold=float(np.exp(critical)) if name == "spread_ratio" else critical,
                effect_size=effect,
                drifted=p <= alpha and abs(effect) >= gates.get(name, 0.0),
            )
        drifted = combined_p <= alpha
        if gates:
            drifted = drifted and any(results[n].drifted for n in deciding)
        return DriftResult(
            drifted=drifted,
            p_value=combined_p,
            alpha=alpha,
            metrics=results,
            n_reference=int(ref.shape[0]),
            n_current=int(cur.shape[0]),
            reference_id=self.reference_id,
            method=(
                "stored_null"
                if table is not None
                else "permutation"
                if cur_groups is None
                else "group_permutation"
            ),
            n_permutations=replicates,
            path="exact" if exact else "large_n",
            decision_metrics=tuple(deciding),
            bandwidth=kernel.bandwidth if "mmd" in names else None,
            timings={
                "project": t1 - t0,
                "statistics": t2 - t1,
                "combine": t3 - t2,
                "total": time.perf_counter() - t0,
            },
        )

    def _stored_null(self, m: int) -> NullTable:
        """The stored null for windows of m rows: the nearest stored size within a factor 2
        that ran on the path a window of m rows takes, or a clear error."""
        exact = max(self._sample.shape[0], m) <= self.params.exact_rows
        usable = [w for w, t in self._nulls.items() if t.exact == exact and w / 2 <= m <= 2 * w]
        if not usable:
            stored = ", ".join(map(str, self.window_sizes)) or "none"
            raise InvalidParameterError(
                f"No stored null fits a window of {m} rows (stored window sizes: {stored};"
                " a stored size must be within a factor 2 and on the same path). Fit the"
                f" reference with window_sizes=[..., {m}], or use calibration='permutation'."
            )
        return self._nulls[min(usable, key=lambda w: abs(np.log(m / w)))]

    def _simulate_null(
        self, window: int, n_calibration: int, rng: np.random.Generator
    ) -> NullTable:
        """Every metric's null for windows of ``window`` rows from splits of the test rows
        (:mod:`embdrift.stats.stored_null`), on the path a live window of that size takes."""
        n = self._sample.shape[0]
        part = min(window, n // 2)
        masks = split_masks(n, part, n_calibration, rng, groups=self._sample_groups)
        sides = masks.sum(axis=1, dtype=np.float64)
        if sides.min() < 2 or (n - sides).min() < 2:
            raise InsufficientDataError(
                f"The reference's {n} held-out rows cannot be split into two sides of at least"
                " 2 rows for the stored null (one group holds most rows). Fit on more rows."
            )
        exact = max(n, window) <= self.params.exact_rows
        names = list(METRICS)
        empty = np.empty((0, self.dim), dtype=np.float32)
        kernel = _KernelSides(masks=masks, n_anchors=0, bandwidth=self.bandwidth)
        values, _ = self._evaluate(
            names, empty, self._test_rows, masks, kernel, exact=exact, rng=rng
        )
        return NullTable(
            window=window,
            exact=exact,
            metrics=tuple(names),
            scores=np.column_stack([_test_statistic(k, values[k]) for k in names]),
            sizes=np.column_stack([sides, n - sides]),
        )

    def _anchor_count(self, n_pooled: int, *, exact: bool) -> int:
        """Anchors a check uses: all of them, but on the exact path only as many as fit in its
        2 * exact_rows matrix beside the ``n_pooled`` held-out and current rows (a prefix of
        them, a subset fixed at fit)."""
        room = 2 * self.params.exact_rows - n_pooled if exact else self.anchors.shape[0]
        return max(0, min(self.anchors.shape[0], room))

    def _anchored_sides(self, masks: np.ndarray, *, exact: bool) -> _KernelSides:
        """The kernel statistics' assignments with the anchors on the reference side of
        every one (exact conditional on the anchors), at the fitted bandwidth."""
        n_anchors = self._anchor_count(masks.shape[1], exact=exact)
        columns = np.arange(n_anchors + masks.shape[1])
        return _KernelSides(
            masks=_anchored_columns(masks, n_anchors, columns),
            n_anchors=n_anchors,
            bandwidth=self.bandwidth,
        )

    def _permuted_sides(
        self, current: np.ndarray, n_permutations: int, *, exact: bool, rng: np.random.Generator
    ) -> _KernelSides:
        """The kernel statistics' own permutations of [anchors, held-out rows, current] and
        the median-heuristic bandwidth of at most ``_BANDWIDTH_ROWS`` pooled rows drawn
        without regard to the sides (the same for every permutation, so the test is exact)."""
        n_ref, n_cur = self._sample.shape[0], current.shape[0]
        n_anchors = self._anchor_count(n_ref + n_cur, exact=exact)
        n_pooled = n_anchors + n_ref + n_cur
        drawn = np.sort(rng.choice(n_pooled, min(n_pooled, _BANDWIDTH_ROWS), replace=False))
        rows = _take_rows((self.anchors[:n_anchors], self._sample, current), drawn)
        return _KernelSides(
            masks=permutation_masks(n_anchors + n_ref, n_cur, n_permutations, rng),
            n_anchors=n_anchors,
            bandwidth=median_bandwidth(rows, max_rows=_BANDWIDTH_ROWS),
        )

    def _metric_names(self, metrics: Sequence[str] | None) -> list[str]:
        if metrics is None:
            return list(METRICS)
        return _check_names(metrics, parameter="metrics", allowed=list(METRICS))

    @staticmethod
    def _decision_names(decision: Sequence[str] | None, names: Sequence[str]) -> list[str]:
        if decision is None:
            chosen = [n for n in DECISION_METRICS if n in names]
            return chosen or list(names)
        return _check_names(decision, parameter="decision_metrics", allowed=names)

    @staticmethod
    def _effect_gates(
        min_effect: Mapping[str, float] | None, names: Sequence[str]
    ) -> dict[str, float]:
        if min_effect is None:
            return {}
        unknown = [k for k in min_effect if k not in names]
        if unknown:
            raise InvalidParameterError(
                f"'min_effect' names metric(s) {unknown} that are not computed; use names"
                f" from {{{', '.join(names)}}}."
            )
        bad = {k: v for k, v in min_effect.items() if not (np.isfinite(v) and v >= 0)}
        if bad:
            raise InvalidParameterError(f"'min_effect' values must be finite and >= 0. Got {bad}.")
        return {k: float(v) for k, v in min_effect.items()}

    def _rows(self, x: np.ndarray) -> _Rows:
        """Scores, reconstruction errors (residual norms outside the outer subspace, also as
        the log ratio to the nearest anchors' own), novelty and PC1 bins of the rows of ``x``
        (float32), in chunks of rows (bounded temporaries)."""
        n = x.shape[0]
        scores = np.empty((n, self.projection.n_components_))
        residuals = np.empty(n)
        local_residuals = np.empty(n)
        novelty = np.empty(n)
        for i in range(0, n, _CHUNK_ROWS):
            chunk = x[i : i + _CHUNK_ROWS]
            raw, outer_norm = self.projection.scores_and_residuals(
                chunk, outside=self.outer_projection
            )
            scores[i : i + len(chunk)] = raw / self.projection.scale_
            residual = outer_norm / self.residual_scale
            residuals[i : i + len(chunk)] = residual
            distances, nearest = nearest_anchors(chunk, self.anchors, k=self.params.novelty_k)
            novelty[i : i + len(chunk)] = distances.mean(axis=1)
            around = self._anchor_residuals[nearest].mean(axis=1)
            local_residuals[i : i + len(chunk)] = np.log(
                (residual + _RESIDUAL_FLOOR) / (around + _RESIDUAL_FLOOR)
            )
        return _Rows(
            scores=scores,
            residuals=residuals,
            local_residuals=local_residuals,
            novelty=novelty / self.novelty_scale,
            bins=np.searchsorted(self.pc1_edges, scores[:, 0], side="right"),
        )

    def _evaluate(
        self,
        names: Sequence[str],
        current: np.ndarray,
        rows: _Rows,
        masks: np.ndarray,
        kernel: _KernelSides,
        *,
        exact: bool,
        rng: np.random.Generator,
    ) -> tuple[dict[str, np.ndarray], float]:
        """Every metric's value (B + 1,): the kernel statistics' for every assignment in
        ``kernel.masks``, the others' for every assignment in ``masks``; and the observed
        2E‖X−Y‖ of the energy statistic (its effect-size denominator; NaN if not computed).

        Statistics that depend on an assignment only through column sums share one pass over
        the rows (``column_sums``); on the large-n path the random features and centred rows of
        the current window are computed chunk by chunk and never held whole, and the sums run
        in float32 BLAS (accumulated over chunks in float64).
        """
        wanted = set(names)
        n, m = (side.astype(np.float64) for side in _group_sizes(masks))
        values: dict[str, np.ndarray] = {}
        between = float("nan")

        # Kernel and distance statistics over the pooled rows [anchors, test rows, current],
        # assigned by ``kernel.masks`` (KERNEL_METRICS).
        n_k, m_k = _group_sizes(kernel.masks)
        anchors = self.anchors[: kernel.n_anchors]
        if exact and wanted & {"mmd", "energy"}:
            pooled = np.vstack([anchors, self._sample, current])
            sq = pairwise_sq_distances(pooled)
            # One N x N matrix beside ``sq`` at a time: the kernel matrix is freed before
            # the distance matrix is built.
            if "mmd" in wanted:
                mmd = KernelMMD(pooled, bandwidth=kernel.bandwidth, sq_distances=sq)
                values["mmd"] = mmd.values(kernel.masks)
                del mmd
            if "energy" in wanted:
                stat = EnergyStatistic(pooled, sq_distances=sq)
                values["energy"], e_between = stat.parts(kernel.masks)
                between = float(e_between[0])
        elif "energy" in wanted:
            # A seeded, label-independent subsample of the pooled rows keeps the test exact.
            n_pooled = kernel.masks.shape[1]
            size = min(self.params.energy_rows, n_pooled)
            if size * min(n_k[0], m_k[0]) < _MIN_ENERGY_SIDE_ROWS * n_pooled:
                # Too few rows of the smaller side would land in the subsample on average:
                # energy is left out (NaN everywhere scores no evidence: p-value 1), decided
                # from the sizes alone, so the test stays exact.
                values["energy"] = np.full(masks.shape[0], np.nan)
            else:
                chosen = np.sort(rng.choice(n_pooled, size, replace=False))
                subsample = _take_rows((anchors, self._sample, current), chosen)
                stat = EnergyStatistic(subsample)
                values["energy"], e_between = stat.parts(kernel.masks[:, chosen])
                between = float(e_between[0])
        if "mmd" in wanted and not exact:
            s_f, t_f = column_sums(kernel.masks, self._feature_chunks(current, kernel))
            values["mmd"] = FeatureMMD.from_sums(s_f, t_f, n_k, m_k)

        # Mean shift outside the outer subspace, from the sums of centred rows: the outer
        # projector is linear, so projecting the difference of side means equals the
        # difference of projected means (no (N, d) array of residual vectors).
        if "residual_mean_shift" in wanted:
            s_c, t_c = column_sums(masks, self._centered_chunks(current, exact=exact))
            diff = (t_c - s_c) / m[:, None] - s_c / n[:, None]
            comps = self.outer_projection.components_
            diff -= (diff @ comps.T) @ comps
            values["residual_mean_shift"] = np.sqrt(np.einsum("bd,bd->b", diff, diff)) / (
                self.outer_scale
            )

        # Moment, histogram and novelty statistics: one (B, N) x (N, c) float64 product.
        k = rows.scores.shape[1]
        blocks: dict[str, np.ndarray] = {}
        if wanted & {"mean_shift", "spread_ratio"}:
            blocks["scores"] = rows.scores
        if "spread_ratio" in wanted:
            blocks["squares"] = rows.scores**2
        if wanted & {"kl_pc1", "js_pc1"}:
            onehot = np.zeros((rows.bins.size, self.params.n_bins))
            onehot[np.arange(rows.bins.size), rows.bins] = 1.0
            blocks["bins"] = onehot
        if "novelty" in wanted:
            blocks["novelty"] = rows.novelty[:, None]
        if blocks:
            stacked = np.hstack(list(blocks.values()))
            chunks = (
                (i, stacked[i : i + _CHUNK_ROWS]) for i in range(0, len(stacked), _CHUNK_ROWS)
            )
            s_all, t_all = column_sums(masks, chunks)
            edges = np.cumsum([0, *(b.shape[1] for b in blocks.values())])
            part = {
                name: (s_all[:, lo:hi], t_all[lo:hi])
                for name, lo, hi in zip(blocks, edges[:-1], edges[1:], strict=True)
            }
            if "mean_shift" in wanted:
                values["mean_shift"] = MeanShift.from_sums(*part["scores"], n, m)
            if "spread_ratio" in wanted:
                values["spread_ratio"] = SpreadRatio.from_sums(
                    *part["scores"], *part["squares"], n, m
                )
            for name, kind in (("kl_pc1", "kl"), ("js_pc1", "js")):
                if name in wanted:
                    values[name] = HistogramDivergence.from_counts(
                        *part["bins"], n, m, kind=kind, smoothing=self.params.smoothing
                    )
            if "novelty" in wanted:
                s_nov, t_nov = part["novelty"]
                values["novelty"] = MeanDifference.from_sums(s_nov[:, 0], float(t_nov[0]), n, m)

        # Sort-based 1-D statistics: one pass over the columns that are needed.
        columns: list[np.ndarray] = []
        if "sliced_wasserstein" in wanted:
            columns.append(rows.scores)
        elif "wasserstein_pc1" in wanted:
            columns.append(rows.scores[:, :1])
        residual_columns = {
            "reconstruction_error": rows.residuals,
            "local_reconstruction_error": rows.local_residuals,
        }
        residual_names = [name for name in residual_columns if name in wanted]
        columns.extend(residual_columns[name][:, None] for name in residual_names)
        if columns:
            w1 = Wasserstein1D(np.hstack(columns)).per_column(masks)
            if "sliced_wasserstein" in wanted:
                values["sliced_wasserstein"] = w1[:, :k].mean(axis=1)
            if "wasserstein_pc1" in wanted:
                values["wasserstein_pc1"] = w1[:, 0]
            first = w1.shape[1] - len(residual_names)
            for j, name in enumerate(residual_names):
                values[name] = w1[:, first + j]
        return values, between

    def _feature_chunks(
        self, current: np.ndarray, kernel: _KernelSides
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Random Fourier features at ``kernel.bandwidth`` of the pooled rows [anchors, test
        rows, current] in chunks: the anchors' and test rows' from their cached angles, the
        current rows' computed chunk by chunk."""
        scale = self.bandwidth / kernel.bandwidth
        offset = 0
        for block in (self._anchor_angles[: kernel.n_anchors], self._test_angles):
            for i in range(0, block.shape[0], 4 * _CHUNK_ROWS):
                yield offset + i, fourier_features(block[i : i + 4 * _CHUNK_ROWS], scale=scale)
            offset += block.shape[0]
        for i in range(0, current.shape[0], _CHUNK_ROWS):
            angles = fourier_angles(
                current[i : i + _CHUNK_ROWS], self.rff_frequencies, center=self.projection.mean_
            )
            yield offset + i, fourier_features(angles, scale=scale)

    def _centered_chunks(
        self, current: np.ndarray, *, exact: bool
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Pooled rows minus the PCA mean, in chunks (float64 on the exact path)."""
        dtype = np.float64 if exact else np.float32
        mean = self.projection.mean_.astype(dtype)
        n_ref = self._sample.shape[0]
        for offset, block in ((0, self._sample), (n_ref, current)):
            for i in range(0, block.shape[0], _CHUNK_ROWS):
                yield offset + i, np.subtract(block[i : i + _CHUNK_ROWS], mean, dtype=dtype)

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **self.projection.to_arrays(),
            "pc1_edges": self.pc1_edges,
            "sample": self._sample,
            "anchors": self.anchors,
            "rff_frequencies": self.rff_frequencies,
            **{f"outer_{k}": v for k, v in self.outer_projection.to_arrays().items()},
            **({} if self._sample_groups is None else {"sample_groups": self._sample_groups}),
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "params": asdict(self.params),
            "bandwidth": self.bandwidth,
            "residual_scale": self.residual_scale,
            "novelty_scale": self.novelty_scale,
            "outer_scale": self.outer_scale,
            "n_fit": self.n_fit,
            "n_total": self.n_total,
        }

    def _null_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for w in self.window_sizes:
            out.update(self._nulls[w].to_arrays(f"null_{w}_"))
        return out

    def _digest(self) -> str:
        return _array_digest(self._arrays(), json.dumps(self._metadata(), sort_keys=True))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the reference to ``path`` (an ``.npz`` archive with JSON metadata; no pickle).

        The file is written to a temporary name and renamed, so a crash never leaves half a
        reference behind.
        """
        target = Path(path)
        null_arrays = self._null_arrays()
        nulls = [self._nulls[w].to_metadata() for w in self.window_sizes]
        meta = {
            **self._metadata(),
            "reference_id": self.reference_id,
            "nulls": nulls,
            "null_digest": _null_digest(self.reference_id, nulls, null_arrays),
        }
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {
            "metadata": np.array(json.dumps(meta)),
            **self._arrays(),
            **null_arrays,
        }
        np.savez_compressed(buffer, **arrays)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buffer.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, max_bytes: int = MAX_REFERENCE_BYTES
    ) -> Reference:
        """Read a reference written by :meth:`save`; safe on a file from an untrusted source.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.npz`` file.
        max_bytes : int
            Most bytes the file's arrays may unpack to (default 4 GiB).

        Notes
        -----
        Nothing in the file is executed, imported or followed: the archive must hold exactly
        the members :meth:`save` writes; each member's ``.npy`` header is read first and must
        announce a float array (the metadata: a unicode scalar) whose byte count agrees with
        the member's unpacked size, and all members together at most ``max_bytes``, so a
        declared shape of 10^12 rows or a zip bomb is refused before any array is allocated;
        arrays are read with ``allow_pickle=False`` (no object arrays, no unpickling); the
        JSON metadata must have exactly the keys and types :meth:`save` writes (a path or any
        other string where a number belongs is refused, never opened); the arrays must be
        finite with shapes consistent with each other and the metadata; and the content
        must hash to the stored ``reference_id``. Every refusal is a
        :class:`~embdrift.errors.ReferenceFormatError`.
        """
        source = Path(path)
        check_int(max_bytes, name="max_bytes", low=1)
        try:
            _check_archive(source, max_bytes)
            with np.load(source, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except FileNotFoundError:
            raise ReferenceFormatError(
                f"No reference file at {str(source)!r}. Build one with"
                " 'embdrift reference build FILE -o REF'."
            ) from None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
            if isinstance(exc, ReferenceFormatError):
                raise
            raise ReferenceFormatError(
                f"{str(source)!r} is not an embdrift reference (.npz) file: {exc}."
            ) from None
        try:
            meta = json.loads(str(arrays.pop("metadata")))
        except (KeyError, json.JSONDecodeError, RecursionError):
            raise ReferenceFormatError(
                f"{str(source)!r} has no readable embdrift metadata; it is not an embdrift"
                " reference."
            ) from None
        if not isinstance(meta, dict):
            raise ReferenceFormatError(
                f"{str(source)!r} has metadata of type {type(meta).__name__}; expected an object."
            )
        if meta.get("format") != FORMAT_NAME:
            raise ReferenceFormatError(
                f"{str(source)!r} has format {meta.get('format')!r:.80}, expected {FORMAT_NAME!r}."
            )
        if meta.get("version") != FORMAT_VERSION:
            raise ReferenceFormatError(
                f"{str(source)!r} is reference format version {meta.get('version')!r:.80}; this"
                f" embdrift reads version {FORMAT_VERSION}. Rebuild the reference."
            )
        params = _check_metadata(meta, source)
        _check_arrays(arrays, params, source)
        try:
            ref = cls(
                params=params,
                projection=FrozenPCA.from_arrays(arrays),
                bandwidth=float(meta["bandwidth"]),
                pc1_edges=arrays["pc1_edges"],
                residual_scale=float(meta["residual_scale"]),
                sample=arrays["sample"],
                anchors=arrays["anchors"],
                novelty_scale=float(meta["novelty_scale"]),
                rff_frequencies=arrays["rff_frequencies"],
                outer_projection=FrozenPCA.from_arrays(
                    {k[len("outer_") :]: v for k, v in arrays.items() if k.startswith("outer_")}
                ),
                outer_scale=float(meta["outer_scale"]),
                n_fit=int(meta["n_fit"]),
                n_total=int(meta["n_total"]),
                sample_groups=_labels(arrays.get("sample_groups"), source),
                nulls=_stored_nulls(meta, arrays, source),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReferenceFormatError(
                f"{str(source)!r} is missing reference field {exc}; the file is incomplete."
            ) from None
        if meta.get("reference_id") != ref.reference_id:
            raise ReferenceFormatError(
                f"{str(source)!r} is corrupt: its content does not match its reference_id"
                f" {meta.get('reference_id')!r:.40}."
            )
        return ref


# ---------------------------------------------------------------------- loading safely
#: Members of a saved reference (``np.savez`` stores array NAME as ``NAME.npy``).
_PCA_KEYS = ("pca_mean", "pca_components", "pca_explained_variance", "pca_total_variance")
_ARRAY_KEYS = (
    *_PCA_KEYS,
    "pca_scale",
    "pc1_edges",
    "sample",
    "anchors",
    "rff_frequencies",
    *(f"outer_{k}" for k in (*_PCA_KEYS, "pca_scale")),
)
#: Metadata keys and the JSON types of their values.
_META_FLOATS = ("bandwidth", "residual_scale", "novelty_scale", "outer_scale")
_META_KEYS = frozenset(
    (
        "format",
        "version",
        "params",
        "n_fit",
        "n_total",
        "reference_id",
        "nulls",
        "null_digest",
        *_META_FLOATS,
    )
)
#: Stored null members: ``null_{window}_scores`` / ``null_{window}_sizes``.
_NULL_MEMBER = re.compile(r"null_[1-9][0-9]{0,9}_(scores|sizes)\.npy")
#: Longest metadata text (the JSON of a saved reference is a few hundred characters).
_MAX_METADATA_CHARS = 1 << 16


def _check_archive(source: Path, max_bytes: int) -> None:
    """Refuse an archive whose members, declared dtypes or sizes are not a reference's,
    reading only the zip directory and each member's ``.npy`` header."""
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        expected = {f"{k}.npy" for k in ("metadata", *_ARRAY_KEYS)}
        expected |= {n for n in names if n == "sample_groups.npy" or _NULL_MEMBER.fullmatch(n)}
        if "metadata.npy" not in names:
            raise ReferenceFormatError(
                f"{str(source)!r} has no embdrift metadata; it is not an embdrift reference."
            )
        if len(names) != len(set(names)) or set(names) != expected:
            extra = sorted(set(names) - expected)
            missing = sorted(expected - set(names))
            raise ReferenceFormatError(
                f"{str(source)!r} does not hold the members of an embdrift reference"
                f" (unexpected: {extra!r:.200}, missing: {missing}, repeated:"
                f" {len(names) != len(set(names))})."
            )
        total = sum(info.file_size for info in infos)
        if total > max_bytes:
            raise ReferenceFormatError(
                f"{str(source)!r} unpacks to {total} bytes, more than max_bytes={max_bytes};"
                " refused before reading (raise max_bytes only for a file you trust)."
            )
        for info in infos:
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"member {info.filename}: .npy version {version}")
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(member)
                header = member.tell()
            is_meta = info.filename == "metadata.npy"
            is_text = is_meta or info.filename == "sample_groups.npy"
            kind_ok = dtype.kind == "U" if is_text else dtype.kind == "f"
            if dtype.hasobject or not kind_ok or dtype.fields is not None:
                raise ReferenceFormatError(
                    f"{str(source)!r}: member {info.filename!r} has dtype {dtype}; a reference"
                    f" holds only {'text' if is_text else 'float'} arrays (no objects, no pickle)."
                )
            if is_meta and dtype.itemsize > 4 * _MAX_METADATA_CHARS:
                raise ReferenceFormatError(
                    f"{str(source)!r}: metadata of {dtype.itemsize // 4} characters; a"
                    f" reference's metadata is at most {_MAX_METADATA_CHARS}."
                )
            n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if header + n_bytes != info.file_size or (is_meta and shape != ()):
                raise ReferenceFormatError(
                    f"{str(source)!r}: member {info.filename!r} declares shape {shape} of"
                    f" {dtype} ({n_bytes} bytes) but unpacks to {info.file_size - header}; the"
                    " file is corrupt or forged."
                )


def _check_metadata(meta: dict[str, Any], source: Path) -> ReferenceParams:
    """The metadata's keys and value types, exactly as :meth:`Reference.save` writes them."""
    if set(meta) != _META_KEYS:
        raise ReferenceFormatError(
            f"{str(source)!r} has metadata keys {sorted(meta)!r:.200}; expected"
            f" {sorted(_META_KEYS)}."
        )
    fields = {f.name: f.type for f in dataclasses.fields(ReferenceParams)}
    raw = meta["params"]
    if not isinstance(raw, dict) or set(raw) != set(fields):
        raise ReferenceFormatError(
            f"{str(source)!r} has reference params {raw!r:.200}; expected an object with the"
            f" keys {sorted(fields)}."
        )
    ints = [k for k, t in fields.items() if t == "int"] + ["n_fit", "n_total"]
    values = {**raw, "n_fit": meta["n_fit"], "n_total": meta["n_total"]}
    for key in ints:
        v = values[key]
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62):
            raise ReferenceFormatError(
                f"{str(source)!r}: metadata field {key!r} must be a non-negative int; got"
                f" {v!r:.80}."
            )
    floats = [(raw, k) for k, t in fields.items() if t == "float"]
    for holder, key in [*floats, *((meta, k) for k in _META_FLOATS)]:
        v = holder[key]
        if not (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)):
            raise ReferenceFormatError(
                f"{str(source)!r}: metadata field {key!r} must be a finite number; got {v!r:.80}."
            )
        if key != "fit_fraction" and v <= 0:
            raise ReferenceFormatError(
                f"{str(source)!r}: metadata field {key!r} must be positive; got {v!r}."
            )
    for key in ("reference_id", "null_digest"):
        if not isinstance(meta[key], str):
            raise ReferenceFormatError(f"{str(source)!r}: metadata field {key!r} must be a string.")
    nulls = meta["nulls"]
    entry_ok = all(
        isinstance(e, dict)
        and set(e) == {"window", "exact", "metrics"}
        and type(e["window"]) is int
        and 0 < e["window"] < 2**31
        and isinstance(e["exact"], bool)
        and isinstance(e["metrics"], list)
        and all(isinstance(m, str) for m in e["metrics"])
        for e in (nulls if isinstance(nulls, list) else [None])
    )
    if not entry_ok:
        raise ReferenceFormatError(
            f"{str(source)!r}: metadata field 'nulls' must be a list of"
            f" {{window, exact, metrics}} objects; got {nulls!r:.120}."
        )
    return ReferenceParams(**raw)


def _check_arrays(arrays: Mapping[str, np.ndarray], params: ReferenceParams, source: Path) -> None:
    """Finite float arrays with the shapes of one reference of one dimension ``d``."""
    for key, arr in arrays.items():
        if arr.dtype.kind != "f":
            continue
        # A stored null's scores may be -inf: a replicate whose energy subsample left a side
        # empty scores no evidence (_test_statistic); nothing else may be infinite.
        allowed = np.isfinite(arr) | (np.isneginf(arr) if key.startswith("null_") else False)
        if not np.all(allowed):
            raise ReferenceFormatError(f"{str(source)!r}: array {key!r} holds NaN or inf.")
    mean = arrays["pca_mean"]
    d = mean.shape[0] if mean.ndim == 1 else 0
    expected: dict[str, tuple[int | None, ...]] = {"pca_mean": (d,), "outer_pca_mean": (d,)}
    for prefix in ("", "outer_"):
        comps = arrays[f"{prefix}pca_components"]
        k = comps.shape[0] if comps.ndim == 2 else 0
        expected[f"{prefix}pca_components"] = (k, d)
        expected[f"{prefix}pca_explained_variance"] = (k,)
        expected[f"{prefix}pca_scale"] = (k,)
        expected[f"{prefix}pca_total_variance"] = ()
    expected["pc1_edges"] = (params.n_bins - 1,)
    expected["sample"] = (None, d)
    expected["anchors"] = (None, d)
    expected["rff_frequencies"] = (d, params.n_random_features // 2)
    if "sample_groups" in arrays:
        expected["sample_groups"] = (arrays["sample"].shape[0],)
    for key, want in expected.items():
        shape = arrays[key].shape
        ok = len(shape) == len(want) and all(
            w is None or s == w for s, w in zip(shape, want, strict=True)
        )
        if not ok or d < 1 or (len(shape) == 2 and shape[0] < 1):
            raise ReferenceFormatError(
                f"{str(source)!r}: array {key!r} has shape {shape}; expected"
                f" {tuple('n' if w is None else w for w in want)} for a reference of dimension"
                f" {d}. The file is corrupt or forged."
            )
    n_anchors = arrays["anchors"].shape[0]
    if not 1 <= params.novelty_k < n_anchors:
        raise ReferenceFormatError(
            f"{str(source)!r}: novelty_k={params.novelty_k} with {n_anchors} anchors; a reference"
            " keeps 1 <= novelty_k < its number of anchors. The file is corrupt or forged."
        )
    if not np.array_equal(arrays["pca_mean"], arrays["outer_pca_mean"]):
        raise ReferenceFormatError(
            f"{str(source)!r}: the projection and the outer projection have different means"
            " ('pca_mean', 'outer_pca_mean'); both come from one fit. The file is corrupt or"
            " forged."
        )


# ---------------------------------------------------------------------- metric wiring
def _check_group_count(reference: np.ndarray, current: np.ndarray, alpha: float) -> None:
    """Refuse a group permutation that cannot reach level alpha: with G groups of which G_ref
    are the reference's there are only C(G, G_ref) distinct assignments."""
    g_ref, g_cur = np.unique(reference).size, np.unique(current).size
    splits = math.comb(g_ref + g_cur, g_ref)  # exact integer; compared with a float exactly
    if splits < 1 / alpha:
        raise InsufficientDataError(
            f"{g_ref} reference and {g_cur} current groups allow only {splits} distinct group"
            f" permutations, too few for a p-value at alpha={alpha}. Compare more groups."
        )


def _labels(array: np.ndarray | None, source: Path) -> np.ndarray | None:
    """Stored group labels, which must be a 1-D string array."""
    if array is None:
        return None
    if array.ndim != 1 or array.dtype.kind != "U":
        raise ReferenceFormatError(
            f"{str(source)!r} holds group labels of dtype {array.dtype} and shape"
            f" {array.shape}; expected 1-D strings. The file is not a valid reference."
        )
    return array


def _array_digest(arrays: Mapping[str, np.ndarray], header: str = "") -> str:
    """First 16 hex digits of the SHA-256 of ``header`` and the arrays in key order."""
    h = hashlib.sha256(header.encode())
    for key, arr in sorted(arrays.items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _null_digest(reference_id: str, nulls: Any, arrays: Mapping[str, np.ndarray]) -> str:
    """Checksum of stored nulls, tied to their reference and their metadata."""
    return _array_digest(arrays, reference_id + json.dumps(nulls, sort_keys=True))


def _stored_nulls(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], source: Path
) -> dict[int, NullTable]:
    """The stored nulls of a saved reference, checked against their checksum."""
    tables = {}
    for entry in meta.get("nulls", []):
        w = int(entry["window"])
        prefix = f"null_{w}_"
        parts = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        tables[w] = NullTable.from_parts(entry, parts)
    found = {k: v for k, v in arrays.items() if k.startswith("null_")}
    expected = _null_digest(str(meta.get("reference_id")), meta.get("nulls", []), found)
    if tables and expected != meta.get("null_digest"):
        raise ReferenceFormatError(
            f"{str(source)!r} is corrupt: its stored null distributions do not match their"
            " checksum. Refit the reference (Reference.fit(..., window_sizes=...))."
        )
    return tables


def _take_rows(blocks: Sequence[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (sorted) of the blocks stacked in order, without stacking them."""
    bounds = np.cumsum([0, *(block.shape[0] for block in blocks)])
    return np.vstack(
        [
            block[index[(index >= lo) & (index < hi)] - lo]
            for block, lo, hi in zip(blocks, bounds[:-1], bounds[1:], strict=True)
        ]
    )


def _anchored_columns(masks: np.ndarray, n_anchors: int, columns: np.ndarray) -> np.ndarray:
    """Columns ``columns`` of the assignments over [anchors, test rows, current]: the first
    ``n_anchors`` pooled rows (the anchors) are on the reference side of every assignment."""
    out = np.ones((masks.shape[0], columns.size), dtype=masks.dtype)
    outside = columns >= n_anchors
    out[:, outside] = masks[:, columns[outside] - n_anchors]
    return out


def _group_sizes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = masks.sum(axis=1, dtype=np.float64)
    return n, masks.shape[1] - n


def _families(names: Sequence[str], *, separate: bool) -> list[list[int]]:
    """Column indices of the metrics ``names`` that share one set of permutations: the kernel
    statistics and the others apart when the kernel statistics are permuted over their own
    rows (``separate``), else all together."""
    if not separate:
        return [list(range(len(names)))]
    split = [[j for j, n in enumerate(names) if (n in KERNEL_METRICS) == k] for k in (True, False)]
    return [family for family in split if family]


def _voting_families(
    names: Sequence[str], deciding: Sequence[str], *, separate: bool
) -> list[tuple[list[int], Fraction]]:
    """Each family's decision metrics (column indices into ``names``) and its weight in the
    verdict: its share of ``deciding``, an exact fraction (the weights sum to 1)."""
    voting = []
    for family in _families(names, separate=separate):
        members = [j for j in family if names[j] in deciding]
        if members:
            voting.append((members, Fraction(len(members), len(deciding))))
    return voting


#: Permutations of a check by default: on the exact path, on the large-n path.
_DEFAULT_PERMUTATIONS = (500, 200)
#: A default count leaves at least this many permutations' room below each family's level:
#: (B + 1) alpha w >= 4, which the large-n default of 200 meets at alpha = 0.05 (w = 2/5).
_DEFAULT_ROOM = 4
#: The default count rises no further (each set of assignments is (B + 1) x N float32); a
#: level that needs more is refused with the count that reaches it, for the caller to choose.
_MAX_DEFAULT_PERMUTATIONS = 999


def _default_permutations(
    alpha: float, voting: Sequence[tuple[Sequence[int], Fraction]], *, exact: bool
) -> int:
    """The default permutation count: 500 on the exact path, 200 on the large-n path, raised
    when alpha or the lightest family weight w is small to the smallest B with
    (B + 1) alpha w >= 4 (999 at alpha = 0.01 with the default decision metrics in a
    row-level check, w = 2/5), at most 999."""
    weight = min(w for _, w in voting)
    needed = math.ceil(_DEFAULT_ROOM / (Fraction(alpha) * weight)) - 1
    base = _DEFAULT_PERMUTATIONS[0] if exact else _DEFAULT_PERMUTATIONS[1]
    return max(base, min(needed, _MAX_DEFAULT_PERMUTATIONS))


def _check_verdict_reachable(
    n_replicates: int,
    alpha: float,
    voting: Sequence[tuple[Sequence[int], Fraction]],
    names: Sequence[str],
    *,
    parameter: str = "n_permutations",
) -> None:
    """Refuse a count of null replicates B with which a family of decision metrics could
    never move the verdict: its smallest verdict p-value, 1 / ((B + 1) w), above alpha. The
    check asks it of every family, not only of the heaviest, so that no decision metric is
    silently out of the verdict. ``parameter`` names the count in the message."""
    weight = min(w for _, w in voting)
    floor = Fraction(1, n_replicates + 1) / weight
    if float(floor) > alpha:
        needed = math.floor(1 / (Fraction(alpha) * weight))
        while float(Fraction(1, needed + 1) / weight) > alpha:
            needed += 1
        while needed > 1 and float(Fraction(1, needed) / weight) <= alpha:
            needed -= 1
        light = "; ".join(", ".join(names[j] for j in cols) for cols, w in voting if w == weight)
        if parameter == "n_calibration":
            fix = (
                f"refit with Reference.fit(..., n_calibration={needed}), or use"
                " calibration='permutation'"
            )
        else:
            fix = f"use {parameter} >= {needed}"
        if len(voting) == 1:
            what = f"the verdict's p-value cannot go below {float(floor):.3g}"
            outcome = "so it could never flag drift"
        else:
            what = (
                f"the verdict's p-value through the family of {light} (weight {weight})"
                f" cannot go below {float(floor):.3g}"
            )
            outcome = f"so {light} could never move the verdict"
        raise InvalidParameterError(
            f"With {parameter}={n_replicates} {what}, above alpha={alpha}, {outcome}: {fix}."
        )


def _combine_families(
    scores: np.ndarray,
    families: Sequence[Sequence[int]],
    voting: Sequence[tuple[Sequence[int], Fraction]],
    *,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-metric p-values and critical values, and the verdict's p-value, from the
    statistics ``scores`` (B + 1, J).

    Within each family (metrics on one set of permutations, ``_families``) the min-p;
    across the families' decision metrics ``voting`` a weighted Bonferroni
    (:func:`~embdrift.stats.permutation.weighted_bonferroni`, in exact fractions, so that a
    verdict p-value equal to alpha is not rounded above it), the plain min-p when there is
    one family. A family whose decision metrics are left out of this check (every score
    −inf, observed and permuted alike) gives its weight to the others; when every decision
    metric is left out, ``InsufficientDataError``. That keeps the verdict exact because the
    only way a whole column is −inf is the large-n ``energy`` left out on the window sizes
    alone, which depends on neither the embeddings nor the split. (The check of the
    replicate count still counts such a family: conservative.)
    """
    p_values = np.empty(scores.shape[1])
    critical = np.empty(scores.shape[1])
    for family in families:
        outcome = combine_min_p(scores[:, family], alpha=alpha)
        p_values[family] = outcome.p_values
        critical[family] = outcome.critical_values
    present = [(cols, w) for cols, w in voting if not np.isneginf(scores[:, cols]).all()]
    if not present:
        raise InsufficientDataError(
            "Every decision metric is left out of this check (on the large-n path energy needs"
            " at least 10 rows of each side in its subsample of energy_rows pooled rows), so"
            " the verdict has nothing to decide on. Add decision metrics, or fit the reference"
            " with a larger energy_rows."
        )
    total = scores.shape[0]
    family_p = [
        Fraction(round(combine_min_p(scores[:, cols], alpha=alpha).combined_p_value * total), total)
        for cols, _ in present
    ]
    left = sum(w for _, w in present)
    return p_values, critical, weighted_bonferroni(family_p, [w / left for _, w in present])


def _test_statistic(name: str, values: np.ndarray) -> np.ndarray:
    """Map a metric's values to a score where larger means more drift: spread_ratio is tested
    two-sided through |log ratio| (``SpreadRatio.test_statistic``), the rest as they are. An
    undefined value (NaN: the large-n energy subsample left a side empty) scores −inf, no
    evidence of drift; being a function of the assignment alone, this keeps the test exact."""
    scores = SpreadRatio.test_statistic(values) if name == "spread_ratio" else values
    return np.where(np.isnan(scores), -np.inf, scores)


def _check_names(value: Sequence[str], *, parameter: str, allowed: Sequence[str]) -> list[str]:
    """``value`` as a de-duplicated list of names from ``allowed``, or a clear error."""
    if isinstance(value, str) or not value:
        raise InvalidParameterError(
            f"The {parameter!r} parameter must be a non-empty list of names from"
            f" {{{', '.join(allowed)}}}. Got {value!r}."
        )
    unknown = [n for n in value if n not in allowed]
    if unknown:
        raise InvalidParameterError(
            f"Unknown metric(s) {unknown} in {parameter!r} (misspelled, or not computed); use"
            f" names from {{{', '.join(allowed)}}}."
        )
    return list(dict.fromkeys(value))


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.float32, order="C")
    out.setflags(write=False)
    return out


def _effect_size(name: str, value: float, energy_between: float) -> float:
    """A scale-free size per metric.

    mmd: the RKHS distance sqrt(max(MMD², 0)) (at most sqrt 2); energy: the energy coefficient
    H = E / (2E‖X−Y‖) in [0, 1]; js_pc1: JS / ln 2 in [0, 1]; spread_ratio: ratio − 1 (relative
    change of spread); the Wasserstein, KL, mean-shift and novelty values are already in
    reference units or nats and are their own effect sizes.
    """
    if name == "mmd":
        return float(np.sqrt(max(value, 0.0)))
    if name == "energy":
        if np.isnan(energy_between):
            return float("nan")
        return value / energy_between if energy_between > 0 else 0.0
    if name == "js_pc1":
        return value / float(np.log(2.0))
    if name == "spread_ratio":
        return value - 1.0
    return value
