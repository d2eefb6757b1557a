"""Drift metrics as plain functions: data positional, options keyword-only, a float back.

Each function evaluates the same two-sample statistic object the permutation engine uses
(``embdrift.stats.twosample``) on the observed split, so there is one implementation of every
formula.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embdrift._validation import as_embeddings, as_values_1d, check_int, check_rng
from embdrift.errors import InvalidParameterError
from embdrift.stats.twosample import (
    EnergyStatistic,
    HistogramDivergence,
    KernelMMD,
    Wasserstein1D,
    pairwise_sq_distances,
)

__all__ = [
    "energy_distance",
    "js_divergence_hist",
    "kl_divergence_hist",
    "median_bandwidth",
    "mmd2_unbiased",
    "sliced_wasserstein",
    "wasserstein_1d",
]


def _observed(n: int, m: int) -> np.ndarray:
    return np.concatenate([np.ones(n), np.zeros(m)])[None, :]


def _pair(x: npt.ArrayLike, y: npt.ArrayLike, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    a = as_embeddings(x, name="x", min_rows=min_rows)
    b = as_embeddings(y, name="y", min_rows=min_rows, dim=a.shape[1])
    return a, b


def median_bandwidth(
    x: npt.ArrayLike, *, max_rows: int = 1000, seed: int | np.random.Generator | None = 0
) -> float:
    """Median heuristic bandwidth h = median ‖x_i − x_j‖ over distinct pairs (Gretton et al.
    2012, Sec. 8), on at most ``max_rows`` rows drawn without replacement.

    Examples
    --------
    >>> median_bandwidth([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    5.0
    """
    arr = as_embeddings(x, name="x", min_rows=2)
    check_int(max_rows, name="max_rows", low=2)
    if arr.shape[0] > max_rows:
        rows = check_rng(seed).choice(arr.shape[0], size=max_rows, replace=False)
        arr = arr[rows]
    dist = np.sqrt(pairwise_sq_distances(arr)[np.triu_indices(arr.shape[0], k=1)])
    h = float(np.median(dist))
    if not h > 0:
        positive = dist[dist > 0]
        if positive.size == 0:
            raise InvalidParameterError(
                "The bandwidth cannot be set: all rows of x are identical. Pass more varied"
                " reference embeddings."
            )
        h = float(np.median(positive))
    return h


def mmd2_unbiased(x: npt.ArrayLike, y: npt.ArrayLike, *, bandwidth: float) -> float:
    """Unbiased MMD² between the rows of x and y with an RBF kernel of width ``bandwidth``.

    Notes
    -----
    k(a, b) = exp(−‖a − b‖² / (2 h²)); MMD²_u as in Gretton et al. (2012), "A Kernel
    Two-Sample Test", JMLR 13:723–773, Eq. (3). It can be slightly negative when the two
    samples come from one distribution.

    Examples
    --------
    >>> round(mmd2_unbiased([[0.0], [1.0]], [[0.0], [1.0]], bandwidth=1.0), 6)
    -0.393469
    """
    if not (isinstance(bandwidth, int | float) and bandwidth > 0 and np.isfinite(bandwidth)):
        raise InvalidParameterError(
            f"The 'bandwidth' parameter must be a positive finite float. Got {bandwidth!r}."
        )
    a, b = _pair(x, y, min_rows=2)
    stat = KernelMMD(np.vstack([a, b]), bandwidth=float(bandwidth))
    return float(stat.values(_observed(len(a), len(b)))[0])


def energy_distance(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ between the rows of x and y.

    Notes
    -----
    Székely & Rizzo (2013), J. Stat. Plan. Inference 143:1249–1272, Eq. (2.1), with means over
    all pairs (dcor's ``energy_distance``). For 1-D data it is the square of
    ``scipy.stats.energy_distance``.

    Examples
    --------
    >>> energy_distance([[0.0], [1.0]], [[0.0], [1.0]])
    0.0
    """
    a, b = _pair(x, y, min_rows=1)
    stat = EnergyStatistic(np.vstack([a, b]))
    return float(stat.values(_observed(len(a), len(b)))[0])


def wasserstein_1d(u: npt.ArrayLike, v: npt.ArrayLike) -> float:
    """Wasserstein-1 distance between two 1-D samples, ∫ |U(t) − V(t)| dt.

    Examples
    --------
    >>> wasserstein_1d([0.0, 1.0, 3.0], [5.0, 6.0, 8.0])
    5.0
    """
    a = as_values_1d(u, name="u")
    b = as_values_1d(v, name="v")
    stat = Wasserstein1D(np.concatenate([a, b]))
    return float(stat.values(_observed(a.size, b.size))[0])


def sliced_wasserstein(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean 1-D Wasserstein-1 distance over the columns of x and y (each column a direction,
    e.g. the frozen top-k PCA scores).

    Examples
    --------
    >>> sliced_wasserstein([[0.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [1.0, 2.0]])
    1.0
    """
    a, b = _pair(x, y, min_rows=1)
    stat = Wasserstein1D(np.vstack([a, b]))
    return float(stat.values(_observed(len(a), len(b)))[0])


def _hist(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    edges: npt.ArrayLike,
    smoothing: float,
    kind: str,
) -> float:
    ref = as_values_1d(reference, name="reference")
    cur = as_values_1d(current, name="current")
    inner = as_values_1d(edges, name="edges")
    if inner.size and np.any(np.diff(inner) < 0):
        raise InvalidParameterError("The 'edges' parameter must be sorted ascending.")
    if not (smoothing > 0 and np.isfinite(smoothing)):
        raise InvalidParameterError(
            f"The 'smoothing' parameter must be a positive finite float. Got {smoothing!r}."
        )
    pooled = np.concatenate([ref, cur])
    index = np.searchsorted(inner, pooled, side="right")
    stat = HistogramDivergence(index, n_bins=inner.size + 1, kind=kind, smoothing=smoothing)
    return float(stat.values(_observed(ref.size, cur.size))[0])


def kl_divergence_hist(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    edges: npt.ArrayLike,
    smoothing: float = 0.5,
) -> float:
    """KL(current ‖ reference) in nats on histograms with the interior bin ``edges``.

    The outer bins are open (−∞, edges[0]) and [edges[-1], ∞), so no value is dropped.
    Counts get ``smoothing`` added per bin before normalising (see
    ``embdrift.stats.twosample.HistogramDivergence`` for the bias this trades).

    Examples
    --------
    >>> kl_divergence_hist([0.0, 1.0], [0.0, 1.0], edges=[0.5])
    0.0
    """
    return _hist(reference, current, edges, smoothing, "kl")


def js_divergence_hist(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    edges: npt.ArrayLike,
    smoothing: float = 0.5,
) -> float:
    """Jensen–Shannon divergence in nats (at most ln 2) on the same smoothed histograms as
    ``kl_divergence_hist``.

    Examples
    --------
    >>> js_divergence_hist([0.0, 1.0], [0.0, 1.0], edges=[0.5])
    0.0
    """
    return _hist(reference, current, edges, smoothing, "js")
