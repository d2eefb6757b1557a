"""``local_reconstruction_error``: each row's residual norm outside the outer PCs, as the log
ratio to the mean residual norm of its nearest anchors, compared by Wasserstein-1. Its value
against an independent computation on both paths, what it answers to (a change of spread
within neighbourhoods, not a change of mix between neighbourhoods whose residual levels
differ), and its floor when the anchors' own residuals vanish."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from sklearn.neighbors import NearestNeighbors

from embdrift import Reference
from embdrift.reference import _RESIDUAL_FLOOR
from embdrift.synthetic import make_scenario

NAMES = ["reconstruction_error", "local_reconstruction_error"]


def _log_ratios(ref: Reference, rows: np.ndarray) -> np.ndarray:
    """The per-row score, computed apart from embdrift's code path: residual norms from the
    outer projection, the nearest anchors from scikit-learn (float64)."""
    outer = ref.outer_projection
    residual = outer.residual_norm(rows) / ref.residual_scale
    around = outer.residual_norm(ref.anchors) / ref.residual_scale
    tree = NearestNeighbors(n_neighbors=ref.params.novelty_k).fit(ref.anchors.astype(np.float64))
    nearest = tree.kneighbors(rows.astype(np.float64), return_distance=False)
    return np.log((residual + _RESIDUAL_FLOOR) / (around[nearest].mean(axis=1) + _RESIDUAL_FLOOR))


@pytest.mark.parametrize("exact_rows", [2000, 100])
def test_value_is_the_w1_of_the_log_ratios(exact_rows: int) -> None:
    x, y = make_scenario("spread", n_reference=600, n_current=400, dim=48, seed=5)
    ref = Reference.fit(x, seed=1, exact_rows=exact_rows)
    result = ref.compare(y, n_permutations=49, metrics=NAMES, decision_metrics=NAMES)
    assert result.path == ("exact" if exact_rows == 2000 else "large_n")
    expected = wasserstein_distance(
        _log_ratios(ref, ref.sample), _log_ratios(ref, y.astype(np.float32))
    )
    metric = result.metrics["local_reconstruction_error"]
    assert metric.value == pytest.approx(expected, rel=1e-5)
    assert metric.effect_size == metric.value  # log units: its own effect size


def test_a_row_scores_the_same_on_either_side() -> None:
    """What keeps the permutation test exact: a row's score depends on that row and the fit
    alone, so a held-out row scored as part of a current window (in another order, beside
    other rows) gets the same value."""
    x, y = make_scenario("none", n_reference=600, n_current=300, dim=32, seed=7)
    ref = Reference.fit(x, seed=3)
    held_out = ref._test_rows.local_residuals
    mixed = np.vstack([y, ref.sample[::-1]]).astype(np.float32)
    again = ref._rows(mixed).local_residuals[y.shape[0] :][::-1]
    # Equal up to the last bits a BLAS kernel may round differently at another row offset.
    np.testing.assert_allclose(again, held_out, rtol=1e-9, atol=1e-12)


def _two_clusters(
    n: int, share_quiet: float, noise_scale: float, rng: np.random.Generator
) -> np.ndarray:
    """Rows around two centres in 40 dimensions, a quiet cluster (noise 0.05 per coordinate)
    and a loud one (0.25), the quiet one taking ``share_quiet`` of the rows; ``noise_scale``
    widens both."""
    dim = 40
    quiet = rng.random(n) < share_quiet
    centres = np.where(quiet[:, None], np.eye(dim)[0] * 3.0, np.eye(dim)[1] * 3.0)
    noise = rng.normal(size=(n, dim)) * np.where(quiet, 0.05, 0.25)[:, None]
    return (centres + noise_scale * noise).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_mix_change_moves_the_global_residuals_not_the_local_ones(seed: int) -> None:
    """Moving traffic from the loud cluster to the quiet one lowers the residual norms:
    ``reconstruction_error`` moves more than it does for a 20% wider spread of both clusters,
    while each row still looks like its own neighbourhood, so ``local_reconstruction_error``
    moves less than a fifth of what the wider spread gives it (~log 1.2)."""
    rng = np.random.default_rng(seed)
    reference = Reference.fit(_two_clusters(800, 0.5, 1.0, rng), seed=seed, outer_components=4)
    mix = reference.compare(
        _two_clusters(400, 0.8, 1.0, rng), seed=seed, metrics=NAMES, decision_metrics=NAMES
    ).metrics
    wider = reference.compare(
        _two_clusters(400, 0.5, 1.2, rng), seed=seed, metrics=NAMES, decision_metrics=NAMES
    ).metrics
    assert mix["reconstruction_error"].p_value < 0.01
    assert mix["reconstruction_error"].value > wider["reconstruction_error"].value
    assert wider["local_reconstruction_error"].p_value < 0.01
    assert wider["local_reconstruction_error"].value == pytest.approx(np.log(1.2), rel=0.3)
    assert mix["local_reconstruction_error"].value < 0.2 * wider["local_reconstruction_error"].value


def test_a_reference_too_small_for_its_outer_subspace_gives_finite_values() -> None:
    """With no more fit rows than outer PCs + 1 the fit rows (the anchors) lie inside their
    own subspace up to rounding, some exactly: the floor keeps every row's log ratio finite
    (without it, a zero level makes it infinite and the metric NaN)."""
    x, y = make_scenario("spread", n_reference=60, n_current=60, dim=64, seed=2)
    ref = Reference.fit(x, seed=0, outer_components=50)
    assert ref.n_fit <= ref.params.outer_components + 1
    assert (ref._anchor_residuals == 0.0).any()
    current = ref._rows(y.astype(np.float32))
    assert np.isfinite(ref._test_rows.local_residuals).all()
    assert np.isfinite(current.local_residuals).all()
    result = ref.compare(y, n_permutations=49, metrics=NAMES, decision_metrics=NAMES)
    assert np.isfinite(result.metrics["local_reconstruction_error"].value)
