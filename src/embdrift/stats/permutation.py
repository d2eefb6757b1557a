"""The permutation engine: one set of random splits shared by every metric, and the min-p
combination that keeps the family-wise false-alarm rate at alpha.

Under no drift the pooled rows are exchangeable (nothing tested was used to fit the frozen
projection), so every statistic's rank among its permuted values is uniform and the p-value
``(1 + #{b: T_b >= T_obs}) / (B + 1)`` is valid in finite samples (Phipson & Smyth (2010),
"Permutation P-values Should Never Be Zero", Stat. Appl. Genet. Mol. Biol. 9(1), Eq. 2).

The combined decision uses the single-step min-p procedure of Westfall & Young (1993),
*Resampling-Based Multiple Testing*, Wiley, Alg. 2.8: each permutation's smallest per-metric
p-value (computed against the same permutation distribution) forms the null of the minimum,
so correlated metrics (most of ours are) do not pay Bonferroni's factor. Per-metric p-values
take only B + 1 values, so many permutations tie at the same minimum and the plain min-p test
is conservative; ties are broken by the sum of log p-values (Fisher's combination), a
symmetric function of each row's statistics, so the rows stay exchangeable and the combined
p-value stays valid while its level comes close to alpha.

When rows come in groups of near-duplicates (one source document, one product family), rows
are not exchangeable one by one, only whole groups are: :func:`group_permutation_masks` draws
the cluster-permutation null (Good (2005), *Permutation, Parametric, and Bootstrap Tests of
Hypotheses*, Springer, Sec. 3.7.3, "matched pairs and clusters"), which moves whole groups
between the sides and keeps the number of groups on each side.

Metrics whose p-values come from different permutations (the kernel statistics permute every
reference row they see, the projection metrics only the held-out rows) form separate families:
min-p within each family, then :func:`weighted_bonferroni` across them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from embdrift.errors import InsufficientDataError

__all__ = [
    "PermutationOutcome",
    "combine_min_p",
    "group_permutation_masks",
    "permutation_masks",
    "rank_p_values",
    "weighted_bonferroni",
    "whole_groups",
]


def permutation_masks(
    n_reference: int, n_current: int, n_permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Assignments (B + 1, N) as float32 0/1: row 0 is the observed split (reference rows
    first), rows 1..B are uniform random splits with the same group sizes. (float32 holds
    counts exactly up to 2**24 rows and halves the memory of the large-n path.)

    Each random row marks a uniform random subset of the smaller group's size, drawn without
    replacement (``Generator.choice``), so only min(n, m) positions are drawn and written per
    row rather than all N of a full shuffle.
    """
    n_pooled = n_reference + n_current
    smaller_is_reference = n_reference <= n_current
    size = n_reference if smaller_is_reference else n_current
    masks = np.empty((n_permutations + 1, n_pooled), dtype=np.float32)
    masks[0, :n_reference] = 1.0
    masks[0, n_reference:] = 0.0
    masks[1:] = 0.0 if smaller_is_reference else 1.0
    mark = np.float32(1.0 if smaller_is_reference else 0.0)
    for row in masks[1:]:
        row[rng.choice(n_pooled, size, replace=False, shuffle=False)] = mark
    return masks


#: Rounds of redrawing assignments that leave a side with fewer than 2 rows.
_MAX_REDRAWS = 200


