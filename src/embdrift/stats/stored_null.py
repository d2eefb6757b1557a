"""Null distributions stored in a reference, so a monitoring check costs one statistic.

``Reference.fit(..., window_sizes=(m, ...))`` simulates, for each window size m, the joint null
of every metric from splits of the reference's own held-out rows S (n rows): replicate b puts
a pseudo-window C_b of m_b = min(m, n // 2) rows on one side (whole groups when the reference
has group labels) and the other n − m_b rows on the other, and evaluates every statistic with
the same code, path and frozen parameters a live comparison of m rows uses. Nothing in S was
used to fit the projection, the kernel or the bins, so under no drift a live window and C_b are
exchangeable with the rest of S, and the live statistic ranks uniformly among the replicates.

A live test compares all n rows of S with m rows, a replicate n − m_b with m_b. Each
statistic's null scale follows its asymptotics in 1/n + 1/m (Gretton et al. (2012), "A Kernel
Two-Sample Test", JMLR 13, Thm. 12, for MMD²; Székely & Rizzo (2013), "Energy statistics",
J. Stat. Plan. Inference 143(8), Sec. 6, for the energy distance): squared distances and
divergences (MMD², energy, KL, JS) scale linearly, distances (Wasserstein, mean shift,
|log spread ratio|, novelty, residual mean shift) as the square root, so replicate b is
multiplied by ``c_b = (1/n + 1/m) / (1/n_b + 1/m_b)`` or ``sqrt(c_b)``. The energy distance of
the large-n path runs on ``energy_rows`` pooled rows, so its sizes are the subsample's (where
too few rows of a side would land in that subsample, energy is left out: every replicate
scores −inf, and ``Reference.compare`` then leaves it out of the live check as well; a
replicate whose side came out empty by chance scores −inf too, and a live window of another
size inherits that share, negligible with the 10 expected rows required); the PC1
histograms are smoothed, p = (c + s) / (n + K s) over K bins, whose variance
n p (1 − p) / (n + K s)² makes the effective size n_eff = (n + K s)² / n. The
rescaling is exact in the large-sample limit for statistics whose null is a scaled weighted
chi-square, and first order otherwise; ``tests/test_stored_null.py`` checks the false-alarm
rate it yields (over 300 fresh references at alpha = 0.05: every metric between 0.027 and
0.067, the verdict 0.030 at its own window size and 0.050 when rescaled from half of it).

Both the permutation test and the stored null hold alpha unconditionally, over references;
one fixed reference's own false-alarm rate varies around it (``benchmarks/calibration.py``
reports the spread of both). The permutation test is in addition exact in finite samples and
needs no rescaling, at the price of B statistics per check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embdrift.stats.permutation import permutation_masks, whole_groups

__all__ = ["SCALING", "NullTable", "rescaled", "split_masks"]

#: How each metric's null scales with 1/n + 1/m: "linear" or "sqrt".
SCALING: Mapping[str, str] = {
    "mmd": "linear",
    "energy": "linear",
    "wasserstein_pc1": "sqrt",
    "sliced_wasserstein": "sqrt",
    "kl_pc1": "linear",
    "js_pc1": "linear",
    "mean_shift": "sqrt",
    "spread_ratio": "sqrt",
    "reconstruction_error": "sqrt",
    "local_reconstruction_error": "sqrt",
    "novelty": "sqrt",
    "residual_mean_shift": "sqrt",
}


@dataclass(frozen=True, slots=True)
class NullTable:
    """The simulated null of every metric for windows of ``window`` rows.

    Attributes
    ----------
    window : int
        The window size m it was simulated for.
    exact : bool
        Whether the statistics ran on the exact path (the live check must use the same).
    metrics : tuple of str
        Column names of ``scores``.
    scores : ndarray (B, J) float64
        Test statistics (larger means more drift) of the B replicates, unscaled.
    sizes : ndarray (B, 2) float64
        Rows on the pseudo-reference and pseudo-window side of each replicate.
    """

    window: int
    exact: bool
    metrics: tuple[str, ...]
    scores: np.ndarray
    sizes: np.ndarray

    def __post_init__(self) -> None:
        for array in (self.scores, self.sizes):
            array.setflags(write=False)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}scores": self.scores, f"{prefix}sizes": self.sizes}

    def to_metadata(self) -> dict[str, Any]:
        return {"window": self.window, "exact": self.exact, "metrics": list(self.metrics)}

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> NullTable:
        """Rebuild a table saved by :meth:`to_metadata` and :meth:`to_arrays`; a field of the
        wrong kind or shape raises ``KeyError``/``ValueError``. A table of a file saved before
        some metric existed holds a subset of :data:`SCALING` (:func:`rescaled` leaves the
        others out)."""
        metrics = tuple(str(name) for name in meta["metrics"])
        scores = np.asarray(arrays["scores"], dtype=np.float64)
        sizes = np.asarray(arrays["sizes"], dtype=np.float64)
        known = set(metrics) <= set(SCALING) and len(set(metrics)) == len(metrics) > 0
        if not known or scores.ndim != 2 or scores.shape[1] != len(metrics):
            raise ValueError(f"null scores of shape {scores.shape} for metrics {metrics}")
        if sizes.shape != (scores.shape[0], 2) or not (sizes >= 2).all():
            raise ValueError(f"null sizes of shape {sizes.shape}")
        return cls(
            window=int(meta["window"]),
            exact=bool(meta["exact"]),
            metrics=metrics,
            scores=scores.copy(),
            sizes=sizes.copy(),
        )


def split_masks(
    n: int,
    window: int,
    n_replicates: int,
    rng: np.random.Generator,
    *,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Splits (B, n) float32 of n reference rows: 1 = pseudo-reference, 0 = pseudo-window.

    Parameters
    ----------
    n : int
        Reference rows to split.
    window : int
        Rows of each pseudo-window (at least, with groups).
    n_replicates : int
        B, the number of splits.
    rng : Generator
        Source of the splits.
    groups : ndarray (n,), optional
        Group labels: whole groups join the pseudo-window
        (:func:`~embdrift.stats.permutation.whole_groups`), so near-duplicates stay together
        as they do in a live window. Without, each pseudo-window is a uniform random subset.

    Examples
    --------
    >>> masks = split_masks(6, 2, 3, np.random.default_rng(0))
    >>> masks.shape, masks.sum(axis=1).tolist()
    ((3, 6), [4.0, 4.0, 4.0])
    """
    if groups is None:
        return permutation_masks(n - window, window, n_replicates, rng)[1:]
    masks = np.empty((n_replicates, n), dtype=np.float32)
    for row in masks:
        row[:] = ~whole_groups(groups, window, rng)
    return masks


