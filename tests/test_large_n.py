"""The large-n path: random-feature MMD, subsampled energy, novelty; calibration and agreement
with the exact path, effect-size gating, and memory bounded through array sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embdrift import DriftResult, Reference
from embdrift.stats.twosample import FeatureMMD, KernelMMD, random_fourier_features
from embdrift.synthetic import World, make_scenario

WORLD = World.make(dim=384, seed=12345)
SMALL_WORLD = World.make(dim=64, seed=12345)  # d=64 keeps 800 seeded runs within budget
WEIGHTS = np.r_[np.ones(8), 0.0] / 8


def test_random_feature_mmd_is_close_to_the_exact_kernel_mmd() -> None:
    ref_rows, cur = make_scenario("mix_shift", n_reference=600, n_current=300, seed=0)
    ref = Reference.fit(ref_rows, seed=0, n_random_features=4096)
    pooled = np.vstack([ref.sample, cur])
    observed = np.r_[np.ones(len(ref.sample)), np.zeros(len(cur))][None, :]
    exact = KernelMMD(pooled, bandwidth=ref.bandwidth).values(observed)[0]
    approx = FeatureMMD(random_fourier_features(pooled, ref.rff_frequencies)).values(observed)[0]
    # Each kernel value has standard error <= 1/sqrt(J) (J = 2048 frequencies); the MMD² is an
    # average of such values with errors that partly cancel.
    assert abs(approx - exact) < 3 / np.sqrt(2048)
    features = random_fourier_features(pooled[:5], ref.rff_frequencies)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def _draw(
    seed: int, n: int, shift: float = 0.0, world: World = WORLD
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = world.sample(n, weights=WEIGHTS, seed=rng)[0]
    cur = world.sample(n, weights=WEIGHTS, seed=rng, shift=shift * world.centers[0])[0]
    return ref, cur


@pytest.mark.slow
def test_large_n_path_is_calibrated_and_agrees_with_the_exact_path() -> None:
    runs, n = 300, 300
    hits = {"exact": 0, "large_n": 0}
    for seed in range(runs):
        ref_rows, cur = _draw(seed, n, world=SMALL_WORLD)
        for path, exact_rows in (("exact", 10_000), ("large_n", 10)):
            ref = Reference.fit(ref_rows, seed=seed, exact_rows=exact_rows)
            res = ref.compare(cur, n_permutations=99, seed=seed)
            assert res.path == path
            hits[path] += res.drifted
    for path, count in hits.items():
        assert 0.027 <= count / runs <= 0.080, (path, count / runs)
    # Power on a shift where the exact path detects 30-80%: within 10 points.
    power = {"exact": 0, "large_n": 0}
    runs = 100
    for seed in range(runs):
        ref_rows, cur = _draw(1000 + seed, n, shift=0.15, world=SMALL_WORLD)
        for path, exact_rows in (("exact", 10_000), ("large_n", 10)):
            ref = Reference.fit(ref_rows, seed=seed, exact_rows=exact_rows)
            power[path] += ref.compare(cur, n_permutations=99, seed=seed).drifted
    assert 0.3 <= power["exact"] / runs <= 0.8, power
    assert abs(power["exact"] - power["large_n"]) / runs <= 0.10, power


def test_min_effect_keeps_a_small_significant_drift_from_alerting() -> None:
    ref_rows, cur = _draw(7, 3000, shift=0.15)
    ref = Reference.fit(ref_rows, seed=0)
    plain = ref.compare(cur, n_permutations=99)
    assert plain.drifted
    # Gates just above every observed effect: significant, but not large enough to alert.
    gates = {n: 1.01 * abs(plain.metrics[n].effect_size) + 1e-9 for n in plain.decision_metrics}
    gated = ref.compare(cur, n_permutations=99, min_effect=gates)
    assert gated.p_value == plain.p_value
    assert not gated.drifted
    assert not any(gated.metrics[n].drifted for n in gates)
    # Gates just below: the verdict stands.
    low = {n: 0.99 * abs(plain.metrics[n].effect_size) for n in plain.decision_metrics}
    assert ref.compare(cur, n_permutations=99, min_effect=low).drifted
    with pytest.raises(ValueError, match="not computed"):
        ref.compare(cur, metrics=["mmd"], min_effect={"energy": 0.1})


def test_large_n_memory_is_linear_in_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allocation sizes, not timings: the large-n path never builds an N x N matrix, nor the
    (N, D) random features or an (N, d) copy of the pooled rows (they are summed in chunks of
    rows), so its peak allocation grows linearly in N and is set by the chunk sizes."""
    import tracemalloc

    import embdrift.reference
    import embdrift.stats.twosample

    # Small chunks, so that the arrays that do grow with N dominate the peak at this size.
    monkeypatch.setattr(embdrift.reference, "_CHUNK_ROWS", 256)
    monkeypatch.setattr(embdrift.stats.twosample, "_W1_BUFFER_BYTES", 2**20)
    # The bandwidth's pooled subsample is a fixed-size temporary too (1,000 rows: ~20 MB).
    monkeypatch.setattr(embdrift.reference, "_BANDWIDTH_ROWS", 200)
    peaks = {}
    for n in (3000, 6000):
        ref_rows, cur = _draw(3, n)
        # energy_rows bounds the energy subsample's distance matrices (fixed, not growing
        # with N); kept small here for the same reason as the chunks.
        ref = Reference.fit(ref_rows, seed=0, exact_rows=100, energy_rows=200)
        assert ref.anchors.shape[0] <= ref.params.max_anchors
        tracemalloc.start()
        # Every metric is computed; a verdict from one family lets B stay at 19.
        res = ref.compare(cur, n_permutations=19, decision_metrics=["mmd", "energy"])
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert res.path == "large_n"
        n_pooled = ref.sample.shape[0] + cur.shape[0]
        features = n_pooled * ref.params.n_random_features * 4
        assert peaks[n] < min(n_pooled**2 * 8, features) / 2, (n, peaks[n])
    # Doubling the rows at most doubles the peak (an N x N matrix would quadruple it).
    assert peaks[6000] < 2.2 * peaks[3000], peaks


