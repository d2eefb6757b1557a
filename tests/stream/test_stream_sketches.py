"""Sketches: mergeability (hypothesis), accuracy against exact values, round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from datasketches import kll_floats_sketch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embdrift.stream as stream_pkg
from embdrift.errors import (
    DimensionMismatchError,
    IncompatibleSketchError,
    InvalidEmbeddingsError,
    InvalidParameterError,
    SketchFormatError,
)
from embdrift.stats.metrics import mmd2_unbiased
from embdrift.stream import (
    MeanSketch,
    MomentSketch,
    ProjectionQuantiles,
    QuantileSketch,
    RFFMeanSketch,
    SketchSet,
    StreamBasis,
    WeightedReservoir,
    frechet_distance,
    rank_error,
)

# KLL is randomised inside the library (not seeded by us). Its per-query 99% rank error is
# rank_error(k); when checking every quantile of a grid at once we allow the library's
# PMF/all-queries error, as DataSketches documents for simultaneous queries.
_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _rows(world, n, seed, shift=0.0):
    x, _ = world.sample(n, weights=np.array([1.0, 1.0, 1.0, 1.0, 0.0]), seed=seed)
    return x + np.float32(shift)


def _split_points(n):
    return st.lists(st.integers(1, n - 1), min_size=1, max_size=4, unique=True).map(sorted)


def _parts(x, cuts):
    return np.split(x, cuts)


# ---------------------------------------------------------------------- mergeability
@_SETTINGS
@given(seed=st.integers(0, 10_000), cuts=_split_points(600))
def test_rff_moment_and_mean_sums_merge_exactly(world32, ref32, basis32, seed, cuts):
    x = _rows(world32, 600, seed)
    whole_rff = RFFMeanSketch(basis32).update(x)
    whole_mom = MomentSketch(basis32).update(x)
    whole_mean = MeanSketch(basis32).update(x)
    parts = _parts(x, cuts)
    rff = [RFFMeanSketch(basis32).update(p) for p in parts]
    mom = [MomentSketch(basis32).update(p) for p in parts]
    means = [MeanSketch(basis32).update(p) for p in parts]
    merged_rff, merged_mom, merged_mean = rff[0], mom[0], means[0]
    for r, m, a in zip(rff[1:], mom[1:], means[1:], strict=True):
        merged_rff.merge(r)
        merged_mom.merge(m)
        merged_mean.merge(a)
    assert merged_rff.count == whole_rff.count == merged_mom.count == merged_mean.count == 600
    np.testing.assert_allclose(merged_mean.centred_sum, whole_mean.centred_sum, atol=1e-9)
    np.testing.assert_allclose(
        whole_mean.centred_sum,
        (x.astype(np.float64) - ref32.projection.mean_).sum(axis=0),
        atol=1e-9,
    )
    np.testing.assert_allclose(merged_rff.feature_sum, whole_rff.feature_sum, rtol=0, atol=1e-9)
    np.testing.assert_allclose(merged_mom.mean, whole_mom.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(merged_mom.covariance, whole_mom.covariance, rtol=1e-9, atol=1e-9)


@_SETTINGS
@given(seed=st.integers(0, 10_000), cuts=_split_points(3000))
def test_kll_merge_within_rank_error(basis32, seed, cuts):
    rng = np.random.default_rng(seed)
    values = rng.standard_t(df=3, size=3000)
    merged = QuantileSketch(200)
    for part in _parts(values, cuts):
        merged.merge(QuantileSketch(200).update(part))
    assert merged.count == values.size
    ranks = np.linspace(0.01, 0.99, 41)
    found = merged.quantiles(ranks)
    ordered = np.sort(values.astype(np.float32))
    lo = np.searchsorted(ordered, found, side="left") / values.size
    hi = np.searchsorted(ordered, found, side="right") / values.size
    # The returned value's rank interval must come within epsilon of the requested rank.
    miss = np.maximum(lo - ranks, ranks - hi).clip(min=0)
    bound = kll_floats_sketch.get_normalized_rank_error(200, True)
    assert miss.max() <= bound
    assert bound < 0.02 and rank_error(200) < bound


@_SETTINGS
@given(seed=st.integers(0, 10_000), cuts=_split_points(400))
def test_reservoir_merge_is_a_sample_of_the_union(world32, seed, cuts):
    x = _rows(world32, 400, seed)
    ids = np.array([f"row{i}" for i in range(400)])
    merged = None
    for i, (part, pid) in enumerate(zip(_parts(x, cuts), _parts(ids, cuts), strict=True)):
        res = WeightedReservoir(50, seed=seed * 10 + i).update(part, ids=pid)
        merged = res if merged is None else merged.merge(res)
    assert merged is not None
    assert merged.count == 400 and merged.size == 50
    assert np.unique(merged.ids).size == 50
    index = np.array([int(s[3:]) for s in merged.ids])
    np.testing.assert_array_equal(merged.rows, x[index])  # each kept row travels with its id


def test_reservoir_inclusion_is_uniform_and_merge_keeps_it():
    # 3000 independent reservoirs of 5 rows out of 40 (two halves merged): each row's
    # inclusion count is Binomial(3000, 5/40); a chi-square test over rows checks it.
    reps, n, cap = 3000, 40, 5
    x = np.arange(n, dtype=np.float32)[:, None]
    counts = np.zeros(n)
    for r in range(reps):
        a = WeightedReservoir(cap, seed=2 * r).update(x[:17])
        b = WeightedReservoir(cap, seed=2 * r + 1).update(x[17:], ids=np.arange(17, n))
        counts[a.merge(b).ids.astype(int)] += 1
    expected = reps * cap / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert scipy.stats.chi2.sf(chi2, n - 1) > 1e-3


def test_weighted_reservoir_first_draw_is_proportional_to_weight():
    # With capacity 1, A-Res keeps row i with probability w_i / sum(w) (Efraimidis & Spirakis
    # 2006, Thm. 1 for one draw).
    weights = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    x = np.zeros((5, 2), dtype=np.float32)
    hits = np.zeros(5)
    for r in range(4000):
        res = WeightedReservoir(1, seed=r).update(x, weights=weights)
        hits[int(res.ids[0])] += 1
    test = scipy.stats.chisquare(hits, 4000 * weights / weights.sum())
    assert test.pvalue > 1e-3


# ---------------------------------------------------------------------- accuracy
def test_moments_match_numpy_on_exact_projections(world32, basis32):
    x = _rows(world32, 800, 5)
    sketch = MomentSketch(basis32).update(x[:300]).update(x[300:])
    z = basis32.exact_features(x).projections
    np.testing.assert_allclose(sketch.mean, z.mean(axis=0), atol=2e-5)
    np.testing.assert_allclose(sketch.covariance, np.cov(z, rowvar=False), atol=2e-5, rtol=1e-4)


def test_frechet_distance_matches_scipy_sqrtm_and_diagonal_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    ca, cb = a @ a.T, b @ b.T
    ma, mb = rng.normal(size=6), rng.normal(size=6)
    cross = scipy.linalg.sqrtm(scipy.linalg.sqrtm(ca) @ cb @ scipy.linalg.sqrtm(ca)).real
    expected = np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2 * cross)
    assert frechet_distance(ma, ca, mb, cb) == pytest.approx(expected, rel=1e-8)
    sx, sy = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    diag = frechet_distance(np.zeros(3), np.diag(sx**2), np.ones(3), np.diag(sy**2))
    assert diag == pytest.approx(3.0 + np.sum((sx - sy) ** 2))  # W2² of Gaussians, closed form
    assert frechet_distance(ma, ca, ma, ca) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("shift", [0.0, 0.04, 0.15])
def test_rff_mmd_within_its_stated_error_of_the_exact_kernel_mmd(world32, ref32, shift):
    basis = StreamBasis(ref32, n_frequencies=1024, n_projections=8, seed=4)
    x, y = _rows(world32, 500, 1), _rows(world32, 400, 2, shift=shift)
    exact = mmd2_unbiased(x, y, bandwidth=ref32.bandwidth)
    value, stderr = RFFMeanSketch(basis).update(x).mmd2_with_error(RFFMeanSketch(basis).update(y))
    assert abs(value - exact) <= 4 * stderr
    assert stderr < 0.2 * max(abs(exact), 1e-3)


def test_rff_features_have_unit_norm_and_approximate_the_kernel(world32, ref32):
    basis = StreamBasis(ref32, n_frequencies=4096, n_projections=4, seed=2)
    x = _rows(world32, 2, 3)
    f = basis.exact_features(x).angles
    phi = np.hstack([np.cos(f), np.sin(f)]) / np.sqrt(f.shape[1])
    np.testing.assert_allclose((phi**2).sum(axis=1), 1.0, atol=1e-12)
    exact = np.exp(-np.sum((x[0] - x[1]) ** 2) / (2 * ref32.bandwidth**2))
    # Hoeffding for one pair: |phi.phi - k| <= sqrt(2 ln(2/δ) / D), δ = 1e-4.
    assert abs(phi[0] @ phi[1] - exact) <= np.sqrt(2 * np.log(2e4) / 4096)


# ---------------------------------------------------------------------- serialisation
def test_round_trips_preserve_state_and_continue_identically(world32, basis32):
    x, y = _rows(world32, 500, 1), _rows(world32, 300, 2)
    full = SketchSet(basis32, quantile_k=64, reservoir_size=40, seed=3).update(x)
    back = SketchSet.from_bytes(full.to_bytes(), basis=basis32)
    assert back.count == full.count and back.quantile_k == 64
    np.testing.assert_array_equal(back.rff.feature_sum, full.rff.feature_sum)
    np.testing.assert_array_equal(back.moments.covariance, full.moments.covariance)
    for mine, theirs in zip(full.quantiles.projections, back.quantiles.projections, strict=True):
        np.testing.assert_array_equal(
            mine.quantiles([0.1, 0.5, 0.9]), theirs.quantiles([0.1, 0.5, 0.9])
        )
    # The reservoir's generator state travels too: both continue with the same draws.
    full.update(y)
    back.update(y)
    np.testing.assert_array_equal(full.reservoir.ids, back.reservoir.ids)
    np.testing.assert_array_equal(full.reservoir.rows, back.reservoir.rows)
    for cls in (RFFMeanSketch, MomentSketch, ProjectionQuantiles):
        part = getattr(
            full, {"RFFMeanSketch": "rff", "MomentSketch": "moments"}.get(cls.__name__, "quantiles")
        )
        again = cls.from_bytes(part.to_bytes(), basis=basis32)
        assert again.count == part.count
    q = QuantileSketch(50).update(np.arange(1000.0))
    assert QuantileSketch.from_bytes(q.to_bytes()).quantiles([0.5])[0] == q.quantiles([0.5])[0]


def test_serialised_bytes_are_checked(basis32, other_basis):
    data = RFFMeanSketch(basis32).update(np.zeros((3, 32), np.float32)).to_bytes()
    with pytest.raises(SketchFormatError, match="not a serialised embdrift"):
        RFFMeanSketch.from_bytes(b"hello world, not a sketch", basis=basis32)
    with pytest.raises(SketchFormatError, match="truncated or corrupt"):
        RFFMeanSketch.from_bytes(data[:-40], basis=basis32)
    with pytest.raises(SketchFormatError, match="MomentSketch.from_bytes|not a 'MomentSketch'"):
        MomentSketch.from_bytes(data, basis=basis32)
    with pytest.raises(IncompatibleSketchError, match=other_basis.reference_id):
        RFFMeanSketch.from_bytes(data, basis=other_basis)
    with pytest.raises(SketchFormatError, match="bytes from to_bytes"):
        RFFMeanSketch.from_bytes("text", basis=basis32)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- incompatible merges
def test_merging_sketches_of_two_references_names_both(basis32, other_basis):
    x = np.zeros((5, 32), np.float32)
    a = SketchSet(basis32, reservoir_size=5).update(x)
    b = SketchSet(other_basis, reservoir_size=5).update(x)
    with pytest.raises(IncompatibleSketchError) as info:
        a.merge(b)
    message = str(info.value)
    assert basis32.reference_id in message and other_basis.reference_id in message
    assert a.count == 5  # nothing half-merged
    with pytest.raises(IncompatibleSketchError, match="k=200 and k=100"):
        QuantileSketch(200).merge(QuantileSketch(100))
    with pytest.raises(IncompatibleSketchError, match="quantile_k, reservoir_size"):
        a.merge(SketchSet(basis32, quantile_k=64, reservoir_size=5))
    with pytest.raises(IncompatibleSketchError, match="capacity 5 and 6"):
        WeightedReservoir(5).merge(WeightedReservoir(6))
    with pytest.raises(TypeError, match="Cannot merge a MomentSketch with a RFFMeanSketch"):
        MomentSketch(basis32).merge(RFFMeanSketch(basis32))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- bad input
def test_bad_batches_are_rejected_without_changing_state(basis32):
    s = SketchSet(basis32, reservoir_size=10).update(np.zeros((4, 32), np.float32))
    before = s.to_bytes()
    bad = np.zeros((3, 32), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(InvalidEmbeddingsError, match="finite"):
        s.update(bad)
    with pytest.raises(DimensionMismatchError, match="32 dimensions"):
        s.update(np.zeros((3, 31)))
    with pytest.raises(InvalidEmbeddingsError, match="2-D"):
        s.update(np.zeros(32))
    with pytest.raises(InvalidParameterError, match="duplicate ids"):
        s.update(np.zeros((2, 32)), ids=["a", "a"])
    with pytest.raises(InvalidParameterError, match="one id per row"):
        s.update(np.zeros((2, 32)), ids=["a"])
    with pytest.raises(InvalidParameterError, match="finite positive"):
        s.update(np.zeros((2, 32)), weights=[1.0, -1.0])
    with pytest.raises(InvalidParameterError, match="'quantile_k'"):
        SketchSet(basis32, quantile_k=2)
    with pytest.raises(TypeError, match="StreamBasis"):
        RFFMeanSketch("basis")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="empty QuantileSketch"):
        QuantileSketch().quantiles([0.5])
    assert s.to_bytes() == before


def test_public_names_match_all():
    public = {
        n
        for n in dir(stream_pkg)
        if not n.startswith("_") and n[0].isupper() or n in stream_pkg.__all__
    }
    exported = set(stream_pkg.__all__)
    assert exported <= set(dir(stream_pkg))
    classes = {n for n in public if isinstance(getattr(stream_pkg, n), type)}
    assert classes <= exported
    for name in exported:
        assert repr(getattr(stream_pkg, name))


def test_stream_uses_the_reference_random_feature_draw(world32, ref32):
    """One source of truth: the stream's random Fourier features are the reference's frozen
    draw (the batch check's large-n features), extended by seeded draws only beyond it."""
    from embdrift.stats.twosample import random_fourier_features

    drawn = ref32.rff_frequencies.shape[1]
    x = _rows(world32, 300, 5)
    same = StreamBasis(ref32, n_frequencies=drawn, n_projections=4)
    batch = random_fourier_features(x, ref32.rff_frequencies, center=ref32.projection.mean_)
    sketch = RFFMeanSketch(same).update(x)
    np.testing.assert_allclose(sketch.feature_sum, batch.sum(axis=0), rtol=1e-5, atol=1e-4)
    fewer = StreamBasis(ref32, n_frequencies=drawn // 4, n_projections=4)
    np.testing.assert_array_equal(fewer._freq, same._freq[: drawn // 4])
    more = [StreamBasis(ref32, n_frequencies=2 * drawn, n_projections=4, seed=s) for s in (0, 1)]
    for basis in more:
        np.testing.assert_array_equal(basis._freq[:drawn], same._freq)
    assert not np.array_equal(more[0]._freq[drawn:], more[1]._freq[drawn:])
    # The extra frequencies come from the kernel's spectral density N(0, h^-2 I).
    extra = more[0]._freq[drawn:] * ref32.bandwidth
    assert abs(extra.std() - 1.0) < 0.05 and abs(extra.mean()) < 0.05
