"""explain(): planted truth on synthetic and real-text data, false alarms with no drift,
closed-form checks of the directions and the witness, independent references for the tests
inside, and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import cdist

from embdrift.errors import DimensionMismatchError, InvalidParameterError
from embdrift.explain import (
    Explanation,
    _cluster_changes,
    _hotelling_p,
    _two_proportion_p,
    explain,
    witness_values,
)
from embdrift.reference import Reference
from embdrift.results import DriftResult
from embdrift.synthetic import World

NEW_SHARE = 0.05


def synthetic_windows(
    seed: int, *, n_reference: int = 1200, n_current: int = 600, share: float = NEW_SHARE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference without the world's last cluster; current with it at ``share``; labels."""
    world = World.make(dim=64, seed=12345)
    rng = np.random.default_rng(seed)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    reference, _ = world.sample(n_reference, weights=base / base.sum(), seed=rng)
    weights = base / base.sum() * (1.0 - share)
    weights[-1] = share
    current, labels = world.sample(n_current, weights=weights, seed=rng)
    return reference, current, labels == world.centers.shape[0] - 1


# ---------------------------------------------------------------------- planted truth
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_new_cluster_is_found_pure_with_its_share(seed: int) -> None:
    reference, current, is_new = synthetic_windows(seed)
    ex = explain(Reference.fit(reference, seed=seed), current, seed=seed)
    assert len(ex.new_clusters) == 1
    region = ex.new_clusters[0]
    members = np.asarray(region.members)
    assert is_new[members].mean() >= 0.8
    assert abs(region.share - is_new.mean()) <= 0.015
    assert region.size == members.size and region.share == members.size / len(current)
    assert {int(e) for e in region.examples} <= set(region.members)


def test_synthetic_vanished_cluster_is_found() -> None:
    # the window *with* the planted cluster is the reference; the current window lacks it
    without, with_cluster, labels = synthetic_windows(7, n_reference=600, n_current=1200)
    ref = Reference.fit(with_cluster, seed=0)
    ex = explain(ref, without, seed=0)
    assert ex.new_clusters == ()
    assert len(ex.vanished_clusters) == 1
    # map the rows of ref.sample back to their labels by exact row match
    row_of = {row.tobytes(): i for i, row in enumerate(with_cluster)}
    sample_labels = np.array([labels[row_of[r.tobytes()]] for r in ref.sample])
    region = ex.vanished_clusters[0]
    assert sample_labels[np.asarray(region.members)].mean() >= 0.8
    assert abs(region.share - sample_labels.mean()) <= 0.015
    assert all(e.startswith("ref:") for e in region.examples)


def test_no_new_cluster_without_drift_in_95_percent_of_runs() -> None:
    world = World.make(dim=64, seed=12345)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    base /= base.sum()
    alarms = 0
    runs = 20
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        reference, _ = world.sample(800, weights=base, seed=rng)
        current, _ = world.sample(400, weights=base, seed=rng)
        ex = explain(Reference.fit(reference, seed=seed), current, seed=seed, n_null=20)
        alarms += bool(ex.new_clusters)
        # the flag rate stays near 2 (1 - quantile) per side (two flags)
        assert ex.thresholds["flagged_new"] <= 0.06 * len(current)
    assert alarms <= runs // 20  # at most 1 of 20: no new cluster in >= 95% of runs


# ---------------------------------------------------------------------- real text
MIX = ("python", "libs", "devel", "doc", "utils", "net", "games", "science")


