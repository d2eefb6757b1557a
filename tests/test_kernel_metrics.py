"""The kernel statistics (``KERNEL_METRICS``): in a permutation check ``mmd`` and ``energy``
compare every reference row they see (the anchors and the held-out rows) with the current
window, all of them permuted, ``mmd`` at a bandwidth chosen on the pooled rows. Their values
against independent implementations, the power the whole window adds, and the verdict's
combination of the two families.

Exactness is checked where every metric's is: the seeded false-alarm rates of
``tests/test_calibration.py`` (fresh references, synthetic and real text) include both.
"""

from __future__ import annotations

import dcor
import numpy as np
import pytest

from embdrift import Reference
from embdrift.errors import InsufficientDataError, InvalidParameterError
from embdrift.reference import KERNEL_METRICS, _combine_families, _families, _voting_families
from embdrift.stats.metrics import median_bandwidth, mmd2_unbiased
from embdrift.stats.permutation import combine_min_p, permutation_masks
from embdrift.stats.twosample import FeatureMMD, KernelMMD, random_fourier_features
from embdrift.synthetic import make_scenario


def test_kernel_values_are_the_statistics_on_all_reference_rows() -> None:
    x, y = make_scenario("mix_shift", n_reference=400, n_current=300, dim=32, seed=4)
    ref = Reference.fit(x, seed=1)
    assert ref.anchors.shape[0] == ref.n_fit == 200  # every fit row is an anchor here
    res = ref.compare(y, n_permutations=19, metrics=list(KERNEL_METRICS))
    reference_rows = np.vstack([ref.anchors, ref.sample]).astype(np.float64)
    current = y.astype(np.float32).astype(np.float64)
    assert res.bandwidth != ref.bandwidth  # chosen on the pooled rows, not at fit
    assert res.metrics["mmd"].value == pytest.approx(
        mmd2_unbiased(reference_rows, current, bandwidth=res.bandwidth), rel=1e-9
    )
    assert res.metrics["energy"].value == pytest.approx(
        dcor.energy_distance(reference_rows, current), rel=1e-9
    )
    # The effect size divides by the same rows' 2E‖X − Y‖.
    between = 2 * np.mean(np.sqrt(((reference_rows[:, None] - current[None]) ** 2).sum(-1)))
    assert res.metrics["energy"].effect_size == pytest.approx(
        res.metrics["energy"].value / between, rel=1e-6
    )


def test_the_bandwidth_is_the_median_heuristic_of_the_pooled_rows() -> None:
    """With at most 1,000 pooled rows every one of them enters the median: the bandwidth is
    then the median distance over all pairs of the pooled rows, whichever side they are on."""
    x, y = make_scenario("none", n_reference=300, n_current=200, dim=16, seed=7)
    ref = Reference.fit(x, seed=2)
    res = ref.compare(y, n_permutations=19, metrics=["mmd"])
    pooled = np.vstack([ref.anchors, ref.sample, y.astype(np.float32)])
    assert pooled.shape[0] == 500
    distances = np.sqrt(((pooled[:, None, :] - pooled[None].astype(np.float64)) ** 2).sum(-1))
    assert res.bandwidth == pytest.approx(np.median(distances[np.triu_indices(500, k=1)]), rel=1e-6)
    assert res.bandwidth == pytest.approx(median_bandwidth(pooled), rel=1e-9)


def test_the_whole_window_raises_the_power_of_mmd() -> None:
    """A mixing-weight shift that MMD on the held-out half of the reference alone detects in
    about half the runs: with every reference row permuted it detects it in clearly more
    (paired runs: the same reference, window and permutation count)."""
    runs, whole, held_out = 100, 0, 0
    for seed in range(runs):
        x, y = make_scenario("mix_shift", n_current=500, dim=64, seed=seed, strength=0.5)
        ref = Reference.fit(x, seed=seed)
        result = ref.compare(y, metrics=["mmd"], n_permutations=199, seed=seed)
        whole += result.metrics["mmd"].drifted
        pooled = np.vstack([ref.sample, y.astype(np.float32)]).astype(np.float64)
        masks = permutation_masks(ref.sample.shape[0], y.shape[0], 199, np.random.default_rng(seed))
        values = KernelMMD(pooled, bandwidth=ref.bandwidth).values(masks)
        held_out += np.mean(values >= values[0]) <= 0.05
    print(f"mix-shift power of mmd: whole window {whole / runs}, held-out {held_out / runs}")
    assert 0.3 <= held_out / runs <= 0.7  # the shift is neither trivial nor invisible
    assert whole >= held_out + 0.15 * runs


