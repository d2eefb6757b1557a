"""The permutation engine: exact enumeration, brute-force ranks, and min-p validity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embdrift.stats.permutation import combine_min_p, permutation_masks, rank_p_values
from embdrift.stats.twosample import MeanShift


def test_masks_keep_group_sizes_and_observed_row() -> None:
    masks = permutation_masks(4, 6, 50, np.random.default_rng(0))
    assert masks.shape == (51, 10)
    assert (masks.sum(axis=1) == 4).all()
    assert (masks[0] == np.r_[np.ones(4), np.zeros(6)]).all()
    assert len({m.tobytes() for m in masks[1:]}) > 40  # random splits, not copies


def test_rank_p_values_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(30, 3)).astype(float)  # many ties on purpose
    p = rank_p_values(scores)
    for b in range(30):
        for j in range(3):
            assert p[b, j] == np.mean(scores[:, j] >= scores[b, j])


def test_monte_carlo_p_value_converges_to_exact_enumeration() -> None:
    rng = np.random.default_rng(2)
    z = np.r_[rng.normal(0, 1, 6), rng.normal(0.8, 1, 6)][:, None]
    stat = MeanShift(z)
    exact_masks = np.zeros((924, 12))
    for row, chosen in enumerate(itertools.combinations(range(12), 6)):
        exact_masks[row, list(chosen)] = 1.0
    exact_values = stat.values(exact_masks)
    observed = stat.values(np.r_[np.ones(6), np.zeros(6)][None, :])[0]
    exact_p = np.mean(exact_values >= observed - 1e-12)
    masks = permutation_masks(6, 6, 20000, np.random.default_rng(3))
    outcome = combine_min_p(stat.values(masks)[:, None], alpha=0.05)
    assert outcome.p_values[0] == pytest.approx(exact_p, abs=4 * np.sqrt(0.25 / 20000))


def test_min_p_combination_holds_its_level_under_the_null() -> None:
    # Under exchangeability the observed row is just another draw: simulate 4000 runs at once
    # of 3 correlated statistics over B + 1 = 100 rows and check the rejection rate.
    rng = np.random.default_rng(4)
    runs, rows = 4000, 100
    common = rng.normal(size=(runs, rows, 1))
    scores = common + 0.7 * rng.normal(size=(runs, rows, 3))
    rejections = sum(combine_min_p(s, alpha=0.05).combined_p_value <= 0.05 for s in scores)
    rate = rejections / runs
    assert 0.035 <= rate <= 0.065  # 99.9% binomial interval around 0.05 at 4000 runs
    # Bonferroni over the same runs is strictly more conservative on correlated metrics.
    bonf = np.mean([rank_p_values(s)[0].min() * 3 <= 0.05 for s in scores])
    assert bonf < rate