def pools(real_text: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each section's rows split 50/50 (seeded) into a reference pool and a test pool."""
    section = real_text["section"]
    rng = np.random.default_rng(0)
    ref_pool, test_pool = {}, {}
    for name in np.unique(section):
        rows = rng.permutation(np.flatnonzero(section == name))
        ref_pool[name], test_pool[name] = rows[: rows.size // 2], rows[rows.size // 2 :]
    return ref_pool, test_pool


def mix_window(
    pool: dict[str, np.ndarray],
    n: int,
    rng: np.random.Generator,
    *,
    new: str | None = None,
    share: float = 0.0,
) -> np.ndarray:
    n_new = int(round(share * n))
    per = np.full(len(MIX), (n - n_new) // len(MIX))
    per[: n - n_new - per.sum()] += 1
    rows = [rng.choice(pool[s], k, replace=False) for s, k in zip(MIX, per, strict=True)]
    if new is not None:
        rows.append(rng.choice(pool[new], n_new, replace=False))
    return np.concatenate(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_text_new_section_is_reported(real_text: dict[str, np.ndarray], seed: int) -> None:
    x, section = real_text["embeddings"], real_text["section"]
    ref_pool, test_pool = pools(real_text)
    rng = np.random.default_rng(seed)
    week0 = mix_window(ref_pool, 2000, rng)
    week4 = mix_window(test_pool, 1000, rng, new="rust", share=NEW_SHARE)
    ex = explain(Reference.fit(x[week0], seed=seed), x[week4], ids=week4, seed=seed)
    assert len(ex.new_clusters) == 1, [r.size for r in ex.new_clusters]
    region = ex.new_clusters[0]
    members = week4[np.asarray(region.members)]
    assert (section[members] == "rust").mean() >= 0.8
    assert abs(region.share - NEW_SHARE) <= 0.015
    # the example ids are the caller's ids (here the dataset row numbers) of members
    assert {int(e) for e in region.examples} <= set(members.tolist())


def test_real_text_no_new_section_no_new_cluster(real_text: dict[str, np.ndarray]) -> None:
    x = real_text["embeddings"]
    ref_pool, test_pool = pools(real_text)
    runs, alarms = 20, 0
    for seed in range(runs):
        rng = np.random.default_rng(100 + seed)
        week0 = mix_window(ref_pool, 1000, rng)
        week1 = mix_window(test_pool, 500, rng)
        ex = explain(Reference.fit(x[week0], seed=seed), x[week1], seed=seed, n_null=20)
        alarms += bool(ex.new_clusters)
    assert alarms <= runs // 20


# ---------------------------------------------------------------------- closed forms
def test_directions_split_the_mean_shift_exactly() -> None:
    rng = np.random.default_rng(3)
    d = 20
    scales = np.linspace(3.0, 0.5, d)
    reference = rng.normal(size=(1000, d)) * scales
    ref = Reference.fit(reference, seed=0, n_components=5)
    v1 = ref.projection.components_[0]
    shift = 0.8 * v1 + 0.3 * np.eye(d)[-1]  # mostly PC1, a bit outside the top-5
    current = rng.normal(size=(500, d)) * scales + shift
    ex = explain(ref, current, seed=0)
    delta = current.mean(axis=0) - ref.sample.astype(np.float64).mean(axis=0)
    along = ref.projection.components_ @ delta
    shares = [dr.mean_shift_share for dr in ex.directions]
    np.testing.assert_allclose(shares, along**2 / (delta @ delta), rtol=1e-6)
    np.testing.assert_allclose(sum(shares) + ex.mean_shift_outside_share, 1.0, atol=1e-9)
    np.testing.assert_allclose(
        [dr.mean_shift for dr in ex.directions], along / ref.projection.scale_, rtol=1e-6
    )
    assert max(ex.directions, key=lambda dr: dr.mean_shift_share).component == 1
    spread_total = sum(dr.spread_share for dr in ex.directions) + ex.spread_outside_share
    np.testing.assert_allclose(spread_total, 1.0, atol=1e-9)


def test_witness_means_give_the_biased_mmd() -> None:
    rng = np.random.default_rng(4)
    x, y, h = rng.normal(size=(60, 5)), rng.normal(size=(40, 5)) + 0.4, 1.7
    kxx = np.exp(-cdist(x, x, "sqeuclidean") / (2 * h**2))
    kyy = np.exp(-cdist(y, y, "sqeuclidean") / (2 * h**2))
    kxy = np.exp(-cdist(x, y, "sqeuclidean") / (2 * h**2))
    mmd2_biased = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    w_y = witness_values(y, x, y, h)
    w_x = witness_values(x, x, y, h)
    np.testing.assert_allclose(w_y.mean() - w_x.mean(), mmd2_biased, rtol=1e-9)
    np.testing.assert_allclose(w_x, kxy.mean(axis=1) - kxx.mean(axis=1), rtol=1e-9)


def test_hotelling_in_one_dimension_is_the_pooled_t_test() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 1)), rng.normal(size=(25, 1)) + 0.5
    expected = sps.ttest_ind(a[:, 0], b[:, 0], equal_var=True).pvalue
    assert _hotelling_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_hotelling_in_several_dimensions_is_the_regression_f_test() -> None:
    # Independent reference for p > 1 (the 1-D case cannot see the F scaling or its degrees
    # of freedom): the two-sample T² test is the overall F test of regressing the group
    # indicator on the variables, F = (R² / p) / ((1 - R²) / (n - p - 1)).
    rng = np.random.default_rng(6)
    for p, (n1, n2) in ((2, (12, 9)), (4, (30, 25)), (7, (40, 18))):
        a = rng.normal(size=(n1, p))
        b = rng.normal(size=(n2, p)) + rng.normal(scale=0.3, size=p)
        g = np.r_[np.zeros(n1), np.ones(n2)]
        design = np.column_stack([np.ones(n1 + n2), np.vstack([a, b])])
        coef, *_ = np.linalg.lstsq(design, g, rcond=None)
        r2 = 1.0 - np.sum((g - design @ coef) ** 2) / np.sum((g - g.mean()) ** 2)
        f = (r2 / p) / ((1.0 - r2) / (n1 + n2 - p - 1))
        expected = sps.f.sf(f, p, n1 + n2 - p - 1)
        assert _hotelling_p(a, b) == pytest.approx(expected, rel=1e-8)


def test_two_proportion_z_is_the_uncorrected_chi_square() -> None:
    table = np.array([[30, 170], [55, 145]])
    expected = sps.chi2_contingency(table, correction=False).pvalue
    assert _two_proportion_p(30, 200, 55, 200) == pytest.approx(expected, rel=1e-9)


def test_reweighted_reference_cluster_is_flagged() -> None:
    world = World.make(dim=64, seed=12345)
    rng = np.random.default_rng(8)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    base /= base.sum()
    reference, _ = world.sample(1200, weights=base, seed=rng)
    heavy = base * 0.6
    heavy[0] += 0.4
    current, labels = world.sample(600, weights=heavy, seed=rng)
    ex = explain(Reference.fit(reference, seed=0), current, seed=0)
    top = max(ex.reference_clusters, key=lambda c: c.share_effect)
    assert top.reweighted and top.current_share > top.reference_share
    assert (labels[[int(e) for e in top.examples]] == 0).all()


def _world_and_reference(
    dim: int, n: int, seed: int
) -> tuple[World, np.ndarray, np.random.Generator, Reference]:
    """A synthetic world, its cluster weights without the last cluster, the Generator that drew
    the reference rows (for more windows of the same mix) and a reference fitted on n rows."""
    world = World.make(dim=dim, seed=12345)
    rng = np.random.default_rng(seed)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    base /= base.sum()
    reference, _ = world.sample(n, weights=base, seed=rng)
    return world, base, rng, Reference.fit(reference, seed=0, n_calibration=19)


def test_reference_clusters_are_not_fitted_on_the_tested_rows() -> None:
    # Fit on one part, test on the other (DESIGN.md): the cells of the share and shift tests
    # must not depend on which tested rows are "reference". Then swapping the two tested
    # samples swaps the counts and leaves every (symmetric) p-value unchanged; cells fitted
    # on the reference test rows chase their chance clumps and raise false alarms.
    world, base, rng, ref = _world_and_reference(64, 800, 21)
    other, _ = world.sample(ref.sample.shape[0], weights=base, seed=rng)
    ids = np.array([str(i) for i in range(other.shape[0])], dtype=object)

    def changes(a: np.ndarray, b: np.ndarray) -> tuple:
        return _cluster_changes(
            a, b, ref, ids, k=8, alpha=0.05, n_examples=3, rng=np.random.default_rng(0)
        )

    forward, backward = changes(ref.sample, other), changes(other, ref.sample)
    counts = sorted((c.n_reference, c.n_current) for c in forward)
    assert counts == sorted((c.n_current, c.n_reference) for c in backward)
    key = {(c.n_reference, c.n_current): c for c in backward}
    for c in forward:
        swapped = key[(c.n_current, c.n_reference)]
        assert swapped.share_p_value == pytest.approx(c.share_p_value, rel=1e-9)
        assert swapped.shift_p_value == pytest.approx(c.shift_p_value, rel=1e-6)


def test_moved_or_reweighted_keeps_the_family_wise_level_over_both_tests() -> None:
    # moved_clusters reports a cluster when its shift test OR its share test rejects, so the
    # family behind it holds both tests of every cluster: Bonferroni must divide alpha by their
    # number, not by the number of clusters (which lets about 2 alpha of no-drift windows
    # report a moved or re-weighted cluster).
    world, base, rng, ref = _world_and_reference(16, 1000, 3)
    ids = np.array([str(i) for i in range(300)], dtype=object)
    alpha = 0.05
    for _ in range(30):
        a, _ = world.sample(300, weights=base, seed=rng)
        b, _ = world.sample(300, weights=base, seed=rng)
        changes = _cluster_changes(a, b, ref, ids, k=8, alpha=alpha, n_examples=1, rng=rng)
        p_share = [c.share_p_value for c in changes]
        p_shift = [c.shift_p_value for c in changes if c.shift_p_value is not None]
        level = alpha / (len(p_share) + len(p_shift))
        for c in changes:
            assert c.reweighted == (c.share_p_value <= level)
            assert c.moved == (c.shift_p_value is not None and c.shift_p_value <= level)


# ---------------------------------------------------------------------- results and input
def test_explanation_round_trips_and_rides_on_drift_result() -> None:
    reference, current, _ = synthetic_windows(0, n_reference=400, n_current=200)
    ref = Reference.fit(reference, seed=0)
    ex = explain(ref, current, ids=[f"q{i}" for i in range(200)], seed=0)
    again = Explanation.from_dict(json.loads(json.dumps(ex.to_dict())))
    assert again == ex
    assert explain(ref, current, ids=[f"q{i}" for i in range(200)], seed=0) == ex
    result = ref.compare(current, n_permutations=49)
    assert "explanation" not in result.to_dict()
    from dataclasses import replace

    carried = replace(result, explanation=ex)
    back = DriftResult.from_json(carried.to_json())
    assert back.explanation == ex
    assert DriftResult.from_json(result.to_json()).explanation is None


def test_large_window_is_subsampled_and_says_so() -> None:
    reference, current, _ = synthetic_windows(1, n_reference=400, n_current=900)
    ex = explain(Reference.fit(reference, seed=0), current, seed=0, max_rows=500)
    assert (ex.n_current, ex.n_current_used) == (900, 500)
    for region in ex.new_clusters:
        assert max(region.members) < 900


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ids": list(range(5))}, InvalidParameterError, "one id per current row"),
        ({"ids": ["a"] * 200}, InvalidParameterError, "unique; 'a'"),
        ({"ids": "abc"}, InvalidParameterError, "sequence"),
        ({"quantile": 1.5}, InvalidParameterError, "'quantile'"),
        ({"n_neighbors": 1}, InvalidParameterError, "'n_neighbors'"),
        ({"min_cluster_size": 0}, InvalidParameterError, "'min_cluster_size'"),
    ],
)
def test_bad_input_messages(kwargs: dict, error: type, match: str) -> None:
    reference, current, _ = synthetic_windows(0, n_reference=200, n_current=200)
    ref = Reference.fit(reference, seed=0)
    with pytest.raises(error, match=match):
        explain(ref, current, **kwargs)