def whole_groups(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row mask (n,) of whole groups, in uniform random order, taken until at least ``size``
    rows are in (the group that crosses ``size`` is taken whole).

    The one way embdrift draws a share of grouped rows: the fit/test split of a grouped
    reference, a subsample of a grouped window, and the pseudo-windows of a stored null.
    """
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = rng.permutation(counts.size)
    ordered = counts[order]
    taken = np.zeros(counts.size, dtype=bool)
    taken[order[(np.cumsum(ordered) - ordered) < size]] = True
    return taken[codes.ravel()]


def group_permutation_masks(
    reference_groups: np.ndarray,
    current_groups: np.ndarray,
    n_permutations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Assignments (B + 1, N) as float32 0/1 that move whole groups between the sides.

    ``reference_groups`` (n,) and ``current_groups`` (m,) label the rows of each side (any
    hashable labels); a group is the rows of one side that share a label, so a label seen on
    both sides makes two groups and the observed split is always one of the assignments drawn
    (two such groups are then correlated units, and the test is approximate for them). Row 0
    is the observed split (reference rows first); rows 1..B each put a uniform random subset of
    G_ref of the G groups on the reference side, G_ref being the reference's number of groups,
    among the subsets that leave at least 2 rows on each side (every statistic needs two; the
    observed split is one of them, so the restricted draw stays exact). Under no drift whole
    groups are exchangeable, so the permutation p-values stay exact while the side sizes vary
    from row to row (every statistic reads its sizes from the mask). With one row per group
    this is :func:`permutation_masks`' distribution.

    Raises
    ------
    InsufficientDataError
        A side of the observed split has fewer than 2 rows, or almost no split leaves 2 rows
        on each side.
    """
    _, ref_codes = np.unique(np.asarray(reference_groups), return_inverse=True)
    _, cur_codes = np.unique(np.asarray(current_groups), return_inverse=True)
    ref_codes, cur_codes = ref_codes.ravel(), cur_codes.ravel()
    if ref_codes.size < 2 or cur_codes.size < 2:
        raise InsufficientDataError(
            f"A group permutation needs at least 2 rows per side; got {ref_codes.size} and"
            f" {cur_codes.size}."
        )
    g_ref = int(ref_codes.max()) + 1
    codes = np.concatenate([ref_codes, g_ref + cur_codes])
    sizes = np.bincount(codes).astype(np.int64)
    chosen = np.zeros((n_permutations + 1, sizes.size), dtype=bool)
    chosen[0, :g_ref] = True
    pending = np.arange(1, n_permutations + 1)
    for _ in range(_MAX_REDRAWS):
        if not pending.size:
            break
        ranks = np.argsort(rng.random((pending.size, sizes.size)), axis=1)
        draw = np.zeros((pending.size, sizes.size), dtype=bool)
        np.put_along_axis(draw, ranks[:, :g_ref], True, axis=1)
        chosen[pending] = draw
        n_ref = draw.astype(np.int64) @ sizes
        pending = pending[(n_ref < 2) | (codes.size - n_ref < 2)]
    else:
        raise InsufficientDataError(
            "Almost no split of these groups leaves 2 rows on each side (one group holds most"
            " rows); a group permutation cannot test them. Use more, smaller groups."
        )
    return np.ascontiguousarray(chosen[:, codes].astype(np.float32))


def rank_p_values(scores: np.ndarray) -> np.ndarray:
    """Permutation p-value of every row of ``scores`` (B + 1, J) against its own column.

    ``p[b, j] = #{b': scores[b', j] >= scores[b, j]} / (B + 1)``; row 0 is the observed
    p-value of metric j (the count includes the observed value itself).
    """
    total = scores.shape[0]
    p = np.empty_like(scores, dtype=np.float64)
    for j in range(scores.shape[1]):
        column = scores[:, j]
        ordered = np.sort(column)
        p[:, j] = (total - np.searchsorted(ordered, column, side="left")) / total
    return p


@dataclass(frozen=True, slots=True)
class PermutationOutcome:
    """Observed p-value per metric, the combined min-p p-value and the per-metric critical
    values (the (1 − alpha) upper quantile of each permuted statistic)."""

    p_values: np.ndarray
    combined_p_value: float
    critical_values: np.ndarray


def weighted_bonferroni(
    p_values: Sequence[float | Fraction], weights: Sequence[float | Fraction]
) -> float:
    """min(1, min_f p_f / w_f): one p-value from the p-values of families of tests with
    weights summing to 1.

    Valid under any dependence between the families: P(∃f: p_f ≤ w_f α) ≤ Σ_f w_f α = α
    (the weighted Bonferroni inequality; Rosenthal & Rubin (1983), Psychological Bulletin
    94(3); Genovese, Roeder & Wasserman (2006), Biometrika 93(3)). It combines families
    whose p-values come from different permutations, where a joint min-p cannot.

    The quotients are taken in exact rational arithmetic and rounded once, so permutation
    p-values and weights given as ``fractions.Fraction`` (count / (B + 1), k / J) give a
    result equal to alpha when it is alpha (two float roundings can land one ulp above it).

    Examples
    --------
    >>> weighted_bonferroni([0.01, 0.5], [0.5, 0.5])
    0.02
    >>> weighted_bonferroni([Fraction(1, 300), Fraction(1, 2)], [Fraction(1, 3), Fraction(2, 3)])
    0.01
    """
    p = [_exact(v) for v in p_values]
    w = [_exact(v) for v in weights]
    if not p or len(p) != len(w) or min(w) <= 0 or not math.isclose(sum(w), 1.0, rel_tol=1e-6):
        raise ValueError(f"need one positive weight per p-value, summing to 1; got {weights}")
    quotients = [pf / wf for pf, wf in zip(p, w, strict=True)]
    return float(min([Fraction(1), *quotients]))


def _exact(value: float | Fraction) -> Fraction:
    """A finite number as an exact fraction (any float type, or a rational as it is)."""
    if isinstance(value, numbers.Rational):
        return Fraction(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"p-values and weights must be finite; got {value!r}")
    return Fraction(number)


def combine_min_p(scores: np.ndarray, *, alpha: float) -> PermutationOutcome:
    """Per-metric and min-p combined permutation p-values from ``scores`` (B + 1, J).

    Row 0 holds the observed test statistics, larger meaning more drift.
    """
    p = rank_p_values(scores)
    min_p = p.min(axis=1)
    fisher = np.log(p).sum(axis=1)
    as_extreme = (min_p < min_p[0]) | ((min_p == min_p[0]) & (fisher <= fisher[0]))
    combined = float(np.mean(as_extreme))
    # Critical value: the smallest statistic whose permutation p-value is <= alpha.
    critical = np.empty(scores.shape[1])
    for j in range(scores.shape[1]):
        rejecting = scores[p[:, j] <= alpha, j]
        critical[j] = rejecting.min() if rejecting.size else np.inf
    return PermutationOutcome(p_values=p[0], combined_p_value=combined, critical_values=critical)