def test_with_groups_the_anchors_stay_on_the_reference_side() -> None:
    """The anchors' groups are not kept, so a group permutation cannot move them: they stay
    on the reference side of every permutation, at the fitted bandwidth."""
    x, y = make_scenario("mix_shift", n_reference=400, n_current=200, dim=16, seed=8)
    gx, gy = np.arange(400) // 4, 1000 + np.arange(200) // 4
    ref = Reference.fit(x, seed=3, groups=gx)
    res = ref.compare(y, groups=gy, n_permutations=19, metrics=list(KERNEL_METRICS))
    assert res.method == "group_permutation" and res.bandwidth == ref.bandwidth
    reference_rows = np.vstack([ref.anchors, ref.sample]).astype(np.float64)
    current = y.astype(np.float32).astype(np.float64)
    assert res.metrics["mmd"].value == pytest.approx(
        mmd2_unbiased(reference_rows, current, bandwidth=ref.bandwidth), rel=1e-9
    )


def test_the_exact_path_matrix_stays_within_twice_exact_rows(monkeypatch) -> None:
    """Anchors fill only the room the two sides leave in the exact path's 2 * exact_rows
    matrix (memory bound by array sizes), and the values then use that prefix of them."""
    from embdrift import reference as reference_module

    x, y = make_scenario("mix_shift", n_reference=300, n_current=60, dim=16, seed=5)
    ref = Reference.fit(x, seed=2, fit_fraction=0.8, exact_rows=60)  # 240 anchors, 60 held out
    assert ref.anchors.shape[0] == 240 and ref.sample.shape[0] == 60
    sides: list[int] = []
    real = reference_module.pairwise_sq_distances

    def spy(rows: np.ndarray) -> np.ndarray:
        sides.append(rows.shape[0])
        return real(rows)

    monkeypatch.setattr(reference_module, "pairwise_sq_distances", spy)
    res = ref.compare(y, n_permutations=19, metrics=list(KERNEL_METRICS))
    assert res.path == "exact" and sides[-1] == 120  # 60 held out + 60 current, no room left
    assert res.metrics["mmd"].value == pytest.approx(
        mmd2_unbiased(ref.sample, y, bandwidth=res.bandwidth), rel=1e-9
    )
    sides.clear()
    res = ref.compare(y[:40], n_permutations=19, metrics=["mmd"])
    assert sides[-1] == 120  # 60 + 40 rows and the first 20 anchors
    rows = np.vstack([ref.anchors[:20], ref.sample]).astype(np.float64)
    assert res.metrics["mmd"].value == pytest.approx(
        mmd2_unbiased(rows, y[:40], bandwidth=res.bandwidth), rel=1e-9
    )


def test_fewer_anchors_than_fit_rows_and_the_large_n_path_use_exactly_those_rows() -> None:
    """With ``max_anchors`` below the fit rows, the kernel values use the kept anchors and the
    held-out rows, on the exact path and on the large-n path (energy with a subsample as large
    as the pooled rows; MMD from random features at the same bandwidth, within their error):
    value by value against independent implementations."""
    x, y = make_scenario("mix_shift", n_reference=400, n_current=120, dim=24, seed=6)
    current = y.astype(np.float32).astype(np.float64)
    for exact_rows, path in ((2000, "exact"), (150, "large_n")):
        ref = Reference.fit(x, seed=3, max_anchors=50, exact_rows=exact_rows, energy_rows=10**4)
        assert ref.anchors.shape[0] == 50 < ref.n_fit
        reference_rows = np.vstack([ref.anchors, ref.sample]).astype(np.float64)
        res = ref.compare(y, n_permutations=19, metrics=list(KERNEL_METRICS))
        assert res.path == path
        assert res.metrics["energy"].value == pytest.approx(
            dcor.energy_distance(reference_rows, current), rel=1e-5
        )
        expected = mmd2_unbiased(reference_rows, current, bandwidth=res.bandwidth)
        if path == "exact":
            assert res.metrics["mmd"].value == pytest.approx(expected, rel=1e-9)
            continue
        # The random features at the check's bandwidth (the fitted frequencies rescaled),
        # computed independently, and the kernel they estimate.
        frequencies = ref.rff_frequencies.astype(np.float64) * (ref.bandwidth / res.bandwidth)
        features = random_fourier_features(
            np.vstack([reference_rows, current]), frequencies, center=ref.projection.mean_
        )
        masks = np.zeros((1, features.shape[0]), dtype=np.float32)
        masks[0, : reference_rows.shape[0]] = 1.0
        by_features = FeatureMMD(features).values(masks)[0]
        assert res.metrics["mmd"].value == pytest.approx(by_features, rel=1e-4)
        assert res.metrics["mmd"].value == pytest.approx(expected, abs=0.05)  # 1,024 features