def rescaled(
    table: NullTable,
    names: Sequence[str],
    n: int,
    m: int,
    *,
    energy_rows: int,
    n_bins: int,
    smoothing: float,
) -> np.ndarray:
    """The replicates' scores (B, len(names)) scaled to a live test of n reference rows
    against m current rows; −inf for a metric the table does not hold (saved before that
    metric existed), which ``Reference.compare`` then leaves out of the check.

    Notes
    -----
    Replicate b of metric j is multiplied by ``c_b = v(n, m) / v(n_b, m_b)`` ("linear"
    metrics of :data:`SCALING`) or ``sqrt(c_b)`` ("sqrt"), where ``v(n, m) = 1/n + 1/m``, except
    the large-n energy distance, ``v = (N / E)(1/n + 1/m)`` on its subsample of E =
    ``energy_rows`` of the N pooled rows, and the smoothed PC1 histograms,
    ``v = n / (n + K s)² + m / (m + K s)²`` with K = ``n_bins`` and s = ``smoothing``.
    """
    n_b, m_b = table.sizes[:, 0], table.sizes[:, 1]
    out = np.empty((table.scores.shape[0], len(names)))
    for j, name in enumerate(names):
        if name not in table.metrics:
            out[:, j] = -np.inf
            continue
        if name == "energy" and not table.exact:
            factor = _subsampled(n, m, energy_rows) / _subsampled(n_b, m_b, energy_rows)
        elif name in ("kl_pc1", "js_pc1"):
            pad = n_bins * smoothing
            factor = _smoothed(n, m, pad) / _smoothed(n_b, m_b, pad)
        else:
            factor = (1.0 / n + 1.0 / m) / (1.0 / n_b + 1.0 / m_b)
        if SCALING[name] == "sqrt":
            factor = np.sqrt(factor)
        out[:, j] = table.scores[:, table.metrics.index(name)] * factor
    return out


def _subsampled(n: float | np.ndarray, m: float | np.ndarray, rows: int) -> np.ndarray:
    """1/n + 1/m of the side sizes after a label-independent subsample of ``rows`` pooled
    rows (the pooled sizes themselves when there are fewer): (N/E)(1/n + 1/m)."""
    share = np.maximum((n + m) / rows, 1.0)
    return np.asarray(share * (1.0 / n + 1.0 / m))


def _smoothed(n: float | np.ndarray, m: float | np.ndarray, pad: float) -> np.ndarray:
    """1/n_eff + 1/m_eff of histograms smoothed with ``pad`` = K s pseudo-counts in all."""
    return np.asarray(n / (n + pad) ** 2 + m / (m + pad) ** 2)
