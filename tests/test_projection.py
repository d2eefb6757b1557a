"""FrozenPCA: sign convention, frozen state, residuals against least squares."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from embdrift.errors import InvalidParameterError
from embdrift.projection import FrozenPCA
from embdrift.synthetic import make_scenario


def test_components_match_sklearn_up_to_sign() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) * np.linspace(3, 0.5, 12)
    ours = FrozenPCA(n_components=4).fit(x)
    theirs = PCA(n_components=4).fit(x.astype(np.float32).astype(np.float64))
    for a, b in zip(ours.components_, theirs.components_, strict=True):
        assert abs(float(a @ b)) == pytest.approx(1.0, abs=1e-6)
    assert ours.explained_variance_ == pytest.approx(theirs.explained_variance_, rel=1e-6)


def test_pc1_never_flips_when_aligned_to_the_previous_fit() -> None:
    flips_unaligned = 0
    for seed in range(30):
        a, b = make_scenario("none", n_reference=400, n_current=400, dim=64, seed=seed)
        pa = FrozenPCA(n_components=3).fit(a)
        pb = FrozenPCA(n_components=3).fit(b, align_to=pa)
        assert (np.einsum("kd,kd->k", pa.components_, pb.components_) > 0).all()
        flips_unaligned += float(pa.components_[0] @ FrozenPCA(3).fit(b).components_[0]) < 0
    # Synthetic clusters have no common direction: without alignment, flips do happen, which
    # is what makes this test able to fail.
    assert flips_unaligned > 0


def test_pc1_orientation_is_stable_on_real_embeddings(real_text: dict[str, np.ndarray]) -> None:
    emb = real_text["embeddings"]
    flips = largest_loading_flips = 0
    for seed in range(100):
        rows = np.random.default_rng(seed).choice(len(emb), 800, replace=False)
        pa = FrozenPCA(n_components=2).fit(emb[rows[:400]])
        pb = FrozenPCA(n_components=2).fit(emb[rows[400:]])
        flips += float(pa.components_[0] @ pb.components_[0]) < 0
        # scikit-learn's svd_flip rule (largest loading positive) on the same fits:
        va, vb = pa.components_[0], pb.components_[0]
        va = va * np.sign(va[np.argmax(np.abs(va))])
        vb = vb * np.sign(vb[np.argmax(np.abs(vb))])
        largest_loading_flips += float(va @ vb) < 0
    assert flips <= 3
    assert largest_loading_flips >= 25


def test_row_order_does_not_change_the_fit() -> None:
    x, _ = make_scenario("none", n_reference=200, dim=32, seed=1)
    pa = FrozenPCA(n_components=5).fit(x)
    pb = FrozenPCA(n_components=5).fit(x[::-1])
    np.testing.assert_allclose(pa.components_, pb.components_, atol=1e-8)


def test_residual_norm_matches_least_squares_projection() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 10))
    pca = FrozenPCA(n_components=3).fit(x)
    centered = x.astype(np.float32).astype(np.float64) - pca.mean_
    coef, *_ = np.linalg.lstsq(pca.components_.T, centered.T, rcond=None)
    expected = np.linalg.norm(centered - (pca.components_.T @ coef).T, axis=1)
    np.testing.assert_allclose(pca.residual_norm(x), expected, rtol=1e-6, atol=1e-9)


def test_scores_with_residuals_outside_a_wider_projection_take_one_pass() -> None:
    """Scores on the top 3 and residual norms outside the top 7 of one fit, in one call, equal
    the two projections' own results; a projection of another mean is refused."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    base = FrozenPCA(n_components=7).fit(x)
    top, wide = base.truncated(3), base.truncated(7)
    scores, residuals = top.scores_and_residuals(x, outside=wide)
    np.testing.assert_allclose(scores, top.transform(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(residuals, wide.residual_norm(x), rtol=1e-10, atol=1e-10)
    assert not np.allclose(residuals, top.residual_norm(x))
    other = FrozenPCA(n_components=7).fit(x + 1.0)
    with pytest.raises(InvalidParameterError, match="same mean"):
        top.scores_and_residuals(x, outside=other)


def test_components_are_reduced_for_small_samples_and_roundtrip() -> None:
    x = np.random.default_rng(3).normal(size=(6, 20))
    pca = FrozenPCA(n_components=10).fit(x)
    assert pca.n_components_ == 5
    again = FrozenPCA.from_arrays(pca.to_arrays())
    np.testing.assert_array_equal(again.transform(x), pca.transform(x))
    assert "fitted on d=20" in repr(pca)