def test_the_verdict_is_a_weighted_bonferroni_of_the_two_families() -> None:
    """Per-metric p-values are each family's own min-p outcome; the verdict's p-value is
    min(1, p_kernel / w_kernel, p_projection / w_projection), each family's weight its share
    of the decision metrics. Where every metric shares the permutations (groups, a stored
    null) it is one min-p over them all."""
    rng = np.random.default_rng(9)
    names = ["mmd", "energy", "novelty", "reconstruction_error", "residual_mean_shift"]
    scores = rng.normal(size=(200, 5))
    scores[0, :2] += 2.5  # the kernel family sees drift

    def combine(deciding: list[str], *, separate: bool) -> tuple[np.ndarray, np.ndarray, float]:
        families = _families(names, separate=separate)
        voting = _voting_families(names, deciding, separate=separate)
        return _combine_families(scores, families, voting, alpha=0.05)

    p, critical, combined = combine(names, separate=True)
    kernel = combine_min_p(scores[:, :2], alpha=0.05)
    projection = combine_min_p(scores[:, 2:], alpha=0.05)
    np.testing.assert_array_equal(p, np.r_[kernel.p_values, projection.p_values])
    np.testing.assert_array_equal(
        critical, np.r_[kernel.critical_values, projection.critical_values]
    )
    expected = min(1.0, kernel.combined_p_value / 0.4, projection.combined_p_value / 0.6)
    assert combined == pytest.approx(expected)
    # One family alone decides with its own min-p.
    assert combine(["mmd", "energy"], separate=True)[2] == pytest.approx(kernel.combined_p_value)
    joint = combine_min_p(scores, alpha=0.05)
    p, critical, combined = combine(names, separate=False)
    np.testing.assert_array_equal(p, joint.p_values)
    np.testing.assert_array_equal(critical, joint.critical_values)
    assert combined == joint.combined_p_value


