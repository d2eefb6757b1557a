"""Rows that come in groups of near-duplicates: the group-aware fit/test split and the
cluster permutation (``Reference.fit(..., groups=)``, ``compare(..., groups=)``).

The null data below are clustered on purpose: each group is a random centre plus small noise,
and the reference and the current window hold disjoint groups drawn from one distribution. The
row-level permutation treats near-duplicates as independent rows and alarms far above alpha;
the cluster permutation must stay inside the binomial interval.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats

from embdrift import Reference
from embdrift.errors import IdMismatchError, InsufficientDataError, InvalidParameterError
from embdrift.stats.permutation import group_permutation_masks, permutation_masks

ALPHA = 0.05
RUNS = 200
LOW, HIGH = 0.015, 0.095  # 99% binomial interval around 0.05 at 200 runs (exact, rounded out)
METRICS = ("mmd", "energy", "novelty", "residual_mean_shift", "mean_shift")


def _clustered(
    n_groups: int, size: int, rng: np.random.Generator, *, dim: int = 12, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(n_groups, dim))
    x = np.repeat(centres, size, axis=0) + 0.15 * rng.normal(size=(n_groups * size, dim))
    labels = np.repeat(np.arange(offset, offset + n_groups), size)
    return x, labels


def test_group_masks_move_whole_groups_and_keep_the_group_count() -> None:
    ref_groups = np.array(["a", "a", "b", "c", "c", "c"])
    cur_groups = np.array([7, 7, 8, 9, 9])
    masks = group_permutation_masks(ref_groups, cur_groups, 500, np.random.default_rng(0))
    assert masks.shape == (501, 11)
    assert (masks[0] == np.r_[np.ones(6), np.zeros(5)]).all()
    codes = np.r_[0, 0, 1, 2, 2, 2, 3, 3, 4, 5, 5]
    for row in masks:
        per_group = np.bincount(codes, weights=row)
        assert np.all((per_group == 0) | (per_group == np.bincount(codes)))
        assert int((per_group > 0).sum()) == 3  # the reference's three groups


def test_group_masks_draw_every_group_subset_uniformly() -> None:
    # 2 of 5 groups on the reference side: 10 subsets, 20,000 draws.
    ref_groups, cur_groups = np.array([0, 0, 1]), np.array([0, 1, 1, 2, 2, 2])
    masks = group_permutation_masks(ref_groups, cur_groups, 20_000, np.random.default_rng(1))[1:]
    first_rows = np.array([0, 2, 3, 4, 6])  # one row of each of the five groups
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(5), 2))}
    counts = np.bincount(
        [subsets[tuple(np.flatnonzero(row[first_rows]))] for row in masks], minlength=10
    )
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_one_row_per_group_draws_like_the_row_permutation() -> None:
    rng = np.random.default_rng(2)
    grouped = group_permutation_masks(np.arange(4), np.arange(10, 16), 20_000, rng)[1:]
    plain = permutation_masks(4, 6, 20_000, rng)[1:]
    assert (grouped.sum(axis=1) == 4).all()
    # Each row is on the reference side with probability 4/10 under both.
    for masks in (grouped, plain):
        np.testing.assert_allclose(masks.mean(axis=0), 0.4, atol=0.02)


def test_fit_keeps_every_group_on_one_side_and_stores_the_test_labels(tmp_path) -> None:
    rng = np.random.default_rng(3)
    x, labels = _clustered(60, 4, rng)
    x[:, 0] = labels  # each row carries its own group in column 0
    ref = Reference.fit(x, seed=0, groups=labels.astype(str))
    held_out = ref.sample[:, 0].astype(int)
    counts = np.bincount(held_out, minlength=60)
    assert set(np.unique(counts)) <= {0, 4}
    assert ref.sample_groups is not None
    np.testing.assert_array_equal(ref.sample_groups, held_out.astype(str))
    loaded = Reference.load(ref.save(tmp_path / "ref.npz"))
    np.testing.assert_array_equal(loaded.sample_groups, ref.sample_groups)
    assert loaded.reference_id == ref.reference_id


def test_group_inputs_are_checked() -> None:
    rng = np.random.default_rng(4)
    x, labels = _clustered(30, 3, rng)
    plain = Reference.fit(x, seed=0)
    with pytest.raises(InvalidParameterError, match="fit the reference"):
        plain.compare(x[:20], groups=labels[:20])
    grouped = Reference.fit(x, seed=0, groups=labels)
    with pytest.raises(IdMismatchError, match="one label per row"):
        grouped.compare(x[:20], groups=labels[:19])
    with pytest.raises(InvalidParameterError, match="integer or string"):
        grouped.compare(x[:20], groups=np.array([object()] * 20))
    result = grouped.compare(x[:20], groups=labels[:20], n_permutations=49)
    assert result.method == "group_permutation"
    with pytest.raises(InvalidParameterError, match="fitted with groups"):
        grouped.compare(x[:20], n_permutations=49)  # row by row would alarm far above alpha
    # Thousands of groups: C(G, G_ref) is far beyond any float, and still just a count.
    many, many_labels = _clustered(1500, 1, rng)
    big = Reference.fit(many, seed=0, groups=many_labels)
    assert big.compare(many[:700], groups=many_labels[:700], n_permutations=19).p_value <= 1
    with pytest.raises(InsufficientDataError, match="too few for a p-value"):
        grouped.compare(x[:20], groups=np.zeros(20, dtype=int), n_permutations=49, alpha=0.01)


def test_singleton_groups_never_leave_a_side_with_one_row() -> None:
    # A current window that is one group, against singletons: a draw that moves the big group
    # to the reference side would leave one row on the current side; such draws are redrawn.
    masks = group_permutation_masks(
        np.arange(30), np.zeros(40, dtype=int), 2000, np.random.default_rng(5)
    )
    sides = masks.sum(axis=1)
    assert sides.min() >= 2 and (70 - sides).min() >= 2
    with pytest.raises(InsufficientDataError, match="2 rows per side"):
        group_permutation_masks(np.arange(5), np.zeros(1, dtype=int), 10, np.random.default_rng(0))


def test_subsampling_keeps_groups_whole_on_both_sides() -> None:
    rng = np.random.default_rng(6)
    x, labels = _clustered(80, 5, rng)
    x[:, 0] = labels
    ref = Reference.fit(x, seed=0, groups=labels, max_rows=60)
    counts = np.bincount(ref.sample[:, 0].astype(int), minlength=80)
    assert set(np.unique(counts)) <= {0, 5}
    assert 60 <= ref.sample.shape[0] < 65
    y, gy = _clustered(40, 5, rng, offset=100)
    result = ref.compare(y, groups=gy, n_permutations=49, seed=1)
    assert result.n_current == 60  # 12 whole groups of 5 out of 40


def test_stored_null_with_too_few_groups_is_refused() -> None:
    rng = np.random.default_rng(7)
    x, labels = _clustered(60, 5, rng)
    with pytest.raises(InsufficientDataError, match="held-out groups"):
        Reference.fit(x, seed=0, groups=labels, window_sizes=(50,), n_calibration=49)
    x, labels = _clustered(400, 2, rng)
    ref = Reference.fit(x, seed=0, groups=labels, window_sizes=(100,), n_calibration=49)
    y, _ = _clustered(50, 2, rng, offset=1000)
    assert ref.compare(y, calibration="stored").method == "stored_null"


def _null_rate(*, grouped: bool, runs: int) -> float:
    hits = 0
    for seed in range(runs):
        rng = np.random.default_rng([seed, 99])
        x, gx = _clustered(40, 5, rng)
        y, gy = _clustered(40, 5, rng, offset=40)
        ref = Reference.fit(x, seed=seed, groups=gx if grouped else None)
        result = ref.compare(
            y,
            seed=seed,
            n_permutations=99,
            metrics=METRICS,
            groups=gy if grouped else None,
            alpha=ALPHA,
        )
        hits += result.drifted
    return hits / runs


@pytest.mark.slow
def test_cluster_permutation_is_calibrated_where_the_row_permutation_is_not() -> None:
    grouped = _null_rate(grouped=True, runs=RUNS)
    rows = _null_rate(grouped=False, runs=40)
    print(f"false alarms on clustered null data: groups {grouped:.3f}, rows {rows:.3f}")
    assert LOW <= grouped <= HIGH
    assert rows > 0.2  # the counterfactual: near-duplicates counted as independent rows
