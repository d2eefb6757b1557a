"""embdrift.stats.association against independent references (numpy least squares, scipy,
published values) and properties."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import embdrift.stats.association as assoc
from embdrift.stats.association import (
    SpikePatterns,
    episode_permutations,
    holm,
    lag_effect,
    lag_permutation_test,
    mean_interval,
    newcombe_interval,
    robust_spikes,
    welch_interval,
    wilson_interval,
)


def _ols_t(x, y, w, phase, n_phases):
    """t statistic and slope of y on x with one intercept per phase (numpy lstsq)."""
    keep = w.astype(bool)
    used = np.unique(phase[keep])
    design = np.column_stack([x[keep]] + [(phase[keep] == p).astype(float) for p in used])
    coef, *_ = np.linalg.lstsq(design, y[keep], rcond=None)
    resid = y[keep] - design @ coef
    df = keep.sum() - design.shape[1]
    cov = (resid @ resid / df) * np.linalg.inv(design.T @ design)
    return coef[0] / np.sqrt(cov[0, 0]), coef[0]


def _problem(seed, t_len=240, n_phases=12):
    rng = np.random.default_rng(seed)
    x = (rng.random(t_len) < 0.15).astype(float)
    xv = rng.random(t_len) > 0.05
    y = 3.0 + rng.normal(size=t_len) + 0.5 * np.sin(np.arange(t_len))
    yv = rng.random(t_len) > 0.1
    phase = np.arange(t_len) % n_phases
    return x, xv, y, yv, phase


def _patterns(x, xv, n, seed):
    return np.vstack([x, episode_permutations(x, xv, n, np.random.default_rng(seed))])


@pytest.mark.parametrize("lag", [0, 1, 5])
def test_pattern_scores_match_least_squares_with_phase_intercepts(lag):
    x, xv, y, yv, phase = _problem(lag)
    pats = _patterns(x, xv, 5, lag)
    sp = SpikePatterns(pats, xv, phase, 12)
    scores = sp.scores(y, yv, sign=-1.0, max_lag=5)
    t_len = x.size
    for b in range(pats.shape[0]):
        w = xv[: t_len - lag] & yv[lag:]
        t_ref, _ = _ols_t(pats[b, : t_len - lag], y[lag:], w, phase[lag:], 12)
        assert scores[b, lag] == pytest.approx(-t_ref, rel=1e-7)


def test_episode_permutations_keep_the_episodes_and_respect_gaps():
    rng = np.random.default_rng(0)
    x = np.zeros(200)
    for start, length in ((10, 3), (50, 1), (120, 5), (170, 2)):
        x[start : start + length] = 1
    valid = rng.random(200) > 0.1
    x[~valid] = 0
    pats = episode_permutations(x, valid, 300, np.random.default_rng(1))
    assert pats.shape == (300, 200)
    assert np.all(pats.sum(axis=1) == x.sum())
    assert not pats[:, ~valid].any()
    assert len({row.tobytes() for row in pats}) > 290
    again = episode_permutations(x, valid, 300, np.random.default_rng(1))
    assert np.array_equal(pats, again)


def test_episode_permutations_draw_every_block_order_equally():
    # Independent reference: lay out all 5! orders of the blocks (runs 11 and 1, three single
    # baseline buckets) over the valid buckets; patterns are drawn with those frequencies.
    x = np.array([1, 1, 0, 1, 0, 0, 0], dtype=float)
    valid = np.array([1, 1, 1, 1, 0, 1, 1], dtype=bool)
    blocks = [(1, 1), (1,), (0,), (0,), (0,)]
    expected = Counter(
        tuple(v for i in order for v in blocks[i])
        for order in itertools.permutations(range(len(blocks)))
    )
    n = 20000
    pats = episode_permutations(x, valid, n, np.random.default_rng(0))
    assert not pats[:, ~valid].any()
    got = Counter(tuple(int(v) for v in row[valid]) for row in pats)
    assert set(got) <= set(expected)
    keys = sorted(expected)
    probs = np.array([expected[k] for k in keys]) / sum(expected.values())
    observed = np.array([got[k] for k in keys])
    assert stats.chisquare(observed, probs * n).pvalue > 1e-3


def test_lag_effect_is_the_phase_adjusted_slope_and_plain_difference_without_phases():
    x, xv, y, yv, phase = _problem(3)
    lag = 2
    eff = lag_effect(x, xv, y, yv, lag=lag, phase=phase, n_phases=12)
    w = xv[:-lag] & yv[lag:]
    _, slope = _ols_t(x[:-lag], y[lag:], w, phase[lag:], 12)
    assert eff.effect == pytest.approx(slope, rel=1e-9)
    flat = np.zeros_like(phase)
    plain = lag_effect(x, xv, y, yv, lag=lag, phase=flat, n_phases=1)
    xs, ys = x[:-lag][w], y[lag:][w]
    assert plain.effect == pytest.approx(ys[xs == 1].mean() - ys[xs == 0].mean(), rel=1e-9)
    assert plain.n_spike == int((xs == 1).sum())
    assert plain.n_baseline == int((xs == 0).sum())


def test_interval_is_exact_without_noise():
    # y = season + beta * (x at the lag): every hypothesis but beta is rejected.
    rng = np.random.default_rng(0)
    t_len, lag, beta = 300, 3, -0.7
    x = (rng.random(t_len) < 0.1).astype(float)
    phase = np.arange(t_len) % 24
    valid = np.ones(t_len, dtype=bool)
    y = np.sin(2 * np.pi * phase / 24)
    y[lag:] += beta * x[:-lag]
    sp = SpikePatterns(_patterns(x, valid, 200, 0), valid, phase, 24)
    lo, hi = sp.interval(y, valid, lag=lag, alpha=0.05)
    assert lo == pytest.approx(beta, abs=1e-9)
    assert hi == pytest.approx(beta, abs=1e-9)


def test_lag_test_pays_for_the_lag_search_and_adjusts_across_outcomes():
    x, xv, _, _, phase = _problem(11, t_len=400)
    rng = np.random.default_rng(5)
    ys = rng.normal(size=(3, 400))
    valid = np.ones(400, dtype=bool)
    sp = SpikePatterns(_patterns(x, xv, 199, 2), xv, phase, 12)
    scores = np.stack([sp.scores(y, valid, sign=1.0, max_lag=8) for y in ys], axis=1)
    one = lag_permutation_test(scores[:, :, :1])
    many = lag_permutation_test(scores)
    # max over more lags can only make the observed statistic larger...
    assert np.all(many.statistic >= one.statistic)
    assert np.array_equal(many.lag, scores[0].argmax(axis=1))
    # ...and p-values stay valid probabilities with the observed counted once.
    assert np.all(many.p_values >= 1 / 200) and np.all(many.p_values <= 1.0)
    assert np.all(many.p_adjusted >= many.p_values - 1e-12)
    single = lag_permutation_test(scores[:, :1])
    assert single.p_adjusted[0] == pytest.approx(single.p_values[0])
    holm_adj = lag_permutation_test(scores, correction="holm")
    assert np.allclose(holm_adj.p_adjusted, holm(holm_adj.p_values))
    assert many.n_permutations == 199


def test_robust_spikes_rule_and_constant_series():
    v = np.array([1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 9.0, 1.05, 0.95, np.nan])
    valid = np.isfinite(v)
    rule = robust_spikes(np.nan_to_num(v), valid, k=3.0)
    med = np.median(v[valid])
    mad = stats.median_abs_deviation(v[valid], scale="normal")
    assert rule.center == pytest.approx(med)
    assert rule.scale == pytest.approx(mad)
    assert rule.spikes.tolist() == [False] * 6 + [True] + [False] * 3
    flat = robust_spikes(np.ones(10), np.ones(10, dtype=bool), k=3.0)
    assert flat.scale == 0.0 and not flat.spikes.any()
    # More than half equal: the MAD is 0, the mean-absolute-deviation fallback still finds it.
    mostly = np.r_[np.zeros(8), 5.0, 0.1]
    assert robust_spikes(mostly, np.ones(10, dtype=bool), k=3.0).spikes.tolist() == (
        [False] * 8 + [True, False]
    )


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), frac=st.floats(0, 1), alpha=st.sampled_from([0.01, 0.05, 0.2]))
def test_wilson_matches_scipy(n, frac, alpha):
    k = int(round(frac * n))
    lo, hi = wilson_interval(k, n, alpha=alpha)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    assert float(lo) == pytest.approx(ref.low, abs=1e-12)
    assert float(hi) == pytest.approx(ref.high, abs=1e-12)


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), Statist. Med. 17, Table II, example (a) 56/70 - 48/80, method 10:
    # 0.0524 to 0.3339.
    lo, hi = newcombe_interval(56, 70, 48, 80, alpha=0.05)
    assert lo == pytest.approx(0.0524, abs=5e-5)
    assert hi == pytest.approx(0.3339, abs=5e-5)


def test_holm_known_values_and_properties():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    q = rng.random(20)
    adj = holm(q)
    assert np.all(adj >= q) and np.all(adj <= 1)
    order = np.argsort(q)
    assert np.all(np.diff(adj[order]) >= 0)


def test_mean_and_welch_intervals_match_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1, 2, size=40), rng.normal(0, 1, size=25)
    lo, hi = mean_interval(a, alpha=0.1)
    ref = stats.t.interval(0.9, a.size - 1, loc=a.mean(), scale=stats.sem(a))
    assert (lo, hi) == pytest.approx(ref, rel=1e-10)
    w_lo, w_hi = welch_interval(a, b, alpha=0.05)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (w_lo, w_hi) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_all_is_the_public_api():
    public = {n for n in dir(assoc) if not n.startswith("_")}
    assert set(assoc.__all__) <= public
    defined = {
        n
        for n in public
        if getattr(getattr(assoc, n), "__module__", None) == "embdrift.stats.association"
        and not isinstance(getattr(assoc, n), type(assoc))
    }
    assert defined == set(assoc.__all__)