def test_a_permutation_count_the_verdict_cannot_fire_with_is_refused() -> None:
    """The smallest verdict p-value is 1 / ((B + 1) w_min): with the default decision metrics
    (kernel weight 2/5) B = 19 can never reach alpha = 0.05 and is refused with the count that
    can; B = 49 can, and a strong drift is then flagged. With groups every metric shares the
    permutations (one family), so B = 19 is enough there."""
    x, y = make_scenario("mean_shift", n_reference=300, n_current=150, dim=16, seed=2)
    ref = Reference.fit(x, seed=0)
    for too_few in (19, 48):
        with pytest.raises(InvalidParameterError, match="n_permutations >= 49"):
            ref.compare(y + 0.5, n_permutations=too_few)
    assert ref.compare(y + 0.5, n_permutations=49).drifted
    with pytest.raises(InvalidParameterError, match="n_permutations >= 99"):
        ref.compare(y, n_permutations=49, alpha=0.025)
    labels = np.arange(300) // 3
    grouped = Reference.fit(x, seed=0, groups=labels)
    result = grouped.compare(y + 0.5, groups=np.arange(150) // 3, n_permutations=19)
    assert result.method == "group_permutation" and result.drifted


@pytest.mark.parametrize("exact_rows", [2000, 100])
def test_the_default_permutation_count_lets_every_family_reach_a_small_alpha(
    exact_rows: int,
) -> None:
    """Without n_permutations a check runs at any alpha: at 0.01 (kernel weight 2/5) the
    defaults 500 (exact) and 200 (large n) would leave the kernel family's floor at
    1/(501 * 2/5) ~ 0.005 and 1/(201 * 2/5) ~ 0.012 (the latter refused); the default is
    raised to 999, so that even the lighter family has (B + 1) alpha w >= 4, and a strong
    drift is flagged at that level."""
    x, y = make_scenario("mean_shift", n_reference=300, n_current=150, dim=16, seed=2)
    ref = Reference.fit(x, seed=0, exact_rows=exact_rows)
    at_05 = ref.compare(y, seed=1)
    assert at_05.n_permutations == (500 if exact_rows == 2000 else 200)
    at_01 = ref.compare(y + 0.5, seed=1, alpha=0.01)
    assert at_01.path == ("exact" if exact_rows == 2000 else "large_n")
    assert at_01.n_permutations == 999
    assert at_01.drifted and at_01.p_value <= 0.01
    assert ref.compare(y, seed=1, alpha=0.2).n_permutations == at_05.n_permutations


def test_a_stored_null_of_too_few_replicates_is_refused() -> None:
    """A stored null of 19 replicates gives p-values of at least 1/20: at alpha = 0.01 the
    check is refused with the n_calibration that can fire, not run to a verdict that never
    fires."""
    x, y = make_scenario("none", n_reference=300, n_current=80, dim=16, seed=3)
    ref = Reference.fit(x, seed=0, window_sizes=(80,), n_calibration=19)
    assert ref.compare(y, calibration="stored").method == "stored_null"  # alpha 0.05: fine
    with pytest.raises(InvalidParameterError, match=r"n_calibration=99"):
        ref.compare(y, calibration="stored", alpha=0.01)


def test_a_verdict_at_alpha_exactly_is_not_rounded_above_it() -> None:
    """A family of weight 1/3 at its smallest p-value 1/(B + 1) with B = 299 gives the verdict
    p = 3/300 = alpha = 0.01 exactly; two float roundings gave 0.010000000000000002 and no
    alarm although a decision metric had drifted."""
    names = ["mmd", "novelty", "reconstruction_error"]
    scores = np.zeros((300, 3))
    scores[0, 0] = 1.0  # the kernel family's observed statistic beats every permutation
    families = _families(names, separate=True)
    voting = _voting_families(names, names, separate=True)
    combined = _combine_families(scores, families, voting, alpha=0.01)[2]
    assert combined == 0.01
    x, y = make_scenario("none", n_reference=200, n_current=100, dim=8, seed=0)
    ref = Reference.fit(x, seed=0, n_components=3, outer_components=5)
    pc1 = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)[2][0]
    result = ref.compare(
        y + 1.5 * pc1,  # along the reference's PC1: the kernels reach their floor first
        alpha=0.01,
        n_permutations=299,
        metrics=names,
        decision_metrics=names,
    )
    assert result.metrics["mmd"].p_value == pytest.approx(1 / 300)
    assert result.p_value == 0.01 and result.drifted


def test_a_family_left_out_of_the_check_gives_its_weight_to_the_other() -> None:
    """On the large-n path energy is left out of small windows (every score -inf, decided from
    the sizes): the verdict over energy and novelty is then novelty's own p-value, not twice
    it; with energy the only decision metric the check says it has nothing to decide on."""
    x, y = make_scenario("new_cluster", n_reference=200, n_current=80, dim=8, seed=1)
    ref = Reference.fit(
        x, seed=0, n_components=3, outer_components=5, exact_rows=10, energy_rows=20
    )
    result = ref.compare(y, n_permutations=99, seed=1, decision_metrics=["energy", "novelty"])
    assert result.path == "large_n" and np.isnan(result.metrics["energy"].value)
    assert result.p_value == result.metrics["novelty"].p_value
    with pytest.raises(InsufficientDataError, match="Every decision metric is left out"):
        ref.compare(y, n_permutations=99, decision_metrics=["energy"])