def test_energy_is_left_out_when_its_subsample_would_hold_too_few_current_rows(
    tmp_path,
) -> None:
    """On the large-n path a window of 8 rows against 1,500 held-out rows and 500 anchors would
    have about 0.2 rows in a 50-row energy subsample: energy is left out (NaN value and effect size,
    p-value 1, so it never drifts), decided from the sizes alone, and the verdict stays a valid
    p-value from the other metrics. A stored null holds the same (scores of -inf, no evidence),
    and the reference saves and loads with it; the result's JSON stays strict (null, not
    NaN). With a window large enough for the subsample, energy is computed."""
    ref_rows, _ = _draw(0, 3000, world=SMALL_WORLD)
    ref = Reference.fit(ref_rows, seed=0, exact_rows=200, energy_rows=50, window_sizes=(8,))
    ref = Reference.load(ref.save(tmp_path / "ref.npz"))
    cur = SMALL_WORLD.sample(8, weights=WEIGHTS, seed=1)[0]
    for options in ({"n_permutations": 49}, {"calibration": "stored"}):
        res = ref.compare(cur, seed=1, **options)
        energy = res.metrics["energy"]
        assert res.path == "large_n" and 0.0 < res.p_value <= 1.0
        assert np.isnan(energy.value) and np.isnan(energy.effect_size)
        assert energy.p_value == 1.0 and not energy.drifted
        assert np.isfinite(res.metrics["mmd"].value)
        text = res.to_json()
        parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        assert parsed["metrics"]["energy"]["value"] is None
        assert np.isnan(DriftResult.from_json(text).metrics["energy"].value)
    big = SMALL_WORLD.sample(600, weights=WEIGHTS, seed=2)[0]  # 50 * 600 / 2,600 = 11.5 rows
    assert np.isfinite(ref.compare(big, seed=1, n_permutations=49).metrics["energy"].value)
    # A stored null that left energy out (windows of 200: 50 * 200 / 1,500 < 10 rows) leaves
    # it out of a live window it serves even where the live window could compute it (400).
    ref = Reference.fit(ref_rows, seed=0, exact_rows=200, energy_rows=50, window_sizes=(200,))
    res = ref.compare(big[:400], calibration="stored")
    assert np.isfinite(res.metrics["energy"].value) and res.metrics["energy"].p_value == 1.0
