"""What drifted: new, vanished, moved and re-weighted regions, the principal directions that
carry the change, and the points the MMD witness function singles out.

A drift score says *that* a window changed; :func:`explain` says *what* changed, on the frozen
reference (its held-out test rows ``reference.sample`` and its frozen PCA), so that the answer
means the same thing every day.

Nearest-neighbour search uses scikit-learn's exact ``NearestNeighbors`` rather than faiss-cpu:
the explanation runs on bounded samples (the reference's test rows, at most ``max_rows`` current
rows), where an exact brute-force search over a few thousand rows takes well under a second on
two cores; scikit-learn is already a core dependency, gives exact (not approximate) neighbours,
so the permutation calibration below is exact, and ships wheels everywhere. faiss pays off for
millions of rows or approximate indexes, which this bounded design never builds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from embdrift._validation import as_embeddings, check_int, check_probability, check_rng
from embdrift.errors import InvalidParameterError
from embdrift.reference import Reference

__all__ = [
    "ClusterChange",
    "Direction",
    "Explanation",
    "Region",
    "WitnessPoint",
    "explain",
    "witness_values",
]

_TINY = float(np.finfo(np.float64).tiny)


# ---------------------------------------------------------------------- result types
@dataclass(frozen=True, slots=True)
class Region:
    """A new (current-only) or vanished (reference-only) region of the embedding space.

    Attributes
    ----------
    label : str
        ``"new-1"``, ``"new-2"``, ... or ``"vanished-1"``, ... in decreasing size.
    size : int
        Members of the region (current rows for a new region, reference test rows for a
        vanished one).
    share : float
        ``size`` over the rows of its window that were examined (``n_current_used`` or
        ``n_reference``).
    core_size : int
        Members flagged directly (over-represented or far); the rest were attached to them.
    centroid : tuple of float
        Mean of the members on the frozen PCA, standardized (reference standard deviations).
    members : tuple of int
        Rows of the members: rows of the current window as passed to :func:`explain` for a new
        region, rows of ``reference.sample`` for a vanished one.
    examples : tuple of str
        Ids of representative members (those nearest the members' mean, in full dimension):
        current ids for a new region, ``"ref:<row>"`` for a vanished one.
    """

    label: str
    size: int
    share: float
    core_size: int
    centroid: tuple[float, ...]
    members: tuple[int, ...]
    examples: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "size": int(self.size),
            "share": float(self.share),
            "core_size": int(self.core_size),
            "centroid": [float(v) for v in self.centroid],
            "members": [int(v) for v in self.members],
            "examples": list(self.examples),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Region:
        return cls(
            label=str(data["label"]),
            size=int(data["size"]),
            share=float(data["share"]),
            core_size=int(data["core_size"]),
            centroid=tuple(float(v) for v in data["centroid"]),
            members=tuple(int(v) for v in data["members"]),
            examples=tuple(str(v) for v in data["examples"]),
        )


@dataclass(frozen=True, slots=True)
class ClusterChange:
    """How one reference cluster (k-means on the reference's fit rows) changed.

    Attributes
    ----------
    label : str
        ``"ref-1"``, ... in decreasing reference share.
    reference_share, current_share : float
        Share of the rows assigned to the cluster; rows of new regions (current side) and of
        vanished regions (reference side) are left out, so that one new cluster does not make
        every other cluster look re-weighted.
    share_effect : float
        Cohen's h = 2 asin √p_cur − 2 asin √p_ref.
    share_p_value : float
        Two-sided two-proportion z-test of equal shares.
    shift : float
        ‖mean_cur − mean_ref‖ of the members in full dimension, over the reference members'
        root-mean-square distance to their mean (0 = same centre, 1 = one typical radius).
        A cell that holds none of the tested reference rows is described by its fit rows
        (centre, radius and ``reference_centroid``).
    shift_p_value : float or None
        Hotelling's two-sample T² on the standardized frozen PCA scores (F distribution);
        None when a side has too few members.
    reference_centroid, current_centroid : tuple of float
        Member means on the standardized frozen PCA (current: NaN-free only when it has
        members; an empty side repeats the reference centroid).
    n_reference, n_current : int
        Members on each side.
    moved, reweighted : bool
        ``shift_p_value`` / ``share_p_value`` at most ``alpha`` divided by the number of tests
        (the share tests of all clusters plus their shift tests): Bonferroni over both, so
        that ``Explanation.moved_clusters`` keeps the family-wise level ``alpha``.
    examples : tuple of str
        Current ids of members nearest the reference centre (empty when no current member).
    """

    label: str
    reference_share: float
    current_share: float
    share_effect: float
    share_p_value: float
    shift: float
    shift_p_value: float | None
    reference_centroid: tuple[float, ...]
    current_centroid: tuple[float, ...]
    n_reference: int
    n_current: int
    moved: bool
    reweighted: bool
    examples: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "reference_share": float(self.reference_share),
            "current_share": float(self.current_share),
            "share_effect": float(self.share_effect),
            "share_p_value": float(self.share_p_value),
            "shift": float(self.shift),
            "shift_p_value": None if self.shift_p_value is None else float(self.shift_p_value),
            "reference_centroid": [float(v) for v in self.reference_centroid],
            "current_centroid": [float(v) for v in self.current_centroid],
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
            "moved": bool(self.moved),
            "reweighted": bool(self.reweighted),
            "examples": list(self.examples),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterChange:
        p = data.get("shift_p_value")
        return cls(
            label=str(data["label"]),
            reference_share=float(data["reference_share"]),
            current_share=float(data["current_share"]),
            share_effect=float(data["share_effect"]),
            share_p_value=float(data["share_p_value"]),
            shift=float(data["shift"]),
            shift_p_value=None if p is None else float(p),
            reference_centroid=tuple(float(v) for v in data["reference_centroid"]),
            current_centroid=tuple(float(v) for v in data["current_centroid"]),
            n_reference=int(data["n_reference"]),
            n_current=int(data["n_current"]),
            moved=bool(data["moved"]),
            reweighted=bool(data["reweighted"]),
            examples=tuple(str(v) for v in data["examples"]),
        )


@dataclass(frozen=True, slots=True)
class Direction:
    """One frozen principal component's part of the mean shift and of the spread change.

    Attributes
    ----------
    component : int
        1-based index of the frozen PC.
    mean_shift : float
        Difference of means along the PC, in reference standard deviations of that PC.
    mean_shift_share : float
        Its share of the squared full-dimension mean shift, (Δ·v)² / ‖Δ‖².
    spread_ratio : float
        Variance along the PC, current / reference test rows.
    spread_share : float
        |Δvar along the PC| over the sum of |Δvar| over the top-k PCs plus the part outside.
    """

    component: int
    mean_shift: float
    mean_shift_share: float
    spread_ratio: float
    spread_share: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": int(self.component),
            "mean_shift": float(self.mean_shift),
            "mean_shift_share": float(self.mean_shift_share),
            "spread_ratio": float(self.spread_ratio),
            "spread_share": float(self.spread_share),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Direction:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class WitnessPoint:
    """A point and its MMD witness value (positive: over-represented in the current window)."""

    id: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "value": float(self.value)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WitnessPoint:
        return cls(id=str(data["id"]), value=float(data["value"]))


@dataclass(frozen=True, slots=True)
class Explanation:
    """What drifted between a reference and a current window (see :func:`explain`).

    Attributes
    ----------
    reference_id : str
        The frozen reference the explanation was computed against.
    n_reference, n_current, n_current_used : int
        Reference test rows; current rows passed; current rows examined (a seeded sample of
        ``max_rows`` when the window is larger, never silently: both numbers are here).
    new_clusters, vanished_clusters : tuple of Region
        Regions over-represented in (or far from) one side, largest first.
    reference_clusters : tuple of ClusterChange
        The reference's k-means clusters, and how each moved or was re-weighted.
    directions : tuple of Direction
        One per frozen PC, in PC order.
    mean_shift_outside_share, spread_outside_share : float
        The part of the mean shift / spread change outside the frozen top-k subspace.
    witness_over, witness_under : tuple of WitnessPoint
        Current points with the largest witness value, reference rows with the smallest.
    thresholds : Mapping[str, float]
        The calibrated thresholds used (neighbour-fraction and distance, each side).
    params : Mapping[str, Any]
        The options of the call.
    """

    reference_id: str
    n_reference: int
    n_current: int
    n_current_used: int
    new_clusters: tuple[Region, ...]
    vanished_clusters: tuple[Region, ...]
    reference_clusters: tuple[ClusterChange, ...]
    directions: tuple[Direction, ...]
    mean_shift_outside_share: float
    spread_outside_share: float
    witness_over: tuple[WitnessPoint, ...]
    witness_under: tuple[WitnessPoint, ...]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def moved_clusters(self) -> tuple[ClusterChange, ...]:
        """Reference clusters whose centre moved or whose share changed (Bonferroni over the
        share and shift tests of all clusters: family-wise level ``alpha``)."""
        return tuple(c for c in self.reference_clusters if c.moved or c.reweighted)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "reference_id": self.reference_id,
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
            "n_current_used": int(self.n_current_used),
            "new_clusters": [r.to_dict() for r in self.new_clusters],
            "vanished_clusters": [r.to_dict() for r in self.vanished_clusters],
            "reference_clusters": [c.to_dict() for c in self.reference_clusters],
            "directions": [d.to_dict() for d in self.directions],
            "mean_shift_outside_share": float(self.mean_shift_outside_share),
            "spread_outside_share": float(self.spread_outside_share),
            "witness_over": [w.to_dict() for w in self.witness_over],
            "witness_under": [w.to_dict() for w in self.witness_under],
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Explanation:
        return cls(
            reference_id=str(data["reference_id"]),
            n_reference=int(data["n_reference"]),
            n_current=int(data["n_current"]),
            n_current_used=int(data["n_current_used"]),
            new_clusters=tuple(Region.from_dict(r) for r in data["new_clusters"]),
            vanished_clusters=tuple(Region.from_dict(r) for r in data["vanished_clusters"]),
            reference_clusters=tuple(
                ClusterChange.from_dict(c) for c in data["reference_clusters"]
            ),
            directions=tuple(Direction.from_dict(d) for d in data["directions"]),
            mean_shift_outside_share=float(data["mean_shift_outside_share"]),
            spread_outside_share=float(data["spread_outside_share"]),
            witness_over=tuple(WitnessPoint.from_dict(w) for w in data["witness_over"]),
            witness_under=tuple(WitnessPoint.from_dict(w) for w in data["witness_under"]),
            thresholds={k: float(v) for k, v in data.get("thresholds", {}).items()},
            params=dict(data.get("params", {})),
        )


# ---------------------------------------------------------------------- the service
def explain(
    reference: Reference,
    current: npt.ArrayLike,
    *,
    ids: Sequence[Any] | np.ndarray | None = None,
    seed: int | np.random.Generator | None = 0,
    n_neighbors: int = 15,
    quantile: float = 0.99,
    min_cluster_size: int = 10,
    n_attach: int = 3,
    n_null: int = 50,
    n_reference_clusters: int = 8,
    alpha: float = 0.05,
    n_examples: int = 5,
    max_rows: int = 2000,
) -> Explanation:
    """Explain the drift of ``current`` away from ``reference``.

    Parameters
    ----------
    reference : Reference
        The frozen reference; its held-out test rows ``reference.sample`` (n rows) and its
        frozen PCA are used, never its fit rows.
    current : array-like (m, d)
        The current window; at least ``2 * n_neighbors`` rows.
    ids : sequence, optional
        One id per current row (unique; converted to str). Default: the row numbers.
    seed : int, Generator or None
        Seeds the relabelling null, k-means and the subsample of a window above ``max_rows``.
    n_neighbors : int
        K of the pooled K-nearest-neighbour graph.
    quantile : float in (0, 1)
        Calibrated quantile of both flags; with no drift about ``2 (1 − quantile)`` of the
        rows of each side are flagged (two flags), almost all isolated.
    min_cluster_size : int
        Smallest flagged connected group reported as a region (smaller ones are noise).
    n_attach : int
        Neighbours consulted when attaching unflagged rows to a region (majority vote).
    n_null : int
        Random relabellings behind the neighbour-fraction thresholds.
    n_reference_clusters : int
        k of the k-means clustering of the reference's fit rows (reduced for small samples).
    alpha : float in (0, 1)
        Family-wise level of the moved / re-weighted decisions together (Bonferroni over the
        share and shift tests of all clusters).
    n_examples : int
        Example ids per region and witness points per side.
    max_rows : int
        Most current rows examined; a larger window is subsampled without replacement (seeded)
        and ``n_current_used`` says so.

    Returns
    -------
    Explanation

    Notes
    -----
    **New regions.** Pool the n reference test rows and the m current rows and build the exact
    K-nearest-neighbour graph (each row's K nearest other rows, Euclidean). A current row x is
    flagged when either

    1. *over-represented*: the fraction f(x) of its K neighbours that are current rows exceeds
       the ``quantile`` of f under no drift. With no drift the side labels are exchangeable
       given the pooled rows, so that null is computed exactly by relabelling the fixed graph
       ``n_null`` times (the k-NN two-sample idea of Schilling [1]_ used per point); f is a
       monotone function of the k-NN density ratio p_cur(x) / p_ref(x); or
    2. *far*: its distance to the nearest reference row exceeds the ``quantile`` of the
       reference's own nearest-neighbour distances, each reference row against the other
       reference rows (leave-one-out: the same index, one row fewer).

    Flag 2 alone misses new topics in real text embeddings: a new section of the Debian data
    (``rust``, ``gnu-r``) sits at ordinary distances from the reference but is far denser
    than the reference there (measured: nearest-reference distance separates ``rust`` rows
    from the rest with AUC 0.3-0.8, the neighbour fraction with AUC ≥ 0.99; see
    docs/explain.md). Flagged rows are grouped by the connected components of the graph
    restricted to them; components of at least ``min_cluster_size`` rows are the region
    cores. Unflagged current rows whose ``n_attach`` nearest rows among the reference rows and
    the cores are mostly core rows join that core's region. Vanished regions are the same with
    the sides swapped.

    **Moved / re-weighted.** k-means on the reference's fit rows (``reference.anchors``, held
    out from the tested rows, so the cells do not chase the test rows' chance clumps); the
    reference test rows and the current rows (outside new regions) go to the nearest centre.
    Shares are compared by a two-proportion z-test with Cohen's h as effect size [2]_; centres
    by Hotelling's two-sample T² on the standardized frozen PCA scores,
    p = P(F_{k, n1+n2−k−1} ≥ (n1+n2−k−1) T² / (k (n1+n2−2))).

    **Directions.** With Δ = mean_cur − mean_ref in full dimension and v_j the frozen PCs,
    ‖Δ‖² = Σ_j (v_j·Δ)² + ‖Δ_⊥‖², so (v_j·Δ)² / ‖Δ‖² is PC j's share of the mean shift and
    ‖Δ_⊥‖² / ‖Δ‖² the share outside the top-k. Likewise the change of total variance splits
    into per-PC variance changes and the rest.

    **Witness.** The empirical MMD witness function with the frozen RBF kernel [3]_,
    f(x) = (1/m) Σ_j k(x, y_j) − (1/n) Σ_i k(x, x_i); its mean over current rows minus its
    mean over reference rows is the biased (V-statistic) MMD².

    References
    ----------
    .. [1] M. F. Schilling, "Multivariate two-sample tests based on nearest neighbors",
       Journal of the American Statistical Association 81(395), 799-806, 1986.
    .. [2] J. Cohen, "Statistical Power Analysis for the Behavioral Sciences", 2nd ed.,
       Lawrence Erlbaum, 1988, ch. 6 (the effect size h for proportions).
    .. [3] A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf and A. Smola, "A kernel
       two-sample test", Journal of Machine Learning Research 13, 723-773, 2012, Sec. 2.3.

    Examples
    --------
    >>> from embdrift.synthetic import make_scenario
    >>> week0, week4 = make_scenario("new_cluster", n_reference=1000, n_current=600,
    ...                              new_share=0.08, seed=1)
    >>> ref = Reference.fit(week0, seed=0)
    >>> ex = explain(ref, week4)
    >>> len(ex.new_clusters), ex.n_current
    (1, 600)
    >>> abs(ex.new_clusters[0].share - 0.08) < 0.02
    True
    """
    if not isinstance(reference, Reference):
        raise InvalidParameterError(
            f"The 'reference' parameter of explain must be an embdrift Reference (from"
            f" Reference.fit or Reference.load). Got {type(reference).__name__}."
        )
    check_int(n_neighbors, name="n_neighbors", low=2)
    quantile = check_probability(quantile, name="quantile")
    check_int(min_cluster_size, name="min_cluster_size", low=2)
    check_int(n_attach, name="n_attach", low=1)
    check_int(n_null, name="n_null", low=1)
    check_int(n_reference_clusters, name="n_reference_clusters", low=1)
    alpha = check_probability(alpha, name="alpha")
    check_int(n_examples, name="n_examples", low=1)
    check_int(max_rows, name="max_rows", low=2 * n_neighbors)
    rng = check_rng(seed)
    cur_all = as_embeddings(current, name="current", min_rows=2 * n_neighbors, dim=reference.dim)
    m_all = cur_all.shape[0]
    id_strings = _check_ids(ids, m_all)

    rows = np.arange(m_all)
    if m_all > max_rows:
        rows = np.sort(rng.choice(m_all, max_rows, replace=False))
    cur = cur_all[rows]
    cur_ids = [id_strings[i] for i in rows]
    ref = reference.sample
    n, m = ref.shape[0], cur.shape[0]
    if n < 2 * n_neighbors:
        raise InvalidParameterError(
            f"The reference has {n} test rows; 'n_neighbors'={n_neighbors} needs at least"
            f" {2 * n_neighbors}. Pass a smaller n_neighbors or fit a larger reference."
        )
    ref_ids = [f"ref:{i}" for i in range(n)]

    pooled = np.vstack([ref, cur])  # float32: distances for ranking neighbours need no more
    is_cur = np.r_[np.zeros(n, dtype=bool), np.ones(m, dtype=bool)]
    nn = NearestNeighbors(n_neighbors=n_neighbors, algorithm="brute").fit(pooled)
    _, graph = nn.kneighbors()  # each row's K nearest *other* rows
    frac_cur = is_cur[graph].mean(axis=1)

    null_cur, null_ref = _relabel_null(graph, is_cur, n_null, rng)
    t_over_new = float(np.quantile(null_cur, quantile))
    t_over_vanished = float(np.quantile(null_ref, quantile))

    far_new, t_far_new = _far(ref, cur, quantile)
    far_vanished, t_far_vanished = _far(cur, ref, quantile)
    over_new = np.r_[np.zeros(n, dtype=bool), frac_cur[n:] > t_over_new]
    over_vanished = np.r_[(1.0 - frac_cur[:n]) > t_over_vanished, np.zeros(m, dtype=bool)]
    far_new_pooled = np.r_[np.zeros(n, dtype=bool), far_new]
    far_vanished_pooled = np.r_[far_vanished, np.zeros(m, dtype=bool)]

    scores = reference.projection.standardize(pooled)
    new_groups = _regions(
        pooled, graph, (over_new, far_new_pooled), is_cur, min_cluster_size, n_attach
    )
    vanished_groups = _regions(
        pooled, graph, (over_vanished, far_vanished_pooled), ~is_cur, min_cluster_size, n_attach
    )
    pooled_ids = ref_ids + cur_ids
    new_regions = tuple(
        _region(
            f"new-{i + 1}", g, core, pooled, scores, pooled_ids, n_examples, m, offset=n, rows=rows
        )
        for i, (g, core) in enumerate(new_groups)
    )
    vanished_regions = tuple(
        _region(
            f"vanished-{i + 1}",
            g,
            core,
            pooled,
            scores,
            pooled_ids,
            n_examples,
            n,
            offset=0,
            rows=None,
        )
        for i, (g, core) in enumerate(vanished_groups)
    )

    in_new = np.zeros(m, dtype=bool)
    for g, _ in new_groups:
        in_new[g - n] = True
    in_vanished = np.zeros(n, dtype=bool)
    for g, _ in vanished_groups:
        in_vanished[g] = True
    changes = _cluster_changes(
        ref[~in_vanished],
        cur[~in_new],
        reference,
        np.asarray(cur_ids, dtype=object)[~in_new],
        k=n_reference_clusters,
        alpha=alpha,
        n_examples=n_examples,
        rng=rng,
    )
    directions, mean_out, spread_out = _directions(ref, cur, reference)
    over, under = _witness(ref, cur, reference.bandwidth, cur_ids, ref_ids, n_examples)

    return Explanation(
        reference_id=reference.reference_id,
        n_reference=n,
        n_current=m_all,
        n_current_used=m,
        new_clusters=new_regions,
        vanished_clusters=vanished_regions,
        reference_clusters=changes,
        directions=directions,
        mean_shift_outside_share=mean_out,
        spread_outside_share=spread_out,
        witness_over=over,
        witness_under=under,
        thresholds={
            "over_represented_new": t_over_new,
            "over_represented_vanished": t_over_vanished,
            "far_new": t_far_new,
            "far_vanished": t_far_vanished,
            "flagged_new": int((over_new | far_new_pooled).sum()),
            "flagged_vanished": int((over_vanished | far_vanished_pooled).sum()),
        },
        params={
            "n_neighbors": n_neighbors,
            "quantile": quantile,
            "min_cluster_size": min_cluster_size,
            "n_attach": n_attach,
            "n_null": n_null,
            "n_reference_clusters": n_reference_clusters,
            "alpha": alpha,
            "max_rows": max_rows,
        },
    )


# ---------------------------------------------------------------------- helpers
def _check_ids(ids: Sequence[Any] | np.ndarray | None, m: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(m)]
    if isinstance(ids, str | bytes):
        raise InvalidParameterError(
            "The 'ids' parameter of explain must be a sequence with one id per current row."
            f" Got a single {type(ids).__name__}."
        )
    values = [str(v) for v in (ids.tolist() if isinstance(ids, np.ndarray) else list(ids))]
    if len(values) != m:
        raise InvalidParameterError(
            f"The 'ids' parameter of explain must have one id per current row ({m});"
            f" got {len(values)} ids. Pass the ids of the same window."
        )
    if len(set(values)) != m:
        seen: set[str] = set()
        dup = ""
        for v in values:
            if v in seen:
                dup = v
                break
            seen.add(v)
        raise InvalidParameterError(
            f"The 'ids' parameter of explain must be unique; {dup!r} appears more than once."
            " De-duplicate the ids of the window."
        )
    return values


def _relabel_null(
    graph: np.ndarray, is_cur: np.ndarray, n_null: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour fractions under random relabelling of the fixed K-NN graph.

    Returns the current-label fractions of rows relabelled *current* and the reference-label
    fractions of rows relabelled *reference*, pooled over ``n_null`` relabellings.
    """
    over_cur: list[np.ndarray] = []
    over_ref: list[np.ndarray] = []
    for _ in range(n_null):
        labels = rng.permutation(is_cur)
        frac = labels[graph].mean(axis=1)
        over_cur.append(frac[labels])
        over_ref.append(1.0 - frac[~labels])
    return np.concatenate(over_cur), np.concatenate(over_ref)


def _far(index: np.ndarray, query: np.ndarray, quantile: float) -> tuple[np.ndarray, float]:
    """Rows of ``query`` whose nearest ``index`` row is farther than the ``quantile`` of the
    leave-one-out nearest-neighbour distances within ``index``."""
    nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(index)
    own, _ = nn.kneighbors()
    threshold = float(np.quantile(own[:, 0], quantile))
    dist, _ = nn.kneighbors(query)
    return dist[:, 0] > threshold, threshold


def _components(graph: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Connected-component label of every pooled row in the *mutual* K-NN graph (i and j
    joined when each is among the other's K nearest) restricted to ``mask``; rows outside the
    mask get singleton labels. Mutual edges keep a dense cluster from chaining, through one
    shared neighbour, to an unrelated chance clump."""
    n_rows, k = graph.shape
    src = np.repeat(np.arange(n_rows), k)
    dst = graph.ravel()
    keep = mask[src] & mask[dst]
    directed = coo_matrix(
        (np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n_rows, n_rows)
    ).tocsr()
    mutual = directed.multiply(directed.T)
    return connected_components(mutual, directed=False)[1]


def _regions(
    pooled: np.ndarray,
    graph: np.ndarray,
    flags: tuple[np.ndarray, np.ndarray],
    side: np.ndarray,
    min_size: int,
    n_attach: int,
) -> list[tuple[np.ndarray, int]]:
    """Groups of pooled rows (all on ``side``).

    Cores: the connected components of at least ``min_size`` rows of the K-NN graph
    restricted to the over-represented rows (``flags[0]``), then those restricted to the far
    rows not already in a core (``flags[1]``). Components are taken per flag so that a few
    chance outliers next to a dense new cluster do not join it. Each core grows by the rows of
    ``side`` that ``n_attach``-NN majority vote to it among the other side's rows and the
    cores. Largest first; (members, core size).
    """
    core_label = np.full(pooled.shape[0], -1)
    n_cores = 0
    for flagged in flags:
        mask = flagged & (core_label < 0)
        comp = _components(graph, mask)
        labels, counts = np.unique(comp[mask], return_counts=True)
        for lab in labels[counts >= min_size]:
            core_label[mask & (comp == lab)] = n_cores
            n_cores += 1
    if n_cores == 0:
        return []
    is_core = core_label >= 0
    candidates = np.flatnonzero(side & ~is_core)
    index_rows = np.flatnonzero(~side | is_core)
    members = core_label.copy()
    if candidates.size:
        k = min(n_attach, index_rows.size)
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(pooled[index_rows])
        _, nb = nn.kneighbors(pooled[candidates])
        votes = core_label[index_rows[nb]]  # (c, k), -1 for the other side
        for j, row in enumerate(candidates):
            v = votes[j][votes[j] >= 0]
            if 2 * v.size > k:
                members[row] = int(np.bincount(v).argmax())
    groups = [(np.flatnonzero(members == i), int((core_label == i).sum())) for i in range(n_cores)]
    groups.sort(key=lambda g: (-g[0].size, int(g[0][0])))
    return groups


def _region(
    label: str,
    group: np.ndarray,
    core_size: int,
    pooled: np.ndarray,
    scores: np.ndarray,
    pooled_ids: list[str],
    n_examples: int,
    window: int,
    *,
    offset: int,
    rows: np.ndarray | None,
) -> Region:
    centre = pooled[group].mean(axis=0, dtype=np.float64)
    dist = np.linalg.norm(pooled[group] - centre, axis=1)
    closest = group[np.argsort(dist, kind="stable")[:n_examples]]
    local = group - offset
    members = rows[local] if rows is not None else local
    return Region(
        label=label,
        size=int(group.size),
        share=float(group.size / window),
        core_size=core_size,
        centroid=tuple(float(v) for v in scores[group].mean(axis=0)),
        members=tuple(int(v) for v in members),
        examples=tuple(pooled_ids[i] for i in closest),
    )


def _cluster_changes(
    ref: np.ndarray,
    cur: np.ndarray,
    reference: Reference,
    cur_ids: np.ndarray,
    *,
    k: int,
    alpha: float,
    n_examples: int,
    rng: np.random.Generator,
) -> tuple[ClusterChange, ...]:
    n, m = ref.shape[0], cur.shape[0]
    fit_rows = reference.anchors
    k = max(1, min(k, n // 20, fit_rows.shape[0] // 20))
    if n < 2 or m < 2:
        return ()
    seed = int(rng.integers(2**31 - 1))
    # The centres are learned on the reference's fit rows, never on the tested rows: cells fitted
    # to the test rows hold their own rows' chance clumps, and the share test then raises false
    # alarms with no drift (docs/explain.md). Conditional on the centres, both tested sides are
    # assigned alike.
    km = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(fit_rows)
    ref_lab = km.predict(ref)
    cur_lab = km.predict(cur)
    fit_lab = km.labels_
    ref_scores = reference.projection.standardize(ref)
    cur_scores = reference.projection.standardize(cur)
    order = np.argsort(-np.bincount(ref_lab, minlength=k), kind="stable")
    out = []
    for rank, c in enumerate(order):
        r_in, c_in = ref_lab == c, cur_lab == c
        n1, n2 = int(r_in.sum()), int(c_in.sum())
        p1, p2 = n1 / n, n2 / m
        h = 2.0 * math.asin(math.sqrt(p2)) - 2.0 * math.asin(math.sqrt(p1))
        # A cell may hold no tested reference row; its fit rows then describe it. A cell with
        # neither (k-means on fewer distinct fit rows than k) describes nothing: left out.
        members = ref[r_in] if n1 > 0 else fit_rows[fit_lab == c]
        if members.shape[0] == 0:
            continue
        share_p = _two_proportion_p(n1, n, n2, m)
        r_centroid = reference.projection.standardize(members).mean(axis=0)
        r_mean = members.mean(axis=0, dtype=np.float64)
        radius = math.sqrt(max(float(np.mean(np.sum((members - r_mean) ** 2, axis=1))), _TINY))
        if n2 > 0:
            c_mean = cur[c_in].mean(axis=0, dtype=np.float64)
            shift = float(np.linalg.norm(c_mean - r_mean)) / radius
            cur_centroid = cur_scores[c_in].mean(axis=0)
            dist = np.linalg.norm(cur[c_in] - r_mean, axis=1)
            examples = tuple(str(v) for v in cur_ids[c_in][np.argsort(dist)[:n_examples]])
        else:
            shift, cur_centroid, examples = 0.0, r_centroid, ()
        shift_p = _hotelling_p(ref_scores[r_in], cur_scores[c_in])
        out.append(
            ClusterChange(
                label=f"ref-{rank + 1}",
                reference_share=p1,
                current_share=p2,
                share_effect=h,
                share_p_value=share_p,
                shift=shift,
                shift_p_value=shift_p,
                reference_centroid=tuple(float(v) for v in r_centroid),
                current_centroid=tuple(float(v) for v in cur_centroid),
                n_reference=n1,
                n_current=n2,
                moved=False,
                reweighted=False,
                examples=examples,
            )
        )
    # One family: a cluster is reported (moved_clusters) when either of its tests rejects, so
    # Bonferroni divides alpha by all the tests, shares and shifts, not by the clusters alone.
    n_tests = len(out) + sum(c.shift_p_value is not None for c in out)
    level = alpha / n_tests
    return tuple(
        replace(
            c,
            moved=c.shift_p_value is not None and c.shift_p_value <= level,
            reweighted=c.share_p_value <= level,
        )
        for c in out
    )


def _two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    pooled = (x1 + x2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / math.sqrt(var)
    return float(2.0 * sps.norm.sf(abs(z)))


def _hotelling_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Hotelling's two-sample T² test of equal means (pooled covariance, F reference
    distribution); None when n1 + n2 − 2 < p + 1."""
    n1, n2, p = a.shape[0], b.shape[0], a.shape[1]
    if n1 < 2 or n2 < 2 or n1 + n2 - p - 1 < 1:
        return None
    diff = b.mean(axis=0) - a.mean(axis=0)
    pooled = ((n1 - 1) * np.cov(a, rowvar=False) + (n2 - 1) * np.cov(b, rowvar=False)) / (
        n1 + n2 - 2
    )
    pooled = np.atleast_2d(pooled)
    try:
        sol = np.linalg.solve(pooled, diff)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(pooled, diff, rcond=None)[0]
    t2 = float(n1 * n2 / (n1 + n2) * diff @ sol)
    f = (n1 + n2 - p - 1) * t2 / (p * (n1 + n2 - 2))
    return float(sps.f.sf(f, p, n1 + n2 - p - 1))


def _directions(
    ref: np.ndarray, cur: np.ndarray, reference: Reference
) -> tuple[tuple[Direction, ...], float, float]:
    """Per-PC parts of the mean shift and of the change of total variance (Notes of explain)."""
    pca = reference.projection
    r64, c64 = ref.astype(np.float64), cur.astype(np.float64)
    delta = c64.mean(axis=0) - r64.mean(axis=0)
    along = pca.components_ @ delta
    total_sq = float(delta @ delta)
    mean_share = along**2 / max(total_sq, _TINY)
    mean_out = max(0.0, 1.0 - float(mean_share.sum())) if total_sq > 0 else 0.0
    var_r = np.var(pca.transform(ref), axis=0, ddof=1)
    var_c = np.var(pca.transform(cur), axis=0, ddof=1)
    change = var_c - var_r
    total_change = float(np.var(c64, axis=0, ddof=1).sum() - np.var(r64, axis=0, ddof=1).sum())
    outside = total_change - float(change.sum())
    denom = float(np.abs(change).sum()) + abs(outside)
    spread_share = np.abs(change) / max(denom, _TINY)
    directions = tuple(
        Direction(
            component=j + 1,
            mean_shift=float(along[j] / pca.scale_[j]),
            mean_shift_share=float(mean_share[j]),
            spread_ratio=float(var_c[j] / max(var_r[j], _TINY)),
            spread_share=float(spread_share[j]),
        )
        for j in range(along.size)
    )
    return directions, mean_out, abs(outside) / max(denom, _TINY) if denom > 0 else 0.0


def witness_values(
    points: np.ndarray, reference_rows: np.ndarray, current_rows: np.ndarray, bandwidth: float
) -> np.ndarray:
    """The empirical MMD witness f(x) = mean_j k(x, y_j) − mean_i k(x, x_i) at ``points``,
    with k(x, y) = exp(−‖x − y‖² / (2 h²)) (Gretton et al. 2012, Sec. 2.3); computed in
    row blocks so memory stays O(block · (n + m))."""
    out = np.empty(points.shape[0])
    gamma = 1.0 / (2.0 * bandwidth**2)
    r64, c64 = reference_rows.astype(np.float64), current_rows.astype(np.float64)
    r_sq, c_sq = np.einsum("ij,ij->i", r64, r64), np.einsum("ij,ij->i", c64, c64)
    for start in range(0, points.shape[0], 1024):
        block = points[start : start + 1024].astype(np.float64)
        b_sq = np.einsum("ij,ij->i", block, block)[:, None]
        d_c = np.maximum(b_sq + c_sq[None, :] - 2.0 * block @ c64.T, 0.0)
        d_r = np.maximum(b_sq + r_sq[None, :] - 2.0 * block @ r64.T, 0.0)
        out[start : start + 1024] = np.exp(-gamma * d_c).mean(axis=1) - np.exp(-gamma * d_r).mean(
            axis=1
        )
    return out


def _witness(
    ref: np.ndarray,
    cur: np.ndarray,
    bandwidth: float,
    cur_ids: list[str],
    ref_ids: list[str],
    n_examples: int,
) -> tuple[tuple[WitnessPoint, ...], tuple[WitnessPoint, ...]]:
    w_cur = witness_values(cur, ref, cur, bandwidth)
    w_ref = witness_values(ref, ref, cur, bandwidth)
    top = np.argsort(-w_cur, kind="stable")[:n_examples]
    bottom = np.argsort(w_ref, kind="stable")[:n_examples]
    return (
        tuple(WitnessPoint(id=cur_ids[i], value=float(w_cur[i])) for i in top),
        tuple(WitnessPoint(id=ref_ids[i], value=float(w_ref[i])) for i in bottom),
    )
