"""embdrift.outcomes: planted truth, false-alarm rates over seeded runs, item-level regions and
bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import stats
from sklearn.neighbors import NearestNeighbors

import embdrift.outcomes as outcomes_module
from embdrift.errors import (
    InsufficientDataError,
    InvalidParameterError,
    InvalidSeriesError,
    SeriesAlignmentError,
    TimestampOrderError,
    UnknownDirectionError,
)
from embdrift.outcomes import Series, analyze, bad_direction, parse_duration, region_rates
from embdrift.stats.association import SpikePatterns, episode_permutations
from embdrift.stats.permutation import rank_p_values
from embdrift.synthetic import World
from embdrift.synthetic_outcomes import OutcomeSpec, simulate_items, simulate_outcomes

ALPHA = 0.05
AFFECTED = {"success_rate": 2, "no_answer_rate": 1}  # name -> planted lag (DEFAULT_OUTCOMES)
UNAFFECTED = ("click_through", "escalation_rate")


@pytest.fixture(scope="module")
def planted_runs():
    """200 seeded runs of the default planted world, analysed once for several tests."""
    sim = simulate_outcomes(200, seed=1)
    results = []
    for i in range(200):
        drift, outs = sim.run(i)
        results.append(analyze(drift, outs, bucket="1h", max_lag=6, alpha=ALPHA))
    return sim, results


def test_planted_truth_affected_ranked_first_with_their_lag(planted_runs):
    _, results = planted_runs
    top_two = [set(r.ranking[i].name for i in range(2)) for r in results]
    assert np.mean([t == set(AFFECTED) for t in top_two]) >= 0.9
    for name, lag in AFFECTED.items():
        effects = [r.effect(name) for r in results]
        assert np.mean([e.degraded for e in effects]) >= 0.85, name
        assert np.mean([e.lag == lag for e in effects]) >= 0.9, name


def test_planted_effect_covered_by_its_interval(planted_runs):
    sim, results = planted_runs
    truth = {s.name: s.effect for s in sim.specs}
    for name in AFFECTED:
        hits = [
            e.ci_low <= truth[name] <= e.ci_high
            for e in (r.effect(name) for r in results)
            if e.lag == AFFECTED[name]
        ]
        # 95% intervals; 200 runs give a Monte-Carlo sd of ~1.6 points.
        assert np.mean(hits) >= 0.89, (name, np.mean(hits))


def test_unaffected_outcomes_flagged_at_most_alpha(planted_runs):
    _, results = planted_runs
    for name in UNAFFECTED:
        rate = np.mean([r.effect(name).degraded for r in results])
        assert rate <= ALPHA, (name, rate)


def test_false_alarm_rate_over_300_null_runs_and_the_cost_of_a_naive_lag_search():
    # Strong autocorrelation (phi 0.85) and seasonality, no effect at all.
    specs = (
        OutcomeSpec("click_through", 0.25, 0.03, 0.012, 0.7),
        OutcomeSpec("escalation_rate", 0.03, 0.006, 0.004, 0.85),
    )
    n_runs, max_lag = 300, 6
    sim = simulate_outcomes(n_runs, seed=7, specs=specs)
    raw, adjusted, naive = [], [], []
    for i in range(n_runs):
        drift, outs = sim.run(i)
        res = analyze(drift, outs, bucket="1h", max_lag=max_lag, alpha=ALPHA)
        raw.append([res.effect(n).p_value_raw for n in UNAFFECTED])
        adjusted.append([res.effect(n).degraded for n in UNAFFECTED])
        # Naive: one p-value per lag, then keep the best lag (the search is not paid for).
        x = res.spikes.astype(float)
        dv = np.isfinite(res.drift)
        y = res.outcome_values["escalation_rate"]
        phase = ((res.times % 86400) // 3600).astype(int)
        pats = np.vstack([x, episode_permutations(x, dv, 199, np.random.default_rng(i))])
        scores = SpikePatterns(pats, dv, phase, 24).scores(
            y, np.isfinite(y), sign=1.0, max_lag=max_lag
        )
        naive.append(rank_p_values(scores)[0].min())
    # The decision (min-p adjusted across the outcomes): each flagged in at most alpha of runs.
    flagged = np.array(adjusted)
    assert np.all(flagged.mean(axis=0) <= ALPHA), flagged.mean(axis=0)
    assert flagged.any(axis=1).mean() <= ALPHA + 0.01  # family-wise, up to Monte-Carlo error
    # Each outcome's own p-value: its false-alarm count is consistent with alpha (one-sided
    # binomial test at 1%) at the 5% and the 1% level.
    raw = np.array(raw, dtype=float)
    for level in (ALPHA, 0.01):
        for hits in (raw <= level).sum(axis=0):
            assert stats.binomtest(int(hits), n_runs, level, alternative="greater").pvalue > 0.01
    assert np.mean(np.array(naive) <= ALPHA) > 2 * ALPHA  # why the search sits inside


def test_json_has_the_documented_fields(planted_runs):
    _, results = planted_runs
    data = json.loads(results[0].to_json())
    assert data["alpha"] == ALPHA
    for item in data["outcomes"]:
        assert {"name", "degraded", "effect", "p_value", "lag"} <= set(item)
        assert {"value", "ci_low", "ci_high", "level"} <= set(item["effect"])
    assert [o["name"] for o in data["outcomes"]][:2] == list(results[0].degraded)[:2]


def test_unequal_sampling_and_gaps_are_aligned_and_reported():
    sim = simulate_outcomes(1, seed=3)
    drift, outs = sim.run(0)
    rng = np.random.default_rng(0)
    # Drift every 15 minutes (interpolated), success every hour with 10% of hours missing.
    t15 = np.arange(drift.time[0], drift.time[-1] + 1, 900.0)
    d15 = np.interp(t15, drift.time, drift.value, right=drift.value[-1])
    d15 = np.repeat(drift.value, 4)[: t15.size]
    keep = rng.random(outs[0].time.size) > 0.1
    success = Series.from_arrays("success_rate", outs[0].time[keep], outs[0].value[keep])
    res = analyze(Series.from_arrays("drift", t15, d15), [success], bucket="1h")
    cov = {c.name: c for c in res.coverage}
    assert cov["drift"].points_per_bucket == 4
    assert cov["success_rate"].buckets_filled == keep.sum()
    assert cov["success_rate"].coverage == pytest.approx(keep.mean(), abs=1 / 336)
    e = res.effect("success_rate")
    assert e.degraded and e.lag == 2
    # count-weighted buckets: two points in a bucket with counts 1 and 3 -> weighted mean.
    t = np.array([0.0, 60.0, 3600.0, 7200.0])
    s = Series.from_arrays("ctr", t, [1.0, 0.0, 0.5, 0.5], count=[1, 3, 1, 1])
    d = Series.from_arrays("drift", [0.0, 3600.0, 7200.0], [1.0, 1.0, 1.0])
    small = analyze(d, [s], bucket="1h", season=None)
    assert small.outcome_values["ctr"][0] == pytest.approx(0.25)


def test_spikes_from_stored_decisions():
    sim = simulate_outcomes(1, seed=4)
    drift, outs = sim.run(0)
    flagged = Series.from_arrays("drift", drift.time, drift.value, drifted=sim.spikes[0])
    res = analyze(flagged, outs, bucket="1h", spikes="decision")
    assert np.array_equal(res.spikes, sim.spikes[0])
    assert set(res.degraded) == set(AFFECTED)
    with pytest.raises(InvalidParameterError, match="drifted"):
        analyze(drift, outs, bucket="1h", spikes="decision")


def test_item_level_planted_new_cluster_found_with_its_rate_in_its_interval():
    rng = np.random.default_rng(0)
    world = World.make(dim=64, seed=12345)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    ref_x, _ = world.sample(3000, weights=base / base.sum(), seed=rng)
    cur_w = base / base.sum() * 0.95
    cur_w[-1] = 0.05
    cur_x, cur_labels = world.sample(3000, weights=cur_w, seed=rng)
    new = cur_labels == world.centers.shape[0] - 1
    true_rate, base_rate = 0.31, 0.07
    cur_y = (rng.random(3000) < np.where(new, true_rate, base_rate)).astype(int)
    ref_y = (rng.random(3000) < base_rate).astype(int)
    # Find the region without the labels: current items far from every reference item.
    nn = NearestNeighbors(n_neighbors=2).fit(ref_x)
    ref_d = nn.kneighbors(ref_x)[0][:, 1]
    cur_d = nn.kneighbors(cur_x, n_neighbors=1)[0][:, 0]
    regions = np.where(cur_d > np.quantile(ref_d, 0.999), "new cluster", "known")
    found = regions == "new cluster"
    assert (found & new).sum() / new.sum() >= 0.95 and (found & new).sum() / found.sum() >= 0.9
    report = region_rates(regions, cur_y, ref_y, name="no_answer_rate")
    top = report.regions[0]
    assert top.region == "new cluster" and top.worse
    assert top.ci_low <= true_rate <= top.ci_high
    assert top.share == pytest.approx(new.mean(), abs=0.01)
    assert report.reference_low <= base_rate <= report.reference_high
    assert not report.regions[1].worse
    assert "new cluster" in report.describe()[0] and "reference" in report.describe()[0]


def test_region_rates_wilson_coverage_over_seeded_runs():
    hits = []
    for seed in range(300):
        regions, cur, ref = simulate_items(n_current=2000, seed=seed)
        rep = region_rates(regions, cur, ref, name="no_answer", alpha=0.05)
        r3 = next(r for r in rep.regions if r.region == "3")
        hits.append(r3.ci_low <= 0.31 <= r3.ci_high)
    assert 0.92 <= np.mean(hits) <= 0.98


def test_region_rates_numeric_outcome_and_direction():
    rng = np.random.default_rng(1)
    regions = np.array(["a"] * 200 + ["b"] * 200)
    cur = np.r_[rng.normal(4.0, 1, 200), rng.normal(3.0, 1, 200)]
    ref = rng.normal(4.0, 1, 500)
    rep = region_rates(regions, cur, ref, name="satisfaction")
    assert rep.kind == "mean" and rep.bad_direction == "down"
    assert rep.regions[0].region == "b" and rep.regions[0].worse
    assert not rep.regions[1].worse


def test_region_rates_numeric_outcomes_without_spread():
    # Welch's t is undefined when neither side varies; the difference is then certain, and the
    # exact permutation test of the region mean gives p = 1 / C(n + m, n) in the bad direction.
    regions = np.array(["a"] * 3 + ["b"] * 2)
    cur = np.array([1.0, 1.0, 1.0, 9.0, 9.0])
    ref = np.full(4, 5.0)
    rep = region_rates(regions, cur, ref, name="satisfaction", alpha=0.2)
    by = {r.region: r for r in rep.regions}
    # Independent reference: enumerate every split of the pooled values (one-sided, lower).
    for key, n in (("a", 3), ("b", 2)):
        pooled = np.r_[cur[regions == key], ref]
        obs = pooled[:n].mean()
        means = [pooled[list(c)].mean() for c in itertools.combinations(range(pooled.size), n)]
        assert by[key].p_value == pytest.approx(np.mean(np.array(means) <= obs + 1e-12))
    assert by["a"].worse and by["a"].difference == -4.0
    assert by["b"].p_value == 1.0 and not by["b"].worse
    # A numeric outcome with one reference item has no spread to compare against.
    with pytest.raises(InsufficientDataError, match="reference_outcome"):
        region_rates(regions, cur, np.array([5.0]), name="satisfaction")


def test_default_directions_and_overrides():
    assert bad_direction("retrieval_success_rate") == "down"
    assert bad_direction("click_through") == "down"
    assert bad_direction("ctr") == "down"
    assert bad_direction("csat_satisfaction") == "down"
    assert bad_direction("no_answer_rate") == "up"
    assert bad_direction("escalation_rate") == "up"
    assert bad_direction("latency_p99", {"latency_p99": "up"}) == "up"
    with pytest.raises(UnknownDirectionError, match=r"latency_p99.*'up'"):
        bad_direction("latency_p99")
    with pytest.raises(UnknownDirectionError, match="sideways"):
        bad_direction("x", {"x": "sideways"})


def _sim_one():
    sim = simulate_outcomes(1, seed=5)
    return sim.run(0)


def test_bad_input_errors_name_the_problem():
    drift, outs = _sim_one()
    t, v = drift.time, drift.value
    with pytest.raises(TimestampOrderError, match="strictly increasing.*row 3"):
        Series.from_arrays("drift", t[[0, 1, 3, 2]], v[:4])
    with pytest.raises(TimestampOrderError, match="repeats"):
        Series.from_arrays("drift", t[[0, 1, 1]], v[:3])
    with pytest.raises(InvalidSeriesError, match="NaN.*row 2"):
        Series.from_arrays("drift", t[:4], [1.0, 2.0, np.nan, 1.0])
    with pytest.raises(InvalidSeriesError, match="empty"):
        Series.from_arrays("drift", [], [])
    with pytest.raises(InvalidSeriesError, match="one value per timestamp"):
        Series.from_arrays("drift", t[:4], v[:3])
    with pytest.raises(InvalidSeriesError, match="not a timestamp"):
        Series.from_arrays("drift", ["2026-01-01", "yesterday"], [1, 2])
    with pytest.raises(InvalidSeriesError, match="outcomes is empty"):
        analyze(drift, {})
    with pytest.raises(UnknownDirectionError, match="latency"):
        analyze(drift, {"latency": (t, v)}, bucket="1h")
    with pytest.raises(InvalidParameterError, match="'bucket'"):
        analyze(drift, outs, bucket="fortnight")
    with pytest.raises(InvalidParameterError, match="'max_lag'"):
        analyze(drift, outs, max_lag=-1)
    # Misaligned: the outcome is a year later.
    late = Series.from_arrays("success_rate", outs[0].time + 365 * 86400, outs[0].value)
    with pytest.raises(SeriesAlignmentError, match="no outcome overlaps"):
        analyze(drift, [late], bucket="1h")


def test_missing_datetime64_timestamps_are_refused():
    # NaT casts to int64 as -2**63 ns, a finite time in 1677: the point was accepted, then
    # dropped as outside the drift span (an outcome) or blew up the grid (the drift).
    t = np.array(["2026-01-05T00:00", "NaT", "2026-01-05T01:00"], dtype="datetime64[m]")
    with pytest.raises(InvalidSeriesError, match="row 1.*missing"):
        Series.from_arrays("success_rate", t, [0.8, 0.7, 0.9])
    with pytest.raises(InvalidSeriesError, match="row 0.*missing"):
        Series.from_arrays("success_rate", t[[1, 0, 2]], [0.8, 0.7, 0.9])


def test_not_enough_data_is_reported_not_raised():
    drift, outs = _sim_one()
    # Constant drift: no spikes.
    flat = Series.from_arrays("drift", drift.time, np.full(drift.time.size, 0.02))
    res = analyze(flat, outs, bucket="1h")
    assert all(e.status == "no spikes" and not e.degraded for e in res.ranking)
    assert any("constant" in n for n in res.notes)
    # Constant outcome.
    const = Series.from_arrays("success_rate", outs[0].time, np.full(outs[0].time.size, 0.8))
    res = analyze(drift, [const, outs[1]], bucket="1h")
    assert res.effect("success_rate").status == "constant"
    assert res.effect("no_answer_rate").status == "ok"
    # A short series: fewer aligned buckets than min_buckets.
    spike_at = int(np.flatnonzero(drift.value > 0.05)[0])
    cut = slice(spike_at - 8, spike_at + 7)
    short_drift = Series.from_arrays("drift", drift.time[cut], drift.value[cut])
    short_outcome = Series.from_arrays("success_rate", outs[0].time[cut], outs[0].value[cut])
    short = analyze(short_drift, [short_outcome], bucket="1h")
    e = short.effect("success_rate")
    assert e.status == "not enough data" and e.p_value is None and not e.degraded
    assert "15 bucket(s) with both drift and outcome; need 20" in e.message
    # A lag search wider than min_buckets allows: the message names what is needed.
    wide = analyze(short_drift, [short_outcome], bucket="1h", min_buckets=3, max_lag=15)
    assert (
        "15 bucket(s) with both drift and outcome; need 18" in wide.effect("success_rate").message
    )
    # An outcome outside the drift span next to one inside: reported for that one only.
    late = Series.from_arrays("ctr", outs[0].time + 365 * 86400, outs[0].value)
    mixed = analyze(drift, [outs[0], late], bucket="1h")
    assert mixed.effect("ctr").status == "not enough data"
    assert "drift span" in mixed.effect("ctr").message
    assert mixed.ranking[-1].name == "ctr"
    assert json.loads(mixed.to_json())["outcomes"][-1]["p_value"] is None


def test_seasonality_skipped_and_noted_for_short_spans():
    drift, outs = _sim_one()
    n = 48
    res = analyze(
        Series.from_arrays("drift", drift.time[:n], drift.value[:n]),
        [Series.from_arrays("success_rate", outs[0].time[:n], outs[0].value[:n])],
        bucket="1h",
    )
    assert res.n_phases == 1
    assert any("seasonality not adjusted" in note for note in res.notes)


def test_inputs_are_not_modified_and_results_are_deterministic():
    drift, outs = _sim_one()
    before = [o.value.copy() for o in outs]
    a = analyze(drift, outs, bucket="1h").to_json()
    b = analyze(drift, outs, bucket="1h").to_json()
    assert a == b
    assert all(np.array_equal(o.value, v) for o, v in zip(outs, before, strict=True))
    sub = analyze(drift, outs, bucket="1h", n_permutations=99, seed=3)
    assert sub.n_permutations == 99
    assert sub.to_json() == analyze(drift, outs, bucket="1h", n_permutations=99, seed=3).to_json()
    assert sub.to_json() != analyze(drift, outs, bucket="1h", n_permutations=99, seed=4).to_json()
    with pytest.raises(InvalidParameterError, match="n_permutations"):
        analyze(drift, outs, n_permutations=5)


def test_parse_duration_and_time_formats():
    assert parse_duration("15min") == 900.0
    assert parse_duration("1h") == 3600.0
    assert parse_duration("2d") == 172800.0
    assert parse_duration(30) == 30.0
    for bad in ("0h", "-1h", "h", True, None):
        with pytest.raises(InvalidParameterError):
            parse_duration(bad)
    iso = Series.from_arrays("x", ["2026-01-05T00:00:00Z", "2026-01-05T01:00:00"], [1, 2])
    dt64 = Series.from_arrays(
        "x", np.array(["2026-01-05T00:00", "2026-01-05T01:00"], dtype="datetime64[m]"), [1, 2]
    )
    assert np.array_equal(iso.time, dt64.time)
    assert iso.time[0] == 1767571200.0


def test_all_is_the_public_api():
    public = {n for n in dir(outcomes_module) if not n.startswith("_")}
    defined = {
        n
        for n in public
        if getattr(getattr(outcomes_module, n), "__module__", None) == "embdrift.outcomes"
    }
    assert defined | {"DIRECTION_RULES"} == set(outcomes_module.__all__)


@pytest.mark.parametrize(("scale", "shift"), [(2.0, 0.0), (0.01, 5.0), (100.0, -3.0)])
def test_affine_changes_of_an_outcome_only_rescale_its_effect(scale, shift):
    drift, outs = _sim_one()
    base = analyze(drift, outs[:2], bucket="1h", seed=0)
    moved = [Series.from_arrays(o.name, o.time, scale * o.value + shift) for o in outs[:2]]
    res = analyze(drift, moved, bucket="1h", seed=0)
    for name in ("success_rate", "no_answer_rate"):
        a, b = base.effect(name), res.effect(name)
        assert (a.lag, a.degraded) == (b.lag, b.degraded)
        assert b.p_value == pytest.approx(a.p_value)
        assert b.effect == pytest.approx(scale * a.effect, rel=1e-6)
        assert b.ci_low == pytest.approx(scale * a.ci_low, rel=1e-6)
        assert b.standardized_effect == pytest.approx(a.standardized_effect, rel=1e-6)
    # Negating an outcome and its bad direction changes nothing but the sign of the effect.
    flipped = Series.from_arrays("success_rate", outs[0].time, -outs[0].value)
    res = analyze(drift, [flipped, outs[1]], bucket="1h", seed=0, directions={"success_rate": "up"})
    a, b = base.effect("success_rate"), res.effect("success_rate")
    assert b.p_value == pytest.approx(a.p_value) and b.lag == a.lag
    assert b.effect == pytest.approx(-a.effect, rel=1e-6)
