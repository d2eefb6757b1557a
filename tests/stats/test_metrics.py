"""Metric values against independent implementations, properties, and messages."""

from __future__ import annotations

import dcor
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embdrift.errors import (
    DimensionMismatchError,
    EmbeddingTypeError,
    InsufficientDataError,
    InvalidEmbeddingsError,
    InvalidParameterError,
)
from embdrift.stats import (
    energy_distance,
    js_divergence_hist,
    kl_divergence_hist,
    median_bandwidth,
    mmd2_unbiased,
    sliced_wasserstein,
    wasserstein_1d,
)


def _mmd2_plain(x: np.ndarray, y: np.ndarray, h: float) -> float:
    """Gretton et al. (2012) Eq. (3), written as plain double loops."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * h * h)))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_plain_double_loop() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(23, 5))
    y = rng.normal(0.3, 1.2, size=(31, 5))
    h = 1.7
    # Inputs are float32 inside embdrift: compare against the loop on the same float32 values.
    expected = _mmd2_plain(
        x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64), h
    )
    assert mmd2_unbiased(x, y, bandwidth=h) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_energy_matches_dcor_multivariate() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.standard_t(4, size=(45, 8)).astype(np.float32)
    expected = dcor.energy_distance(x.astype(np.float64), y.astype(np.float64))
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_energy_1d_is_square_of_scipy() -> None:
    rng = np.random.default_rng(3)
    u = rng.exponential(size=70).astype(np.float32).astype(np.float64)
    v = rng.normal(1, 2, size=40).astype(np.float32).astype(np.float64)
    expected = scipy.stats.energy_distance(u, v) ** 2
    assert energy_distance(u[:, None], v[:, None]) == pytest.approx(expected, rel=1e-9)


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    u = rng.normal(size=101)
    v = rng.gamma(2.0, size=57)
    assert wasserstein_1d(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12)


def test_sliced_is_mean_of_scipy_columns() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3)).astype(np.float32).astype(np.float64)
    y = rng.normal(0.5, 1, size=(30, 3)).astype(np.float32).astype(np.float64)
    expected = np.mean([scipy.stats.wasserstein_distance(x[:, j], y[:, j]) for j in range(3)])
    assert sliced_wasserstein(x, y) == pytest.approx(expected, rel=1e-12)


def test_kl_and_js_match_scipy_entropy_on_smoothed_histograms() -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(size=300)
    cur = rng.normal(0.4, 1.3, size=200)
    edges = np.array([-1.5, -0.5, 0.0, 0.5, 1.5])
    s = 0.5
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    p = (np.histogram(ref, bins=full)[0] + s) / (ref.size + 6 * s)
    q = (np.histogram(cur, bins=full)[0] + s) / (cur.size + 6 * s)
    assert kl_divergence_hist(ref, cur, edges=edges, smoothing=s) == pytest.approx(
        scipy.stats.entropy(q, p), rel=1e-12
    )
    js = scipy.spatial.distance.jensenshannon(p, q) ** 2  # scipy returns the square root
    assert js_divergence_hist(ref, cur, edges=edges, smoothing=s) == pytest.approx(js, rel=1e-9)
    assert js_divergence_hist(ref, cur, edges=edges, smoothing=s) <= np.log(2)


def test_median_bandwidth_is_median_pairwise_distance() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    expected = np.median(scipy.spatial.distance.pdist(x.astype(np.float64)))
    assert median_bandwidth(x) == pytest.approx(expected, rel=1e-6)


matrices = arrays(
    np.float64,
    st.tuples(st.integers(3, 12), st.integers(1, 4)),
    elements=st.floats(-10, 10, allow_nan=False, width=32),
)


@settings(max_examples=40, deadline=None)
@given(matrices, st.randoms(use_true_random=False))
def test_properties_self_distance_and_row_order(x: np.ndarray, rnd: object) -> None:
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-9)
    assert wasserstein_1d(x[:, 0], x[:, 0]) == pytest.approx(0.0, abs=1e-9)
    # Unbiased MMD² of a sample against itself lies in [-2/n, 0].
    if np.ptp(x) > 0:
        n = x.shape[0]
        assert -2.0 / n - 1e-9 <= mmd2_unbiased(x, x, bandwidth=1.0) <= 1e-9
    perm = np.random.default_rng(abs(hash(str(rnd))) % 2**32).permutation(x.shape[0])
    y = x[::-1] + 0.5
    assert energy_distance(x[perm], y) == pytest.approx(energy_distance(x, y), rel=1e-9, abs=1e-9)
    assert sliced_wasserstein(x[perm], y) == pytest.approx(sliced_wasserstein(x, y), abs=1e-9)
    assert mmd2_unbiased(x[perm], y, bandwidth=2.0) == pytest.approx(
        mmd2_unbiased(x, y, bandwidth=2.0), abs=1e-9
    )


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, st.integers(2, 40), elements=st.floats(-5, 5, width=32)),
    st.floats(-3, 3),
)
def test_wasserstein_of_a_translation_is_the_shift(u: np.ndarray, shift: float) -> None:
    assert wasserstein_1d(u, u + shift) == pytest.approx(abs(shift), abs=1e-6)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.zeros((0, 3)), InvalidEmbeddingsError, "at least one row"),
        (np.zeros(5), InvalidEmbeddingsError, "2-D array"),
        (np.zeros((2, 2, 2)), InvalidEmbeddingsError, "got 3-D"),
        ([[1.0, 2.0], [3.0]], InvalidEmbeddingsError, "ragged"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), InvalidEmbeddingsError, "NaN or inf"),
        (np.array([["a", "b"], ["c", "d"]]), EmbeddingTypeError, "real numbers"),
        (np.ones((1, 2)), InsufficientDataError, "at least 2 rows"),
    ],
)
def test_bad_input_messages(x: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        mmd2_unbiased(x, np.ones((3, 2)), bandwidth=1.0)  # type: ignore[arg-type]


def test_dimension_mismatch_and_bad_bandwidth() -> None:
    with pytest.raises(DimensionMismatchError, match="must have 3 dimensions"):
        energy_distance(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(InvalidParameterError, match="'bandwidth'"):
        mmd2_unbiased(np.ones((3, 3)), np.ones((3, 3)), bandwidth=0.0)
    with pytest.raises(ValueError, match="sorted ascending"):
        kl_divergence_hist([1.0], [2.0], edges=[1.0, 0.0])
