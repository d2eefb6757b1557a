"""The anchored kernel statistics: in a permutation check, ``mmd`` and ``energy`` also count
the reference's anchors (fit rows) as reference rows, on the reference side of every
permutation. Their values against independent implementations, and the power the anchors add.

Exactness with the anchors is checked where every metric's is: the seeded false-alarm rates of
``tests/test_calibration.py`` (300 fresh references, synthetic and real text) include both.
"""

from __future__ import annotations

import dcor
import numpy as np
import pytest

from embdrift import Reference
from embdrift.reference import ANCHORED_METRICS
from embdrift.stats.metrics import mmd2_unbiased
from embdrift.stats.permutation import permutation_masks
from embdrift.stats.twosample import KernelMMD
from embdrift.synthetic import make_scenario


def test_anchored_values_equal_the_statistics_on_all_reference_rows() -> None:
    x, y = make_scenario("mix_shift", n_reference=400, n_current=300, dim=32, seed=4)
    ref = Reference.fit(x, seed=1)
    assert ref.anchors.shape[0] == ref.n_fit == 200  # every fit row is an anchor here
    res = ref.compare(y, n_permutations=19, metrics=list(ANCHORED_METRICS))
    reference_rows = np.vstack([ref.anchors, ref.sample]).astype(np.float64)
    current = y.astype(np.float32).astype(np.float64)
    assert res.metrics["mmd"].value == pytest.approx(
        mmd2_unbiased(reference_rows, current, bandwidth=ref.bandwidth), rel=1e-9
    )
    assert res.metrics["energy"].value == pytest.approx(
        dcor.energy_distance(reference_rows, current), rel=1e-9
    )
    # The effect size divides by the same rows' 2E‖X − Y‖.
    between = 2 * np.mean(np.sqrt(((reference_rows[:, None] - current[None]) ** 2).sum(-1)))
    assert res.metrics["energy"].effect_size == pytest.approx(
        res.metrics["energy"].value / between, rel=1e-6
    )


def test_anchors_raise_the_power_of_mmd() -> None:
    """A mixing-weight shift that MMD on the held-out half of the reference alone detects in
    about half the runs: with the fit half as anchors it detects it in clearly more (paired
    runs: the same reference, window and permutation count)."""
    runs, anchored, held_out = 100, 0, 0
    for seed in range(runs):
        x, y = make_scenario("mix_shift", n_current=500, dim=64, seed=seed, strength=0.5)
        ref = Reference.fit(x, seed=seed)
        result = ref.compare(y, metrics=["mmd"], n_permutations=199, seed=seed)
        anchored += result.metrics["mmd"].drifted
        pooled = np.vstack([ref.sample, y.astype(np.float32)]).astype(np.float64)
        masks = permutation_masks(ref.sample.shape[0], y.shape[0], 199, np.random.default_rng(seed))
        values = KernelMMD(pooled, bandwidth=ref.bandwidth).values(masks)
        held_out += np.mean(values >= values[0]) <= 0.05
    print(f"mix-shift power of mmd: anchored {anchored / runs}, held-out {held_out / runs}")
    assert 0.3 <= held_out / runs <= 0.7  # the shift is neither trivial nor invisible
    assert anchored >= held_out + 0.1 * runs


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
    res = ref.compare(y, n_permutations=19, metrics=list(ANCHORED_METRICS))
    assert res.path == "exact" and sides == [120]  # 60 held out + 60 current, no room left
    assert res.metrics["mmd"].value == pytest.approx(
        mmd2_unbiased(ref.sample, y, bandwidth=ref.bandwidth), rel=1e-9
    )
    sides.clear()
    ref.compare(y[:40], n_permutations=19, metrics=["mmd"])
    assert sides == [120]  # 60 + 40 rows and the first 20 anchors


def test_fewer_anchors_than_fit_rows_and_the_large_n_energy_use_exactly_those_rows() -> None:
    """With ``max_anchors`` below the fit rows, the anchored values use the kept anchors and
    the held-out rows, on the exact path and (energy, with a subsample as large as the pooled
    rows) on the large-n path: value by value against independent implementations."""
    x, y = make_scenario("mix_shift", n_reference=400, n_current=120, dim=24, seed=6)
    current = y.astype(np.float32).astype(np.float64)
    for exact_rows, path in ((2000, "exact"), (150, "large_n")):
        ref = Reference.fit(x, seed=3, max_anchors=50, exact_rows=exact_rows, energy_rows=10**4)
        assert ref.anchors.shape[0] == 50 < ref.n_fit
        reference_rows = np.vstack([ref.anchors, ref.sample]).astype(np.float64)
        res = ref.compare(y, n_permutations=19, metrics=list(ANCHORED_METRICS))
        assert res.path == path
        assert res.metrics["energy"].value == pytest.approx(
            dcor.energy_distance(reference_rows, current), rel=1e-5
        )
        if path == "exact":  # (the large-n MMD uses random features: tests/stats/test_kernels)
            assert res.metrics["mmd"].value == pytest.approx(
                mmd2_unbiased(reference_rows, current, bandwidth=ref.bandwidth), rel=1e-9
            )