def test_bad_reference_and_dimension() -> None:
    reference, current, _ = synthetic_windows(0, n_reference=200, n_current=100)
    with pytest.raises(InvalidParameterError, match="must be an embdrift Reference"):
        explain(reference, current)  # type: ignore[arg-type]
    with pytest.raises(DimensionMismatchError, match="64 dimensions"):
        explain(Reference.fit(reference, seed=0), current[:, :10])


def test_cluster_changes_with_fewer_distinct_fit_rows_than_clusters() -> None:
    # Three distinct embeddings repeated: k-means on the fit rows leaves cells without any
    # row; they are left out instead of failing on an empty cell.
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 32))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    x = np.repeat(base, 200, axis=0)[rng.permutation(600)].astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means: fewer distinct points than clusters
        ref = Reference.fit(x, seed=0, n_calibration=19)
        cur = rng.normal(size=(300, 32)).astype(np.float32)
        cur /= np.linalg.norm(cur, axis=1, keepdims=True)
        ids = np.array([str(i) for i in range(300)], dtype=object)
        found = _cluster_changes(
            ref.sample, cur, ref, ids, k=8, alpha=0.05, n_examples=3, rng=np.random.default_rng(0)
        )
    assert 1 <= len(found) < 8
    assert all(np.all(np.isfinite(c.reference_centroid)) for c in found)
    assert sum(c.n_reference for c in found) == ref.sample.shape[0]
