"""The fast kernels behind the permutation tests, each against an independent reference: the
blocked 1-D Wasserstein kernel (float64 and float32 paths) against scipy, chunked column sums
against one float64 product, the subset-drawn permutation masks against uniformity, and the
large-n path's statistics against the exact path's on the same rows and assignments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
from sklearn.neighbors import NearestNeighbors

from embdrift import Reference
from embdrift.errors import InvalidParameterError
from embdrift.projection import FrozenPCA
from embdrift.stats.permutation import permutation_masks
from embdrift.stats.twosample import (
    EnergyStatistic,
    FeatureMMD,
    Wasserstein1D,
    column_sums,
    nearest_anchors,
    random_fourier_features,
)
from embdrift.synthetic import make_scenario


def _scipy_w1(cols: np.ndarray, mask: np.ndarray) -> np.ndarray:
    on = mask == 1
    return np.array(
        [scipy.stats.wasserstein_distance(cols[on, j], cols[~on, j]) for j in range(cols.shape[1])]
    )


@pytest.mark.parametrize(("n", "m", "perms"), [(3, 4, 5), (40, 70, 30), (9000, 16000, 199)])
def test_wasserstein_kernel_matches_scipy_on_every_path(n: int, m: int, perms: int) -> None:
    rng = np.random.default_rng(n)
    cols = rng.normal(size=(n + m, 3))
    cols[1::5] = cols[0]  # ties
    masks = permutation_masks(n, m, perms, rng)
    got = Wasserstein1D(cols).per_column(masks)
    # 9000 + 16000 rows x 200 assignments is above the float32 threshold: relative ~1e-7.
    rel = 1e-6 if masks.size > 4_000_000 else 1e-12
    for b in (0, 1, perms):
        np.testing.assert_allclose(got[b], _scipy_w1(cols, masks[b]), rtol=rel)


def test_wasserstein_kernel_with_unequal_group_sizes_matches_scipy() -> None:
    # Assignments with different group sizes per row (as on a label-independent subsample).
    rng = np.random.default_rng(5)
    cols = rng.exponential(size=(300, 2))
    masks = (rng.random((6, 300)) < rng.uniform(0.2, 0.8, size=(6, 1))).astype(np.float32)
    got = Wasserstein1D(cols).per_column(masks)
    for b in range(6):
        np.testing.assert_allclose(got[b], _scipy_w1(cols, masks[b]), rtol=1e-12)


def test_column_sums_in_chunks_equal_one_product() -> None:
    rng = np.random.default_rng(1)
    masks = permutation_masks(70, 130, 40, rng)
    z = rng.normal(size=(200, 7))
    chunks = ((i, z[i : i + 33]) for i in range(0, 200, 33))
    sums, totals = column_sums(masks, chunks)
    np.testing.assert_allclose(sums, masks.astype(np.float64) @ z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(totals, z.sum(axis=0), rtol=1e-12)
    z32 = z.astype(np.float32)
    sums32, _ = column_sums(masks, ((i, z32[i : i + 64]) for i in range(0, 200, 64)))
    np.testing.assert_allclose(sums32, masks.astype(np.float64) @ z32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 8, 9, 20])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_nearest_anchors_match_scikit_learn(k: int, exclude_self: bool) -> None:
    # k <= 8 takes k passes of row minima, k > 8 one partition; chunks of 64 rows cross the
    # leave-one-out diagonal at an offset; duplicated anchors make ties.
    rng = np.random.default_rng(k)
    anchors = rng.normal(size=(150, 12)).astype(np.float32)
    anchors[1::7] = anchors[0]
    rows = anchors if exclude_self else rng.normal(size=(300, 12)).astype(np.float32)
    got, chosen = nearest_anchors(rows, anchors, k=k, exclude_self=exclude_self, chunk=64)
    assert got.shape == chosen.shape == (len(rows), k)
    tree = NearestNeighbors(n_neighbors=k + exclude_self).fit(anchors.astype(np.float64))
    dist, index = tree.kneighbors(rows.astype(np.float64))
    if exclude_self:
        # Drop each row's own anchor (not merely the first zero: a duplicate is a neighbour).
        own = index == np.arange(len(rows))[:, None]
        own[own.sum(axis=1) == 0, -1] = True
        dist = dist[~own].reshape(len(rows), k)
        assert not (chosen == np.arange(len(rows))[:, None]).any()
    # float32 BLAS distances: a duplicate's 0 comes out near sqrt(eps32) * |r| (~1e-3 here).
    np.testing.assert_allclose(np.sort(got, axis=1), dist, rtol=2e-4, atol=3e-3)
    # The indices name anchors at those distances (any of tied duplicates will do).
    exact = np.linalg.norm(rows[:, None, :] - anchors[chosen], axis=2)
    np.testing.assert_allclose(exact, got, rtol=2e-4, atol=3e-3)
    assert all(len(set(row)) == k for row in chosen.tolist())


def test_nearest_anchors_refuse_a_k_the_anchors_cannot_give() -> None:
    anchors = np.eye(6, dtype=np.float32)
    for k, exclude_self in ((0, False), (7, False), (6, True), (9, False)):
        with pytest.raises(InvalidParameterError, match=f"k={k} nearest anchors"):
            nearest_anchors(anchors, anchors, k=k, exclude_self=exclude_self)
    distances, chosen = nearest_anchors(anchors, anchors, k=5, exclude_self=True)
    assert distances.shape == chosen.shape == (6, 5)


def test_permutation_masks_draw_every_split_uniformly() -> None:
    # 2 of 6 rows on the reference side: 15 possible splits, 30,000 draws; and the smaller
    # side may be either group.
    for n, m in ((2, 4), (4, 2)):
        masks = permutation_masks(n, m, 30_000, np.random.default_rng(7))[1:]
        assert (masks.sum(axis=1) == n).all()
        splits = {s: i for i, s in enumerate(itertools.combinations(range(6), n))}
        counts = np.bincount(
            [splits[tuple(np.flatnonzero(row))] for row in masks], minlength=len(splits)
        )
        assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_truncated_projection_equals_a_direct_fit() -> None:
    x, _ = make_scenario("none", n_reference=300, dim=24, seed=2)
    previous = FrozenPCA(n_components=5).fit(-x[::-1] + 0.01)
    base = FrozenPCA(n_components=12).fit(x)
    for k, align in ((5, None), (5, previous), (12, None)):
        direct = FrozenPCA(n_components=k).fit(x, align_to=align)
        cut = base.truncated(k, align_to=align)
        np.testing.assert_allclose(cut.components_, direct.components_, atol=1e-10)
        np.testing.assert_allclose(cut.scale_, direct.scale_, rtol=1e-10)
        np.testing.assert_allclose(cut.explained_variance_, direct.explained_variance_)
        assert cut.total_variance_ == pytest.approx(direct.total_variance_)
    with pytest.raises(ValueError, match="truncate"):
        base.truncated(13)


def test_large_n_statistics_equal_the_exact_path_on_the_same_assignments() -> None:
    """The large-n path (chunked float32 sums, cached reference rows) computes the same
    moment, histogram, novelty and 1-D statistics as the exact path (float64, all rows at once);
    its random-feature MMD equals FeatureMMD on the whole feature matrix of anchors, held-out
    and current rows at the check's bandwidth (frequencies rescaled from the fitted one)."""
    ref_rows, cur = make_scenario("mix_shift", n_reference=900, n_current=500, seed=3)
    ref = Reference.fit(ref_rows, seed=0)
    rng = np.random.default_rng(0)
    cur32 = cur.astype(np.float32)
    masks = permutation_masks(ref.sample.shape[0], cur.shape[0], 30, rng)
    kernel = ref._permuted_sides(cur32, 30, exact=False, rng=rng)
    assert kernel.n_anchors == ref.anchors.shape[0] and kernel.bandwidth != ref.bandwidth
    rows = type(ref._test_rows).join(ref._test_rows, ref._rows(cur32))
    names = [n for n in ref._metric_names(None) if n != "energy"]
    large, _ = ref._evaluate(names, cur32, rows, masks, kernel, exact=False, rng=rng)
    exact, _ = ref._evaluate(names, cur32, rows, masks, kernel, exact=True, rng=rng)
    for name in names:
        if name == "mmd":
            continue
        np.testing.assert_allclose(large[name], exact[name], rtol=2e-5, err_msg=name)
    pooled = np.vstack([ref.anchors, ref.sample, cur32])
    frequencies = ref.rff_frequencies.astype(np.float64) * (ref.bandwidth / kernel.bandwidth)
    features = random_fourier_features(pooled, frequencies, center=ref.projection.mean_)
    np.testing.assert_allclose(
        large["mmd"], FeatureMMD(features).values(kernel.masks), rtol=1e-4, atol=1e-7
    )


def test_energy_of_an_assignment_with_an_empty_side_is_undefined() -> None:
    """An assignment with every row on one side has no energy distance: NaN (no warning), and
    the other assignments' values equal scipy's 1-D energy distance squared."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 1))
    masks = np.zeros((3, 12), dtype=np.float32)
    masks[0, :5] = 1.0
    masks[1, :] = 1.0  # no current row
    masks[2, 7:] = 1.0
    with np.errstate(all="raise"):
        values, between = EnergyStatistic(x).parts(masks)
    assert np.isnan(values[1]) and np.isnan(between[1])
    for row in (0, 2):
        on = masks[row] == 1
        expected = scipy.stats.energy_distance(x[on, 0], x[~on, 0]) ** 2
        assert values[row] == pytest.approx(expected, rel=1e-9)
