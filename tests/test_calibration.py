"""False-alarm rates under no drift and power, over many seeded runs (DESIGN.md: "Fit on one
part, test on the other").

Every run fits a fresh reference and draws a fresh current window from the same distribution;
the rate of each metric's decision and of the combined decision must lie in the 99% binomial
interval around alpha = 0.05 at 300 runs, [0.027, 0.080]. The top-k projection metrics are
included, so a projection fitted on the tested rows (which alarms on most null runs) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from embdrift import METRICS, Reference
from embdrift.synthetic import World

RUNS = 300
ALPHA = 0.05
LOW, HIGH = 0.027, 0.080
N = 500
PERMUTATIONS = 199


def _null_rates(draw: object) -> dict[str, float]:
    hits = {name: 0 for name in (*METRICS, "combined")}
    for seed in range(RUNS):
        reference, current = draw(seed)  # type: ignore[operator]
        res = Reference.fit(reference, seed=seed).compare(
            current, alpha=ALPHA, n_permutations=PERMUTATIONS, seed=seed
        )
        hits["combined"] += res.drifted
        for name, m in res.metrics.items():
            hits[name] += m.drifted
    return {name: count / RUNS for name, count in hits.items()}


def _assert_calibrated(rates: dict[str, float]) -> None:
    # `pytest tests/test_calibration.py -s` prints the measured rates.
    print("false-alarm rates:", {k: round(v, 4) for k, v in rates.items()})
    outside = {k: v for k, v in rates.items() if not LOW <= v <= HIGH}
    assert not outside, f"false-alarm rates outside [{LOW}, {HIGH}]: {outside} (all: {rates})"


@pytest.mark.slow
def test_false_alarm_rate_on_synthetic_clusters() -> None:
    world = World.make(dim=384, seed=12345)
    weights = np.r_[np.ones(8), 0.0] / 8

    def draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return (
            world.sample(N, weights=weights, seed=rng)[0],
            world.sample(N, weights=weights, seed=rng)[0],
        )

    _assert_calibrated(_null_rates(draw))


@pytest.mark.slow
def test_false_alarm_rate_on_real_text(real_text: dict[str, np.ndarray]) -> None:
    sections = ["python", "libs", "devel", "doc", "utils", "net", "games", "science"]
    pool = np.flatnonzero(np.isin(real_text["section"], sections))
    emb = real_text["embeddings"]

    def draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.random.default_rng(seed).choice(pool, 2 * N, replace=False)
        return emb[rows[:N]], emb[rows[N:]]

    _assert_calibrated(_null_rates(draw))


@pytest.mark.slow
def test_power_for_half_a_pc1_standard_deviation() -> None:
    world = World.make(dim=384, seed=12345)
    weights = np.r_[np.ones(8), 0.0] / 8
    runs, detected = 100, 0
    for seed in range(runs):
        rng = np.random.default_rng(10_000 + seed)
        ref = Reference.fit(world.sample(N, weights=weights, seed=rng)[0], seed=seed)
        shift = 0.5 * ref.projection.scale_[0] * ref.projection.components_[0]
        current = world.sample(N, weights=weights, seed=rng)[0] + shift.astype(np.float32)
        detected += ref.compare(current, n_permutations=PERMUTATIONS, seed=seed).drifted
    assert detected / runs >= 0.95


def test_projection_fitted_on_tested_rows_would_fail_this_check() -> None:
    """The counterfactual that makes the calibration tests meaningful: a PCA fitted on the
    very reference rows it then tests (fit_fraction -> all rows) inflates their spread along
    the top components, so the spread test alarms far above alpha."""
    from embdrift.projection import FrozenPCA
    from embdrift.stats.permutation import combine_min_p, permutation_masks
    from embdrift.stats.twosample import SpreadRatio

    world = World.make(dim=384, seed=12345)
    weights = np.r_[np.ones(8), 0.0] / 8
    alarms = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        ref = world.sample(N, weights=weights, seed=rng)[0]
        cur = world.sample(N, weights=weights, seed=rng)[0]
        pca = FrozenPCA(n_components=10).fit(ref)  # fitted on the tested rows: the mistake
        stat = SpreadRatio(pca.standardize(np.vstack([ref, cur])))
        masks = permutation_masks(N, N, 99, rng)
        values = stat.test_statistic(stat.values(masks))
        alarms += combine_min_p(values[:, None], alpha=ALPHA).p_values[0] <= ALPHA
    assert alarms / 60 > 0.3
